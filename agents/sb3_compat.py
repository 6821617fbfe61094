"""The stable-baselines3 surface of riskrl agents: constructor arguments, env views and ``policy``.

* :func:`sb3_constructor_args` lets ``BayesDQN("MlpPolicy", env, verbose=1)`` (SB3's call shape) mean
  ``BayesDQN(env)``, maps ``policy_kwargs=dict(net_arch=[64, 64])`` to ``hidden`` and ``device="auto"``
  to CUDA when available; what has no riskrl meaning is refused with a clear message.
* :class:`VecEnvAdapter` puts an SB3 ``VecEnv`` (``DummyVecEnv``, ``VecNormalize``, Monitor-wrapped
  envs, as rl-zoo builds them) behind riskrl's batched-tensor env interface, so an agent trains on
  that very env (its monitor files, wrappers and normalisation included).
* :class:`NextStepVecEnv` is the other direction for ``get_env()``: an SB3 ``VecEnv`` view of a
  riskrl batched env that uses gymnasium's default NEXT_STEP autoreset.
* :class:`AgentPolicy` is ``agent.policy``: an ``nn.Module`` holding the agent's networks, with
  SB3's ``predict``.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, unwrap_vec_normalize
from torch import Tensor, nn

from riskrl.envs import SB3VecEnv, make_vec
from riskrl.envs.autoreset import uses_same_step_autoreset
from riskrl.envs.make import ENV_IDS

if TYPE_CHECKING:
    from .base import Agent

__all__ = [
    "POLICY_NAMES",
    "SCHEDULE_KEYS",
    "AgentPolicy",
    "NextStepVecEnv",
    "VecEnvAdapter",
    "as_batched_env",
    "check_custom_objects",
    "resolve_auto_device",
    "sb3_constructor_args",
    "sb3_load_path",
    "sb3_save_path",
    "vec_normalize_of",
]

#: Policy names accepted where SB3 takes a policy (riskrl agents build their own Bayesian networks).
POLICY_NAMES = ("MlpPolicy",)


def sb3_constructor_args(
    agent_name: str,
    env: Any,
    risk_tolerance: Any,
    device: Any,
    policy: Any,
    policy_kwargs: dict[str, Any] | None,
    hyperparams: dict[str, Any],
) -> tuple[Any, float, Any, dict[str, Any]]:
    """Normalise SB3-style constructor arguments to riskrl's ``(env, risk_tolerance, device, hyperparams)``.

    ``Agent("MlpPolicy", env)`` (SB3's positional order) is read as ``Agent(env)``; ``policy`` must be
    one of :data:`POLICY_NAMES`; ``policy_kwargs`` may only hold ``net_arch`` (a list of layer widths,
    mapped to ``hidden``); ``device="auto"`` picks CUDA when available.
    """
    if isinstance(env, str) and env.endswith("Policy") and env not in POLICY_NAMES:
        policy = env  # SB3's CnnPolicy, MultiInputPolicy, ...: refused below with the reason
    elif isinstance(env, str) and env in POLICY_NAMES:
        if policy is not None:
            raise ValueError(f"policy given twice: {env!r} and policy={policy!r}")
        if isinstance(risk_tolerance, (int, float, np.number)) and not isinstance(risk_tolerance, bool):
            raise ValueError(
                f"{agent_name}({env!r}, ...) needs the env as the second argument, as in "
                f"{agent_name}({env!r}, 'CartPole-v1')"
            )
        policy, env, risk_tolerance = env, risk_tolerance, 0.0
    if policy is not None and not (isinstance(policy, str) and policy in POLICY_NAMES):
        raise ValueError(
            f"{agent_name} builds its own Bayesian networks; policy must be one of {list(POLICY_NAMES)} "
            f"(or omitted), got {policy!r}. Set network sizes with hidden=... or policy_kwargs=dict(net_arch=[...])"
        )
    hyperparams = dict(hyperparams)
    if policy_kwargs:
        unknown = sorted(set(policy_kwargs) - {"net_arch"})
        if unknown:
            raise ValueError(
                f"{agent_name} accepts only net_arch in policy_kwargs (mapped to hidden), got {unknown}"
            )
        arch = policy_kwargs["net_arch"]
        if not isinstance(arch, (list, tuple)) or not all(
            isinstance(w, (int, np.integer)) and not isinstance(w, bool) for w in arch
        ):
            raise ValueError(
                f"policy_kwargs net_arch must be a list of layer widths such as [64, 64], got {arch!r}"
            )
        if "hidden" in hyperparams:
            raise ValueError("give the network widths once: hidden=... or policy_kwargs=dict(net_arch=...)")
        hyperparams["hidden"] = [int(w) for w in arch]
    device = resolve_auto_device(device)
    if is_sb3_vec_env(env):
        env = VecEnvAdapter(env, device=device if isinstance(device, (str, torch.device)) else "cpu")
    return env, risk_tolerance, device, hyperparams


#: What SB3 code (rl-zoo's ``enjoy``) passes as ``custom_objects`` to replace schedules; riskrl stores none.
SCHEDULE_KEYS = frozenset({"learning_rate", "lr_schedule", "clip_range", "exploration_schedule"})


def check_custom_objects(custom_objects: dict[str, Any] | None) -> None:
    """Accept SB3's ``custom_objects`` only where nothing needs replacing: riskrl checkpoints hold no
    pickled objects, so only the SB3 schedule names (:data:`SCHEDULE_KEYS`) pass (and are ignored)."""
    unknown = sorted(set(custom_objects or {}) - SCHEDULE_KEYS)
    if unknown:
        raise ValueError(
            f"custom_objects {unknown} cannot be applied: riskrl checkpoints hold no pickled objects to "
            f"replace (only the SB3 schedules {sorted(SCHEDULE_KEYS)} are accepted, and ignored)"
        )


def resolve_auto_device(device: Any) -> Any:
    """SB3's ``device="auto"``: CUDA when available, else the CPU; any other value unchanged."""
    if isinstance(device, str) and device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def sb3_save_path(path: str | os.PathLike[str]) -> Path:
    """SB3's save path rule: a path without a suffix gets ``.zip``."""
    p = Path(path)
    return p.with_suffix(".zip") if p.suffix == "" else p


def sb3_load_path(path: str | os.PathLike[str]) -> Path:
    """SB3's load path rule: ``path`` as given, else ``path.zip`` when ``path`` has no suffix."""
    p = Path(path)
    return p.with_suffix(".zip") if not p.exists() and p.suffix == "" else p


def is_sb3_vec_env(env: Any) -> bool:
    """True for a stable-baselines3 ``VecEnv`` (including wrappers such as ``VecNormalize``)."""
    return isinstance(env, VecEnv)


def vec_normalize_of(env: Any) -> VecNormalize | None:
    """The ``VecNormalize`` wrapper inside an SB3 ``VecEnv`` (or an adapter around one), else None."""
    if isinstance(env, VecEnvAdapter):
        env = env.venv
    return unwrap_vec_normalize(env) if isinstance(env, VecEnv) else None


def _model_functions_for(env_id: str | None, num_envs: int, device: Any) -> tuple[Any, Any]:
    """riskrl's batched ``reward_fn`` / ``termination_fn`` for ids that riskrl re-implements."""

    if env_id is None or env_id.removeprefix("riskrl/") not in ENV_IDS:
        return None, None
    twin = make_vec(env_id, num_envs=1, device=device)
    return twin.reward_fn, twin.termination_fn


class VecEnvAdapter(gym.vector.VectorEnv):
    """An SB3 ``VecEnv`` behind riskrl's batched-tensor interface (SAME_STEP autoreset).

    Observations come back as ``(N, obs_dim)`` float32 tensors on ``device``; ``info`` holds
    ``episode = {"r", "l"}`` and ``_episode`` (the episodes that ended at this step, counted by the
    adapter so no Monitor is needed) and ``final_obs`` / ``_final_obs`` (SB3's
    ``terminal_observation``). ``terminated`` excludes SB3's ``TimeLimit.truncated`` ends.

    For the env ids riskrl re-implements, ``reward_fn`` / ``termination_fn`` are riskrl's batched
    functions of the *unwrapped* dynamics, which model-based agents plan with; they do not know of
    wrappers that change observations or rewards (such as ``VecNormalize``).
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}  # noqa: RUF012

    def __init__(self, venv: VecEnv, device: str | torch.device = "cpu") -> None:
        if not isinstance(venv, VecEnv):
            raise ValueError(f"VecEnvAdapter needs a stable-baselines3 VecEnv, got {type(venv).__name__}")
        self.venv = venv
        self.num_envs = int(venv.num_envs)
        self.device = torch.device(device)
        self.single_observation_space = venv.observation_space
        self.single_action_space = venv.action_space
        self.observation_space = gym.vector.utils.batch_space(venv.observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(venv.action_space, self.num_envs)
        self.autoreset_mode = AutoresetMode.SAME_STEP
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
        self.render_mode = None
        try:
            spec = venv.get_attr("spec", indices=[0])[0]
        except (AttributeError, IndexError):
            spec = None
        self.spec = spec
        self.env_id = getattr(spec, "id", None)
        self._discrete = isinstance(venv.action_space, gym.spaces.Discrete)
        reward_fn, termination_fn = _model_functions_for(self.env_id, self.num_envs, self.device)
        if reward_fn is not None:
            self.reward_fn = reward_fn
            self.termination_fn = termination_fn
        self._ep_ret = np.zeros(self.num_envs, dtype=np.float64)
        self._ep_len = np.zeros(self.num_envs, dtype=np.int64)

    def _t(self, x: Any, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.as_tensor(np.asarray(x), device=self.device).to(dtype)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Tensor, dict]:
        """Reset every env (``seed`` goes to ``VecEnv.seed`` first); returns ``(obs, {})``."""
        if options:
            raise ValueError("an SB3 VecEnv takes no reset options")
        if seed is not None:
            self.venv.seed(int(seed))
        obs = self.venv.reset()
        self._ep_ret[:] = 0.0
        self._ep_len[:] = 0
        return self._t(obs), {}

    def step(self, actions: Any) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Any]]:
        """One SB3 ``step``; returns tensors and a riskrl-style info dict."""
        a = actions.detach().cpu().numpy() if isinstance(actions, Tensor) else np.asarray(actions)
        a = a.reshape(self.num_envs) if self._discrete else a.reshape(self.num_envs, -1)
        obs, rew, dones, infos = self.venv.step(a)
        rew = np.asarray(rew, dtype=np.float64)
        dones = np.asarray(dones, dtype=bool)
        trunc = np.array([bool(d and i.get("TimeLimit.truncated", False)) for d, i in zip(dones, infos)])
        term = dones & ~trunc
        self._ep_ret += rew
        self._ep_len += 1
        final = np.zeros_like(np.asarray(obs), dtype=np.float32)
        for i in np.flatnonzero(dones):
            terminal = infos[i].get("terminal_observation")
            final[i] = obs[i] if terminal is None else terminal
        info = {
            "episode": {
                "r": self._t(np.where(dones, self._ep_ret, 0.0)),
                "l": self._t(np.where(dones, self._ep_len, 0), torch.int64),
            },
            "_episode": self._t(dones, torch.bool),
            "final_obs": self._t(final),
            "_final_obs": self._t(dones, torch.bool),
        }
        self._ep_ret[dones] = 0.0
        self._ep_len[dones] = 0
        return self._t(obs), self._t(rew), self._t(term, torch.bool), self._t(trunc, torch.bool), info

    def close_extras(self, **kwargs: Any) -> None:
        """Close the wrapped ``VecEnv``."""
        self.venv.close()

    def __repr__(self) -> str:
        return f"VecEnvAdapter({self.venv!r}, num_envs={self.num_envs})"


class NextStepVecEnv(SB3VecEnv):
    """An SB3 ``VecEnv`` view of a riskrl batched env that uses NEXT_STEP autoreset.

    SB3 expects a finished env to come back already reset; here a finished env is reset at once with
    ``reset(options={"reset_mask": done})`` and its last observation becomes
    ``infos[i]["terminal_observation"]``. Everything else (episode statistics, infos, attribute
    access) is :class:`riskrl.envs.SB3VecEnv`'s. (Envs with SAME_STEP autoreset are viewed through
    :class:`riskrl.envs.SB3VecEnv` itself.)
    """

    @staticmethod
    def _check_autoreset(env: Any) -> None:
        if uses_same_step_autoreset(env):
            raise ValueError("NextStepVecEnv is for NEXT_STEP autoreset envs; use riskrl.envs.SB3VecEnv")

    def _restart_done(
        self, obs: np.ndarray, dones: np.ndarray, info: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        new_obs, _ = self.env.reset(options={"reset_mask": torch.as_tensor(dones)})
        return np.where(dones[:, None], self._to_np(new_obs).astype(np.float32), obs), obs.copy()


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def as_batched_env(env: Any, device: Any) -> Any:
    """An SB3 ``VecEnv`` wrapped for riskrl (:class:`VecEnvAdapter`); anything else unchanged."""
    return VecEnvAdapter(env, device=device) if is_sb3_vec_env(env) else env


class AgentPolicy(nn.Module):
    """``agent.policy``: the agent's networks as one ``nn.Module``, with SB3's ``predict``.

    Its parameters are the agent's own (``agent.policy.parameters()`` is what the agent trains);
    ``forward(obs)`` returns deterministic actions for a batch of observation tensors and
    :meth:`predict` is :meth:`riskrl.agents.Agent.predict`.
    """

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self._agent = weakref.ref(agent)
        self.nets = nn.ModuleDict(
            {
                name: m
                for name, m in vars(agent).items()
                if isinstance(m, nn.Module) and not name.startswith("_")
            }
        )
        self.observation_space = agent.observation_space
        self.action_space = agent.action_space

    @property
    def agent(self) -> Agent:
        """The agent this policy belongs to."""
        agent = self._agent()
        if agent is None:
            raise RuntimeError("the agent of this policy no longer exists")
        return agent

    def forward(self, obs: Tensor, deterministic: bool = True) -> Tensor:
        """Actions for a batch of observations ``(B, obs_dim)``."""
        return self.agent.predict(obs, deterministic=deterministic)[0]

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False
    ) -> tuple[Any, None]:
        """SB3's ``policy.predict``: ``(actions, None)``; numpy in gives numpy out."""
        return self.agent.predict(observation, state, episode_start, deterministic)

    def set_training_mode(self, mode: bool) -> None:
        """Put the networks in training (``True``) or evaluation mode, as SB3 policies do."""
        self.train(mode)
