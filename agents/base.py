"""The common Agent base: stable-baselines3-shaped API over riskrl's batched environments.

Subclasses implement a handful of hooks (``_setup``, ``_collect_step``, ``_act``,
``_uncertainty``, ``_policy_state``/``_load_policy_state`` and the optional training state);
this base owns what every agent shares: environment handling, the ``risk_tolerance`` knob,
seeding, the learn loop (progress bar, callbacks, CSV/TensorBoard logs, periodic checkpoints,
resume) and safe save/load.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from riskrl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from riskrl.devices import resolve_device
from riskrl.risk import validate_risk_tolerance

from .callbacks import BaseCallback, CallbackList, CheckpointCallback
from .logger import TrainingLogger

__all__ = ["Agent", "restore_generator", "space_to_json"]


def space_to_json(space: gym.Space) -> dict[str, Any]:
    """A JSON description of a Box or Discrete space, used to check env compatibility on load."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "low": np.asarray(space.low, dtype=np.float64).ravel().tolist(),
            "high": np.asarray(space.high, dtype=np.float64).ravel().tolist(),
        }
    raise ValueError(f"riskrl agents support Box and Discrete spaces, got {space}")


def _env_id_of(env: Any) -> str | None:
    spec = getattr(env, "spec", None)
    if spec is not None and getattr(spec, "id", None):
        return str(spec.id).removeprefix("riskrl/")
    env_id = getattr(env, "env_id", None)
    return str(env_id).removeprefix("riskrl/") if env_id else None


class Agent(ABC):
    """Base class of riskrl agents.

    Args:
        env: a gymnasium id (``"CartPole-v1"``), a gymnasium ``Env`` instance (trained on as
            configured: time limit, physical parameters and wrappers; see ``_make_env``) or a riskrl
            batched env from :func:`riskrl.envs.make_vec`.
        risk_tolerance: the knob in ``score = mean - risk_tolerance * std``; ``> 0`` risk averse,
            ``0`` neutral, ``< 0`` optimistic. Can be changed at any time, also after loading.
        seed: seeds network initialisation, exploration and the environment; ``None`` draws one.
        device: torch device for networks, buffers and the environment.
        **hyperparams: fields of the agent's config dataclass (``Agent.config_class``).
    """

    config_class: ClassVar[type]
    action_space_kinds: ClassVar[tuple[type[gym.Space], ...]] = (gym.spaces.Discrete, gym.spaces.Box)

    def __init__(
        self,
        env: Any,
        risk_tolerance: float = 0.0,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        **hyperparams: Any,
    ) -> None:
        self.config = self._make_config(hyperparams)
        self.device = resolve_device(device)
        self.risk_tolerance = risk_tolerance
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**31))
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.seed = int(seed)
        self.env = self._make_env(env)
        self.env_id = _env_id_of(self.env)
        self.observation_space = self.env.single_observation_space
        self.action_space = self.env.single_action_space
        if not isinstance(self.action_space, self.action_space_kinds):
            kinds = " or ".join(k.__name__ for k in self.action_space_kinds)
            raise ValueError(
                f"{type(self).__name__} needs a {kinds} action space, but {self.env_id or 'the env'} has "
                f"{self.action_space}"
            )
        if not isinstance(self.observation_space, gym.spaces.Box) or len(self.observation_space.shape) != 1:
            raise ValueError(
                f"{type(self).__name__} needs a flat Box observation space, got {self.observation_space}"
            )
        self.obs_dim = int(self.observation_space.shape[0])
        self.num_timesteps = 0
        self.rng = torch.Generator(device=self.device).manual_seed(self.seed)
        self._logger: TrainingLogger | None = None
        self._obs: Tensor | None = None
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            self._setup()

    # ------------------------------------------------------------------ configuration and env

    def _make_config(self, hyperparams: dict[str, Any]) -> Any:
        names = {f.name for f in dataclasses.fields(self.config_class)}
        unknown = sorted(set(hyperparams) - names)
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {unknown} for {type(self).__name__}; valid: {sorted(names)}"
            )
        return self.config_class(**hyperparams)

    @property
    def num_envs_default(self) -> int:
        """How many envs to build when ``env`` is given as an id (the config's ``num_envs``, else 1)."""
        return int(getattr(self.config, "num_envs", 1))

    def _make_env(self, env: Any) -> Any:
        """The batched env to train on (episode statistics on, for the episode log).

        An id builds ``make_vec(id, num_envs)``; a riskrl batched env is used as it is; a gymnasium
        ``Env`` instance is trained on as configured (:func:`riskrl.envs.from_gym_env`): its time limit
        and physical parameters on riskrl's batched env where that reproduces it exactly, otherwise the
        instance itself with its wrappers (one env), otherwise a ``ValueError``; never another env.
        """
        from riskrl.envs import from_gym_env, make_vec

        if isinstance(env, str):
            return make_vec(env, num_envs=self.num_envs_default, device=self.device, episode_statistics=True)
        if hasattr(env, "single_action_space") and hasattr(env, "num_envs"):
            if not hasattr(env, "reward_fn") and not hasattr(env, "device"):
                raise ValueError(
                    "pass a gymnasium id or a riskrl batched env (riskrl.envs.make_vec); "
                    "gymnasium's own vector envs are wrapped by make_vec"
                )
            if getattr(env, "episode_statistics", True) is False:
                env.episode_statistics = True  # info["episode"] at episode ends feeds the episode log
            return env
        if isinstance(env, gym.Env):
            return from_gym_env(
                env, num_envs=self.num_envs_default, device=self.device, episode_statistics=True
            )
        raise ValueError(
            f"env must be a gymnasium id, a gymnasium Env or a riskrl batched env, got {type(env)}"
        )

    @property
    def risk_tolerance(self) -> float:
        """``score = mean - risk_tolerance * std``: > 0 averse, 0 neutral, < 0 optimistic."""
        return self._risk_tolerance

    @risk_tolerance.setter
    def risk_tolerance(self, value: float) -> None:
        self._risk_tolerance = validate_risk_tolerance(value)

    # ------------------------------------------------------------------ hooks for subclasses

    @abstractmethod
    def _setup(self) -> None:
        """Build networks, optimisers and buffers (called with torch's RNG seeded by ``seed``)."""

    @abstractmethod
    def _collect_step(self, obs: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """Take one vectorised env step from ``obs`` (and train as due); return (next_obs, info)."""

    @abstractmethod
    def _act(self, obs: Tensor, deterministic: bool) -> Tensor:
        """Actions for a batch of observations ``(B, obs_dim)``."""

    @abstractmethod
    def _uncertainty(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(action, mean, std)`` for a batch of observations."""

    @abstractmethod
    def _policy_state(self) -> dict[str, Any]:
        """Tensors and JSON data needed to act (networks, normalisers)."""

    @abstractmethod
    def _load_policy_state(self, state: dict[str, Any]) -> None: ...

    def _training_state(self) -> dict[str, Any]:
        """Extra state needed to resume training bit-identically (optimisers, buffers, RNGs)."""
        return {}

    def _load_training_state(self, state: dict[str, Any]) -> None:
        return None

    def _draw_seed(self) -> int:
        """A fresh integer seed from the agent's generator (on the agent's device)."""
        return int(torch.randint(0, 2**62, (1,), generator=self.rng, device=self.device).item())

    # ------------------------------------------------------------------ public API

    def learn(
        self,
        total_timesteps: int,
        callback: BaseCallback | list[BaseCallback] | None = None,
        progress_bar: bool = False,
        log_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        checkpoint_dir: str | Path | None = None,
        reset_num_timesteps: bool = True,
    ) -> Agent:
        """Train for ``total_timesteps`` environment steps (summed over the batched envs).

        With ``reset_num_timesteps=False`` training continues from ``self.num_timesteps`` up to
        ``total_timesteps`` in all (how a loaded checkpoint resumes). ``checkpoint_every`` steps the
        full training state is written atomically to ``checkpoint_dir/agent_latest.riskrl``.
        ``log_dir`` receives ``episodes.csv``, ``metrics.csv`` and TensorBoard event files.
        """
        if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, (int, np.integer)):
            raise ValueError(f"total_timesteps must be an integer, got {total_timesteps!r}")
        if total_timesteps < 0:
            raise ValueError(f"total_timesteps must be >= 0, got {total_timesteps}")
        callbacks: list[BaseCallback] = []
        if isinstance(callback, BaseCallback):
            callbacks.append(callback)
        elif callback is not None:
            callbacks.extend(callback)
        if checkpoint_every is not None:
            if checkpoint_dir is None:
                raise ValueError("checkpoint_every needs a checkpoint_dir")
            callbacks.append(CheckpointCallback(checkpoint_every, checkpoint_dir, keep_last=1))
        cb = CallbackList(callbacks)
        if reset_num_timesteps:
            self.num_timesteps = 0
            self._obs = None
            target = int(total_timesteps)
        else:
            target = max(int(total_timesteps), self.num_timesteps)
        if log_dir is not None:
            self._logger = TrainingLogger(log_dir)
        bar = None
        if progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=target, initial=self.num_timesteps, desc=f"{type(self).__name__} learn", unit="step"
            )
        if self._obs is None:
            self._obs, _ = self.env.reset(seed=self.seed)
        cb.on_training_start(self)
        try:
            while self.num_timesteps < target:
                before = self.num_timesteps
                self._obs, info = self._collect_step(self._obs)
                self.num_timesteps += self.env.num_envs
                self._record_episodes(info)
                if bar is not None:
                    bar.update(self.num_timesteps - before)
                if not cb.on_step(self):
                    break
        finally:
            cb.on_training_end(self)
            if bar is not None:
                bar.close()
            if self._logger is not None:
                self._logger.close()
                self._logger = None
        return self

    def _record_episodes(self, info: dict[str, Any]) -> None:
        mask = info.get("_episode")
        if mask is None or self._logger is None:
            return
        mask_np = np.asarray(torch.as_tensor(mask).cpu())
        if not mask_np.any():
            return
        ep = info["episode"]
        returns = np.asarray(torch.as_tensor(ep["r"]).cpu())[mask_np]
        lengths = np.asarray(torch.as_tensor(ep["l"]).cpu())[mask_np]
        self._logger.log_episodes(self.num_timesteps, returns.tolist(), [int(x) for x in lengths])

    def log_scalar(self, name: str, value: float) -> None:
        """Log a scalar at the current timestep when ``learn(log_dir=...)`` is active."""
        if self._logger is not None:
            self._logger.log_scalar(self.num_timesteps, name, float(value))

    def _obs_tensor(self, obs: Any) -> tuple[Tensor, bool, bool]:
        """Validate observations; return ``(batch (B, obs_dim), was_numpy, was_single)``."""
        was_numpy = not isinstance(obs, Tensor)
        if was_numpy:
            try:
                arr = np.asarray(obs)
            except (TypeError, ValueError) as err:  # ragged nested lists and the like
                raise ValueError(
                    f"observations must be a numeric array, got {type(obs).__name__} ({err})"
                ) from None
            if arr.dtype.kind not in "fiub":
                raise ValueError(f"observations must be numeric, got dtype {arr.dtype}")
            t = torch.as_tensor(arr.astype(np.float32) if arr.dtype.kind == "b" else arr)
        else:
            t = obs
        if not (torch.is_floating_point(t) or t.dtype in (torch.int32, torch.int64)):
            raise ValueError(f"observations must be numeric, got dtype {t.dtype}")
        t = t.to(device=self.device, dtype=torch.float32)
        single = t.dim() == 1
        if single:
            t = t.unsqueeze(0)
        if t.dim() != 2 or t.shape[1] != self.obs_dim or t.shape[0] == 0:
            raise ValueError(
                f"observations must have shape ({self.obs_dim},) or (batch >= 1, {self.obs_dim}), got {tuple(t.shape)}"
            )
        if not torch.isfinite(t).all():
            raise ValueError("observations contain NaN or inf")
        return t, was_numpy, single

    @staticmethod
    def _out(x: Tensor, was_numpy: bool, single: bool) -> Any:
        if single:
            x = x[0]
        return x.detach().cpu().numpy() if was_numpy else x

    @torch.no_grad()
    def predict(
        self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[Any, None]:
        """Act on observations (numpy or tensor, single or batched): returns ``(action, None)``.

        Deterministic actions maximise ``mean - risk_tolerance * std``. Numpy in gives numpy out.
        ``state`` and ``episode_start`` exist for stable-baselines3 compatibility and are ignored.
        """
        t, was_numpy, single = self._obs_tensor(obs)
        return self._out(self._act(t, deterministic), was_numpy, single), None

    @torch.no_grad()
    def predict_with_uncertainty(self, obs: Any) -> tuple[Any, Any, Any]:
        """Return ``(action, mean, std)``: the deterministic action and the epistemic mean and std."""
        t, was_numpy, single = self._obs_tensor(obs)
        action, mean, std = self._uncertainty(t)
        return tuple(self._out(x, was_numpy, single) for x in (action, mean, std))  # type: ignore[return-value]

    # ------------------------------------------------------------------ persistence

    def _manifest_metadata(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.config),
            "risk_tolerance": self.risk_tolerance,
            "seed": self.seed,
            "env_id": self.env_id,
            "num_envs": int(self.env.num_envs),
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "num_timesteps": self.num_timesteps,
        }

    def save(self, path: str | Path, include_training_state: bool = True) -> Path:
        """Save atomically to ``path`` (no pickle): policy, and by default everything to resume."""
        state: dict[str, Any] = {"policy": self._policy_state()}
        if include_training_state:
            training = self._training_state()
            training["rng"] = self.rng.get_state()
            training["num_timesteps"] = self.num_timesteps
            training["obs"] = self._obs
            env_state = getattr(self.env, "state_dict", None)
            training["env"] = env_state() if callable(env_state) else None
            state["training"] = training
        return save_checkpoint(path, state, kind=type(self).__name__, metadata=self._manifest_metadata())

    @classmethod
    def load(
        cls, path: str | Path, env: Any = None, device: str | torch.device = "cpu", **overrides: Any
    ) -> Agent:
        """Load an agent saved with :meth:`save`. Never executes code from the file.

        ``env`` defaults to a fresh env of the saved id; a given env must have the saved spaces.
        ``overrides`` may change ``risk_tolerance``.
        """
        state, manifest = load_checkpoint(path, kind=cls.__name__)
        meta = manifest["metadata"]
        risk_tolerance = overrides.pop("risk_tolerance", meta["risk_tolerance"])
        if overrides:
            raise ValueError(f"load() only overrides risk_tolerance, got {sorted(overrides)}")
        if env is None:
            if not meta.get("env_id"):
                raise CheckpointError(f"{path} records no env id; pass env=")
            from riskrl.envs import make_vec

            env = make_vec(meta["env_id"], num_envs=meta.get("num_envs", 1), device=device)
        try:
            agent = cls(
                env, risk_tolerance=risk_tolerance, seed=meta["seed"], device=device, **meta["config"]
            )
        except TypeError as err:
            raise CheckpointError(f"{path}: config does not fit {cls.__name__}: {err}") from None
        for key, space in (
            ("observation_space", agent.observation_space),
            ("action_space", agent.action_space),
        ):
            if space_to_json(space) != meta[key]:
                raise ValueError(
                    f"env {key} {space} does not match the checkpoint's {meta[key]['type']} space {meta[key]}"
                )
        agent._load_policy_state(_to_device(state["policy"], agent.device))
        training = state.get("training")
        if training is not None:
            training = _to_device(training, agent.device)
            restore_generator(agent.rng, training.pop("rng"), fallback_seed=agent.seed + agent.num_timesteps)
            agent.num_timesteps = int(training.pop("num_timesteps"))
            obs = training.pop("obs")
            env_state = training.pop("env")
            load_env_state = getattr(agent.env, "load_state_dict", None)
            if (
                env_state is not None
                and callable(load_env_state)
                and agent.env.num_envs == meta.get("num_envs")
            ):
                load_env_state(env_state)
                agent._obs = obs
            agent._load_training_state(training)
        else:
            agent.num_timesteps = int(meta.get("num_timesteps", 0))
        return agent


def restore_generator(generator: torch.Generator, state: Tensor, fallback_seed: int) -> bool:
    """Restore a saved generator state; return False (and reseed) when it cannot be restored.

    A CUDA generator's state cannot be loaded into a CPU generator or the other way round, so a
    checkpoint moved between devices continues with a fresh, deterministic stream instead.
    """
    try:
        generator.set_state(state.cpu())
        return True
    except RuntimeError:
        import warnings

        warnings.warn(
            f"checkpoint RNG state is from another device type; reseeding the {generator.device} generator "
            "(training continues, but not bit-identically)",
            RuntimeWarning,
            stacklevel=3,
        )
        generator.manual_seed(int(fallback_seed))
        return False


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_device(v, device) for v in obj)
    return obj


def finite_float(name: str, value: float) -> float:
    """Return ``value`` as a float or raise a ValueError naming ``name`` when it is not finite."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value
