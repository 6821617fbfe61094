"""The common Agent base: stable-baselines3-shaped API over riskrl's batched environments.

Subclasses implement a handful of hooks (``_setup``, ``_collect_step``, ``_act``,
``_uncertainty``, ``_policy_state``/``_load_policy_state`` and the optional training state);
this base owns what every agent shares: environment handling, the ``risk_tolerance`` knob,
seeding, the learn loop (progress bar, callbacks, CSV/TensorBoard logs, periodic checkpoints,
resume) and safe save/load.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.logger import Logger
from torch import Tensor
from tqdm.auto import tqdm

from riskrl.checkpoint import (
    CheckpointError,
    JsonSpec,
    Opt,
    TensorSpec,
    check_spec,
    load_checkpoint,
    save_checkpoint,
    spec_max_bytes,
)
from riskrl.devices import resolve_device
from riskrl.envs import SB3VecEnv, from_gym_env, make_vec
from riskrl.envs.autoreset import uses_same_step_autoreset
from riskrl.envs.base import check_physical
from riskrl.risk import validate_risk_tolerance

from . import schema
from .callbacks import BaseCallback, CallbackList, CheckpointCallback, ConvertCallback, ProgressBarCallback
from .logger import TrainingLogger, configure_training_logger
from .sb3_compat import (
    AgentPolicy,
    NextStepVecEnv,
    VecEnvAdapter,
    as_batched_env,
    check_custom_objects,
    resolve_auto_device,
    sb3_constructor_args,
    sb3_load_path,
    vec_normalize_of,
)

__all__ = ["Agent", "MaybeCallback", "restore_generator", "space_to_json"]

#: What ``learn(callback=...)`` takes, as in SB3: a callback, a list of them, a callable or None.
MaybeCallback = BaseCallback | list[BaseCallback] | Callable[[dict[str, Any], dict[str, Any]], bool] | None


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
        device: torch device for networks, buffers and the environment (``"auto"``: CUDA if available).
        policy, policy_kwargs, verbose, tensorboard_log: stable-baselines3's arguments, so SB3 scripts
            run unchanged: ``BayesDQN("MlpPolicy", env, verbose=1)`` is ``BayesDQN(env, verbose=1)``;
            ``policy`` may only be ``"MlpPolicy"``, ``policy_kwargs`` only ``net_arch`` (= ``hidden``);
            ``verbose >= 1`` prints SB3's log table; ``tensorboard_log`` is SB3's TensorBoard folder.
            ``env`` may also be an SB3 ``VecEnv`` (trained on through
            :class:`riskrl.agents.sb3_compat.VecEnvAdapter`).
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
        *,
        policy: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        tensorboard_log: str | Path | None = None,
        **hyperparams: Any,
    ) -> None:
        # stable-baselines3's call shapes: Agent("MlpPolicy", env), policy_kwargs, device="auto", VecEnvs
        env, risk_tolerance, device, hyperparams = sb3_constructor_args(
            type(self).__name__, env, risk_tolerance, device, policy, policy_kwargs, hyperparams
        )
        self.verbose = int(verbose)
        self.tensorboard_log = tensorboard_log
        self._custom_logger = False
        self._null_logger: TrainingLogger | None = None
        self.ep_info_buffer: deque[dict[str, float]] = deque(maxlen=100)
        self._episode_num = 0
        self._log_interval: int | None = 4
        self._episodes_since_dump = 0
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
        self._logger: Logger | None = None
        self._obs: Tensor | None = None
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            self._setup()

    # ------------------------------------------------------------------ configuration and env

    def _make_config(self, hyperparams: dict[str, Any]) -> Any:
        hyperparams, old_names = schema.renamed_fields(self.config_class, hyperparams)
        for old in old_names:
            warnings.warn(
                f"{type(self).__name__}: hyperparameter {old!r} is now called "
                f"{self.config_class.RENAMED[old]!r}; the old name will be removed in a future release",
                DeprecationWarning,
                stacklevel=4,
            )
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
        callback: MaybeCallback = None,
        log_interval: int | None = 4,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
        *,
        log_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> Agent:
        """Train for ``total_timesteps`` more environment steps (summed over the batched envs), as SB3.

        With ``reset_num_timesteps=True`` (the default) the step counter and the env start afresh;
        with ``False`` training continues the counter and the episodes in flight, so
        ``learn(n, reset_num_timesteps=False)`` twice trains ``2n`` steps. To train *up to* a fixed
        total instead (resuming a killed run from its checkpoint), use :meth:`learn_until`.

        Args:
            callback: an SB3 callback (any ``BaseCallback``), a list of them, or a callable
                ``(locals, globals) -> bool``, as in SB3. ``locals`` holds ``total_timesteps`` (the
                step count to reach), ``new_obs`` and ``infos`` (the batched env's tensors, one
                row per env) and ``dones`` (a numpy bool array per env, as SB3's callbacks expect).
            log_interval: dump the logs (``rollout/ep_rew_mean`` and the recorded values) every
                ``log_interval`` finished episodes, as SB3's off-policy algorithms; ``None``: only at
                the end of the call.
            tb_log_name: run name under the constructor's ``tensorboard_log`` (default: the class name).
            progress_bar: show a tqdm progress bar (:class:`riskrl.agents.ProgressBarCallback`).
            log_dir: write SB3's ``progress.csv`` and TensorBoard events plus ``episodes.csv``
                (one row per training episode) into this folder.
            checkpoint_every: every this many environment steps the full training state is saved
                atomically to ``checkpoint_dir/agent_latest.riskrl`` (and the numbered file
                ``agent_<steps>_steps.riskrl``), to resume with :meth:`learn_until`.
        """
        steps = _check_timesteps(total_timesteps)
        target = steps if reset_num_timesteps else self.num_timesteps + steps
        return self._learn(
            target, bool(reset_num_timesteps), callback, log_interval, tb_log_name, progress_bar,
            log_dir, checkpoint_every, checkpoint_dir,
        )  # fmt: skip

    def learn_until(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int | None = 4,
        tb_log_name: str | None = None,
        progress_bar: bool = False,
        *,
        log_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> Agent:
        """Train until ``num_timesteps`` reaches ``total_timesteps`` in all; never resets the counter.

        This is how a killed run resumes to its fixed budget: ``load_agent(ckpt).learn_until(total)``
        continues bit-identically to an uninterrupted ``learn(total)`` with the same seed. Does nothing
        when the agent already has ``total_timesteps`` steps. Other arguments are those of :meth:`learn`.
        """
        target = max(_check_timesteps(total_timesteps), self.num_timesteps)
        return self._learn(
            target, False, callback, log_interval, tb_log_name, progress_bar,
            log_dir, checkpoint_every, checkpoint_dir,
        )  # fmt: skip

    # ------------------------------------------------------------------ learning from a dataset

    def learn_offline(
        self,
        dataset: Any,
        gradient_steps: int,
        *,
        callback: MaybeCallback = None,
        progress_bar: bool = False,
        log_dir: str | Path | None = None,
    ) -> Agent:
        """Train for ``gradient_steps`` steps on a fixed :class:`riskrl.data.Dataset`; no env interaction.

        The dataset (its spaces must be the agent's) is copied into the agent's replay buffer, with
        its episode links (n-step targets stay inside episodes), and the agent trains on it only:
        :class:`BayesDQN` with pessimistic targets (``mean - beta * std`` across posterior members)
        and CQL's conservative penalty (``cql_alpha``, default 1.0), :class:`BayesMPC` by fitting its
        dynamics model (and terminal value) to the data and cloning the data's actions, which its
        plans then start from and search around (``behavior_prior``, default on); both act on
        ``mean - risk_tolerance * std`` as always. With no true env to tune on, the documented offline settings are
        ``risk_tolerance=0.5`` for BayesDQN and ``0.0`` for BayesMPC: the best mean normalised
        score over the committed offline benchmark (README, "Learning from a dataset"), where
        neighbouring values score within noise of them. A later :meth:`learn` fine-tunes online,
        starting from the dataset in the buffer (set ``learning_starts=0`` to skip random warm-up
        actions).

        ``callback`` (SB3 callbacks, called once per gradient step), ``progress_bar`` and
        ``log_dir`` (SB3's ``progress.csv`` / TensorBoard, written at the end) are those of
        :meth:`learn`. ``num_timesteps`` counts env steps and is left unchanged.
        """
        steps = _check_timesteps(gradient_steps, "gradient_steps")
        check = getattr(dataset, "check_spaces", None)
        if not callable(check) or not callable(getattr(dataset, "next_index", None)):
            raise ValueError(f"learn_offline needs a riskrl.data.Dataset, got {type(dataset).__name__}")
        check(self.observation_space, self.action_space, what=f"this {type(self).__name__}'s env")
        capacity = int(self.buffer.capacity)
        if len(dataset) > capacity:
            raise ValueError(
                f"the dataset holds {len(dataset)} transitions, more than the replay buffer's "
                f"buffer_size={capacity}; build the agent with buffer_size >= {len(dataset)}"
            )
        if log_dir is not None and self._custom_logger:
            raise ValueError(
                "learn_offline(log_dir=...) cannot be combined with a logger given to set_logger()"
            )
        cb = self._make_callback(callback, False, None, None)
        self._load_dataset(dataset)
        owned_logger = None
        if not self._custom_logger:
            owned_logger = configure_training_logger(
                log_dir, self.verbose, self.tensorboard_log, f"{type(self).__name__}_offline", True
            )
            self._logger = owned_logger
        total_timesteps = steps  # what SB3 callbacks read from ``locals``
        cb.init_callback(self)  # type: ignore[arg-type]
        cb.on_training_start(locals(), globals())
        bar = (
            tqdm(total=steps, desc=f"{type(self).__name__} learn_offline", unit="step")
            if progress_bar
            else None
        )
        started = time.time()
        try:
            self._offline_begin()
            for step in range(steps):
                self._offline_step()
                if bar is not None:
                    bar.update(1)
                cb.update_locals({"gradient_step": step + 1})
                if not cb.on_step():
                    break
            self._offline_end()
        finally:
            cb.on_training_end()
            if bar is not None:
                bar.close()
            if self._logger is not None:
                self._logger.record("offline/gradient_steps", steps)
                self._logger.record("offline/dataset_size", len(dataset))
                self._logger.record("time/time_elapsed", int(time.time() - started), exclude="tensorboard")
                self._logger.dump(step=self.num_timesteps)
            if owned_logger is not None:
                owned_logger.close()
                self._logger = None
        return self

    def _load_dataset(self, dataset: Any) -> None:
        """Replace the replay buffer's content by ``dataset`` (rows in order, with episode links)."""
        data = dataset.to(self.device)
        n, buf = len(data), self.buffer
        buf.next_index.fill_(-1)
        buf.write_id.fill_(-1)
        state = {
            "pos": n % buf.capacity,
            "size": n,
            "obs": data.observations,
            "next_obs": data.next_observations,
            "actions": self._dataset_actions(data.actions),
            "rewards": data.rewards,
            "terminated": data.terminations.to(torch.float32),
            "next_index": data.next_index(),
            "write_id": torch.arange(n, device=self.device),
            "last_row": torch.full((buf.n_envs,), -1, dtype=torch.int64, device=self.device),
            "last_write_id": torch.full((buf.n_envs,), -1, dtype=torch.int64, device=self.device),
            "n_written": str(n),
        }
        buf.load_state_dict(state)

    def _dataset_actions(self, actions: Tensor) -> Tensor:
        """Dataset actions in the replay buffer's encoding (as the env takes them by default)."""
        return actions

    def _offline_begin(self) -> None:
        """Called once before the offline gradient steps (the buffer holds the dataset)."""
        return None

    def _offline_step(self) -> None:
        """One offline gradient step on the replay buffer's data."""
        raise NotImplementedError(f"{type(self).__name__} does not support learn_offline")

    def _offline_end(self) -> None:
        """Called once after the offline gradient steps."""
        return None

    def _learn(
        self,
        target: int,
        reset: bool,
        callback: MaybeCallback,
        log_interval: int | None,
        tb_log_name: str | None,
        progress_bar: bool,
        log_dir: str | Path | None,
        checkpoint_every: int | None,
        checkpoint_dir: str | Path | None,
    ) -> Agent:
        """The one learn loop: step, count, record episodes, run callbacks, until ``target`` steps."""
        if log_interval is not None and (
            isinstance(log_interval, bool)
            or not isinstance(log_interval, (int, np.integer))
            or log_interval < 1
        ):
            raise ValueError(f"log_interval must be an integer >= 1 or None, got {log_interval!r}")
        if log_dir is not None and self._custom_logger:
            raise ValueError("learn(log_dir=...) cannot be combined with a logger given to set_logger()")
        cb = self._make_callback(callback, progress_bar, checkpoint_every, checkpoint_dir)
        if reset:
            self.num_timesteps = 0
            self._obs = None
            self._episode_num = 0
            self.ep_info_buffer.clear()
        owned_logger = None
        if not self._custom_logger:
            name = tb_log_name or type(self).__name__
            owned_logger = configure_training_logger(log_dir, self.verbose, self.tensorboard_log, name, reset)
            self._logger = owned_logger
        self._log_interval = log_interval
        self._episodes_since_dump = 0
        self._learn_start = (time.time(), self.num_timesteps)
        if self._obs is None:
            self._obs, _ = self.env.reset(seed=self.seed)
        total_timesteps = target  # SB3 callbacks read it from ``locals``
        no_dones = np.zeros(self.env.num_envs, dtype=bool)
        cb.init_callback(self)  # type: ignore[arg-type]
        cb.on_training_start(locals(), globals())
        cb.on_rollout_start()
        try:
            while self.num_timesteps < target:
                new_obs, infos = self._collect_step(self._obs)
                self._obs = new_obs
                self.num_timesteps += self.env.num_envs
                self._record_episodes(infos)
                # SB3 callbacks read ``dones`` as a numpy array every step (np.sum(dones), dones[i]);
                # envs flag finished episodes only on steps where one ends: all-False otherwise.
                done_t = infos.get("_episode")
                dones = no_dones if done_t is None else done_t.cpu().numpy()
                cb.update_locals({"new_obs": new_obs, "infos": infos, "dones": dones})
                if not cb.on_step():
                    break
                if self._log_interval is not None and self._episodes_since_dump >= self._log_interval:
                    self._dump_logs()  # after the callbacks, as SB3: what they recorded goes in
            cb.on_rollout_end()
        finally:
            cb.on_training_end()
            self._dump_logs()  # the end of a learn call is always in the logs
            if owned_logger is not None:
                owned_logger.close()
                self._logger = None
        return self

    def _make_callback(
        self,
        callback: MaybeCallback,
        progress_bar: bool,
        checkpoint_every: int | None,
        checkpoint_dir: str | Path | None,
    ) -> CallbackList:
        if callback is None:
            callbacks: list[BaseCallback] = []
        elif isinstance(callback, BaseCallback):
            callbacks = [callback]
        elif isinstance(callback, (list, tuple)):
            callbacks = list(callback)
        elif callable(callback):
            callbacks = [ConvertCallback(callback)]
        else:
            raise ValueError(
                f"callback must be an SB3 BaseCallback, a list of them or a callable, got {callback!r}"
            )
        for cb in callbacks:
            if not isinstance(cb, BaseCallback):
                raise ValueError(
                    f"callbacks must be stable-baselines3 BaseCallback instances (riskrl.agents.BaseCallback "
                    f"is SB3's: override _on_step(self) -> bool), got {type(cb).__name__}"
                )
        if checkpoint_every is not None:
            if checkpoint_dir is None:
                raise ValueError("checkpoint_every needs a checkpoint_dir")
            every = _check_timesteps(checkpoint_every, "checkpoint_every")
            if every < 1:
                raise ValueError(f"checkpoint_every must be >= 1 environment step, got {every}")
            calls = -(-every // int(self.env.num_envs))
            callbacks.append(
                CheckpointCallback(
                    calls,
                    checkpoint_dir,
                    name_prefix="agent",
                    keep_last=1,
                    save_latest=True,
                    extension="riskrl",
                )
            )
        if progress_bar:
            callbacks.append(ProgressBarCallback())
        return CallbackList(callbacks)

    def _record_episodes(self, info: dict[str, Any]) -> None:
        """Log finished training episodes; a no-op (no host sync) when no logger is writing."""
        mask = info.get("_episode")
        if mask is None or self._logger is None:
            return
        mask_np = np.asarray(torch.as_tensor(mask).cpu())
        if not mask_np.any():
            return
        ep = info["episode"]
        returns = np.asarray(torch.as_tensor(ep["r"]).cpu())[mask_np].astype(np.float64).tolist()
        lengths = [int(x) for x in np.asarray(torch.as_tensor(ep["l"]).cpu())[mask_np]]
        if isinstance(self._logger, TrainingLogger):
            self._logger.log_episodes(self.num_timesteps, returns, lengths)
        self.ep_info_buffer.extend({"r": r, "l": n} for r, n in zip(returns, lengths))
        self._episode_num += len(returns)
        self._episodes_since_dump += len(returns)

    def _dump_logs(self) -> None:
        """Record SB3's rollout/time values and write everything recorded (``logger.dump``)."""
        if self._logger is None:
            return
        started, start_steps = getattr(self, "_learn_start", (time.time(), self.num_timesteps))
        elapsed = max(time.time() - started, 1e-8)
        if self.ep_info_buffer:
            self._logger.record("rollout/ep_rew_mean", float(np.mean([e["r"] for e in self.ep_info_buffer])))
            self._logger.record("rollout/ep_len_mean", float(np.mean([e["l"] for e in self.ep_info_buffer])))
        self._logger.record("time/episodes", self._episode_num, exclude="tensorboard")
        self._logger.record("time/fps", int((self.num_timesteps - start_steps) / elapsed))
        self._logger.record("time/time_elapsed", int(elapsed), exclude="tensorboard")
        self._logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self._logger.dump(step=self.num_timesteps)
        self._episodes_since_dump = 0

    def log_scalar(self, name: str, value: float) -> None:
        """Record a scalar in :attr:`logger` (written at its next dump) when a logger is writing."""
        if self._logger is not None:
            self._logger.record(name, float(value))

    # ------------------------------------------------------------------ stable-baselines3 surface

    @property
    def logger(self) -> Logger:
        """SB3's ``Logger`` of the current ``learn`` call (``record`` / ``dump``); outside training,
        or when nothing is written, a logger without outputs."""
        if self._logger is not None:
            return self._logger
        if self._null_logger is None:
            self._null_logger = TrainingLogger(None, [])
        return self._null_logger

    def set_logger(self, logger: Logger) -> None:
        """Use this SB3 ``Logger`` for every later ``learn`` call (instead of one per call)."""
        if not isinstance(logger, Logger):
            raise ValueError(f"set_logger needs a stable_baselines3 Logger, got {type(logger).__name__}")
        self._logger = logger
        self._custom_logger = True

    @property
    def n_envs(self) -> int:
        """Number of parallel training envs (SB3's name)."""
        return int(self.env.num_envs)

    @property
    def policy(self) -> AgentPolicy:
        """The agent's networks as one ``nn.Module`` with SB3's ``predict`` (see :class:`AgentPolicy`)."""
        return AgentPolicy(self)

    def get_env(self) -> Any:
        """The training env as an SB3 ``VecEnv``: the ``VecEnv`` the agent was given, or a view of its
        batched env (:class:`riskrl.envs.SB3VecEnv`, or :class:`NextStepVecEnv` for NEXT_STEP autoreset).

        Stepping it steps the training env; the next ``learn(..., reset_num_timesteps=False)`` goes on
        from the agent's own last observation, as SB3's does.
        """
        if isinstance(self.env, VecEnvAdapter):
            return self.env.venv
        view = getattr(self, "_sb3_view", None)
        if view is None or view.env is not self.env:
            view = SB3VecEnv(self.env) if uses_same_step_autoreset(self.env) else NextStepVecEnv(self.env)
            self._sb3_view = view
        return view

    def get_vec_normalize_env(self) -> Any:
        """The ``VecNormalize`` wrapper of an SB3 training env, else ``None`` (as SB3)."""
        return vec_normalize_of(self.env)

    def set_env(self, env: Any, force_reset: bool = True) -> None:
        """Train on ``env`` from now on: an id, a gymnasium env, a riskrl batched env or an SB3 ``VecEnv``.

        Its spaces, number of envs and autoreset mode must match the current env's (the replay
        buffer keeps per-env episode links). ``force_reset`` (default) resets it at the next ``learn``.
        """
        new_env = self._make_env(as_batched_env(env, self.device))
        for what, old, new in (
            ("observation space", self.observation_space, new_env.single_observation_space),
            ("action space", self.action_space, new_env.single_action_space),
        ):
            if space_to_json(old) != space_to_json(new):
                raise ValueError(f"set_env: the new env's {what} {new} differs from the agent's {old}")
        if int(new_env.num_envs) != int(self.env.num_envs):
            raise ValueError(
                f"set_env: the new env has {new_env.num_envs} envs, the agent trains on {self.env.num_envs}; "
                "build the agent with the new env instead"
            )
        if uses_same_step_autoreset(new_env) != uses_same_step_autoreset(self.env):
            raise ValueError("set_env: the new env's autoreset mode differs from the current env's")
        self.env = new_env
        self.env_id = _env_id_of(new_env) or self.env_id
        refresh = getattr(self, "_model_functions", None)  # model-based agents plan with the env's functions
        if callable(refresh):
            self.reward_fn, self.termination_fn = refresh()
        if force_reset:
            self._obs = None

    def set_random_seed(self, seed: int | None = None) -> None:
        """Reseed the agent's generator and spaces; the env is reset with ``seed`` at the next ``learn``.

        ``None`` does nothing, as in SB3. Network weights are not re-initialised.
        """
        if seed is None:
            return
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.seed = int(seed)
        self.rng.manual_seed(self.seed)
        self.action_space.seed(self.seed)
        self.observation_space.seed(self.seed)
        self._obs = None

    def get_parameters(self) -> dict[str, Any]:
        """``{"policy": ...}``: the tensors (and JSON data) the agent acts with, copies on the CPU."""
        return {"policy": _to_device(_clone(self._policy_state()), torch.device("cpu"))}

    def set_parameters(
        self,
        load_path_or_dict: str | Path | dict[str, Any],
        exact_match: bool = True,
        device: str | torch.device = "auto",
    ) -> None:
        """Load policy parameters from :meth:`get_parameters`'s dict or from a riskrl checkpoint file.

        With ``exact_match`` (default) the names and shapes must be those of this agent's; otherwise
        what the agent's networks accept is loaded. ``device`` is accepted for SB3 compatibility
        (parameters always go to the agent's device).
        """
        if isinstance(load_path_or_dict, (str, Path)):
            state, _ = load_checkpoint(load_path_or_dict, kind=type(self).__name__)
            params = {"policy": state["policy"]}
        elif isinstance(load_path_or_dict, dict):
            params = load_path_or_dict
        else:
            raise ValueError(
                f"set_parameters needs a dict or a checkpoint path, got {type(load_path_or_dict)}"
            )
        if set(params) != {"policy"}:
            raise ValueError(f"set_parameters expects the key 'policy' only, got {sorted(params)}")
        if exact_match:
            want, got = _shapes(self._policy_state()), _shapes(params["policy"])
            if want != got:
                missing = sorted(set(want) - set(got))
                extra = sorted(set(got) - set(want))
                wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
                raise ValueError(
                    f"parameters do not match {type(self).__name__}'s: missing {missing}, unexpected {extra}, "
                    f"wrong shape {wrong}"
                )
        self._load_policy_state(_to_device(params["policy"], self.device))

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

    def _pure_uncertainty(self) -> Callable[[Tensor], tuple[Tensor, Tensor, Tensor]] | None:
        """:meth:`_uncertainty` as a pure tensor function that ``torch.compile`` can trace into a fused
        rollout (``evaluate(..., fuse=k)``), or ``None`` where the policy is not one (e.g. a sampling
        planner). Observations must be float32 tensors on :attr:`device`."""
        return None

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
        cls,
        path: str | Path,
        env: Any = None,
        device: str | torch.device = "cpu",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        seed: int | None = None,
        max_memory: int = schema.DEFAULT_MAX_MEMORY,
        **overrides: Any,
    ) -> Agent:
        """Load an agent saved with :meth:`save`. Never executes code from the file.

        SB3's signature: ``env`` defaults to a fresh env of the saved id (a given env, gymnasium or
        SB3 ``VecEnv``, must have the saved spaces); ``device="auto"`` picks CUDA when available; a
        ``path`` without a suffix that does not exist is tried with ``.zip``; ``custom_objects`` is
        refused unless it only names SB3 schedules (riskrl checkpoints hold no pickled objects to
        replace); ``seed`` reseeds the agent after loading; ``force_reset`` is accepted for SB3
        compatibility (an env given here always starts with a reset); ``print_system_info`` prints
        the library versions the checkpoint records. ``overrides`` may change ``risk_tolerance``. The device is resolved first; then the whole
        manifest (every config field within its documented limit, spaces, counters) and every
        tensor's dtype and shape are checked against what the config implies, and tensor values
        (buffer positions, indices, RNG and env state) are range-checked, all before any agent,
        network, buffer or env is built. A config implying more than ``max_memory`` bytes of
        networks, optimiser and buffers is refused. Every problem is one :class:`CheckpointError`
        naming the field.
        """
        check_custom_objects(custom_objects)
        device = resolve_device(resolve_auto_device(device))
        path = sb3_load_path(path)
        env = as_batched_env(env, device) if env is not None else None
        risk_override = overrides.pop("risk_tolerance", None)
        if overrides:
            raise ValueError(f"load() only overrides risk_tolerance, got {sorted(overrides)}")
        if risk_override is not None:
            risk_override = validate_risk_tolerance(risk_override)
        checked: dict[str, Any] = {}

        def check_manifest(manifest: dict[str, Any]) -> int:
            meta = manifest["metadata"]
            check_spec(schema.metadata_spec(), {k: meta.get(k) for k in schema.metadata_spec()}, "metadata")
            limits = {**schema.CONFIG_LIMITS, **cls._checkpoint_limits()}
            config = schema.check_config(cls.config_class, meta["config"], limits)
            try:
                spec, construct_bytes = cls._checkpoint_state_spec(config, meta)
            except CheckpointError:
                raise
            except (ValueError, TypeError, RuntimeError, AssertionError) as err:  # e.g. an unknown activation
                raise CheckpointError(f"metadata.config does not describe a valid network: {err}") from None
            spec_bytes = spec_max_bytes(spec)
            if construct_bytes + spec_bytes > int(max_memory):
                raise CheckpointError(
                    f"{path}: metadata.config implies about {(construct_bytes + spec_bytes) / 2**30:.2f} GiB of "
                    f"networks, optimiser and buffers, more than max_memory={int(max_memory)} bytes "
                    "(pass a larger max_memory to Agent.load if you trust this file)"
                )
            checked.update(config=config, spec=spec)
            return spec_bytes

        def check_tensors(manifest: dict[str, Any], info_state: Any) -> None:
            check_spec(checked["spec"], info_state, "state")

        try:
            state, manifest = load_checkpoint(
                path, kind=cls.__name__, check_manifest=check_manifest, check_tensors=check_tensors
            )
        except CheckpointError as err:
            msg = str(err)
            raise CheckpointError(msg if str(path) in msg else f"{path}: {msg}") from None
        meta = manifest["metadata"]
        try:
            cls._check_checkpoint_values(checked["config"], meta, state)
        except CheckpointError as err:
            raise CheckpointError(f"{path}: {err}") from None
        risk_tolerance = meta["risk_tolerance"] if risk_override is None else risk_override
        config_kwargs = {
            f.name: getattr(checked["config"], f.name) for f in dataclasses.fields(checked["config"])
        }
        if env is None:
            if not meta.get("env_id"):
                raise CheckpointError(f"{path} records no env id; pass env=")

            try:
                env = make_vec(meta["env_id"], num_envs=meta["num_envs"], device=device)
            except ValueError as err:
                raise CheckpointError(f"{path}: metadata.env_id: {err}") from None
            try:  # the env the checkpoint names must have the spaces it records
                _check_env_spaces(env, meta)
            except ValueError as err:
                raise CheckpointError(f"{path}: metadata.env_id: {err}") from None
        else:
            _check_env_spaces(env, meta)
        try:
            agent = cls(env, risk_tolerance=risk_tolerance, seed=meta["seed"], device=device, **config_kwargs)
        except (TypeError, ValueError) as err:  # a config the checks above missed: still the file's fault
            raise CheckpointError(f"{path}: config does not fit {cls.__name__}: {err}") from None
        _check_env_spaces(agent.env, meta)
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
                and _env_name(getattr(agent.env, "env_id", None)) == _env_name(meta.get("env_id"))
            ):
                load_env_state(env_state)
                agent._obs = obs
            agent._load_training_state(training)
        else:
            agent.num_timesteps = int(meta.get("num_timesteps", 0))
        if print_system_info:
            print(f"System info saved with {path}: {json.dumps(manifest.get('versions', {}))}")
        agent.set_random_seed(seed)
        return agent

    # ------------------------------------------------------------------ checkpoint schema hooks

    @classmethod
    def _checkpoint_limits(cls) -> dict[str, tuple[float, float]]:
        """Upper (and lower) limits of this agent's config fields beyond :data:`schema.CONFIG_LIMITS`."""
        return {}

    @classmethod
    def _checkpoint_spec(
        cls, config: Any, obs_dim: int, action_space: dict[str, Any], num_envs: int
    ) -> tuple[Any, Any, int]:
        """``(policy_spec, training_spec, bytes)``: what ``_policy_state``/``_training_state`` hold
        for ``config`` (from meta-device replicas), and the bytes building the agent allocates."""
        raise CheckpointError(f"{cls.__name__} does not describe its checkpoint layout")

    @classmethod
    def _check_checkpoint_state(cls, config: Any, meta: dict[str, Any], state: dict[str, Any]) -> None:
        """Range-check tensor values of a loaded state (buffer positions, indices, ...)."""
        return None

    @classmethod
    def _checkpoint_state_spec(cls, config: Any, meta: dict[str, Any]) -> tuple[Any, int]:
        obs_space, act_space = meta["observation_space"], meta["action_space"]
        if obs_space["type"] != "Box":
            raise CheckpointError(f"metadata.observation_space must be a Box for {cls.__name__}")
        allowed = {k.__name__ for k in cls.action_space_kinds}
        if act_space["type"] not in allowed:
            raise CheckpointError(
                f"metadata.action_space must be a {' or '.join(sorted(allowed))} for {cls.__name__}"
            )
        obs_dim, n_env = int(obs_space["shape"][0]), int(meta["num_envs"])
        with torch.device("meta"):
            policy, training, construct_bytes = cls._checkpoint_spec(config, obs_dim, act_space, n_env)
        env_spec = schema.env_state_spec(meta["env_id"], n_env)
        training = {
            **training,
            "rng": schema.rng_spec(),
            "num_timesteps": JsonSpec("int", 0, 2**62),
            "obs": Opt(TensorSpec(schema.FLOATS, (n_env, obs_dim))),
            "env": Opt(env_spec) if env_spec is not None else None,
        }
        return {"policy": policy, "training": Opt(training)}, construct_bytes

    @classmethod
    def _check_checkpoint_values(cls, config: Any, meta: dict[str, Any], state: dict[str, Any]) -> None:
        training = state.get("training")
        if training is not None:
            schema.check_generator_state(training["rng"], "state.training.rng")
            env_state = training.get("env")
            if isinstance(env_state, dict):
                for group in ("params", "noise"):
                    for k, v in (env_state.get(group) or {}).items():
                        try:
                            check_physical(k, v)
                        except ValueError as err:
                            raise CheckpointError(f"state.training.env.{group}.{k}: {err}") from None
                gen = env_state.get("generator")
                if isinstance(gen, Tensor):
                    schema.check_generator_state(gen, "state.training.env.generator")
        cls._check_checkpoint_state(config, meta, state)


def _env_name(env_id: Any) -> str | None:
    return str(env_id).removeprefix("riskrl/") if env_id else None


def _check_env_spaces(env: Any, meta: dict[str, Any]) -> None:
    """ValueError when ``env``'s spaces differ from the checkpoint's (before building anything on it)."""
    for key, attr in (
        ("observation_space", "single_observation_space"),
        ("action_space", "single_action_space"),
    ):
        space = getattr(env, attr, None)
        if space is None:
            continue
        try:
            described = space_to_json(space)
        except ValueError:
            described = None
        if described != meta[key]:
            raise ValueError(
                f"model and env spaces differ: the env's {key} is {space}, the checkpoint's is "
                f"{meta[key]['type']} {meta[key].get('shape', meta[key].get('n'))}"
            )


def restore_generator(generator: torch.Generator, state: Tensor, fallback_seed: int) -> bool:
    """Restore a saved generator state; return False (and reseed) when it is another device type's.

    A CUDA generator's state cannot be loaded into a CPU generator or the other way round, so a
    checkpoint moved between devices continues with a fresh, deterministic stream instead (with a
    warning). A state of neither layout, or one torch rejects, is a :class:`CheckpointError`.
    """
    own = schema.CPU_RNG_BYTES if generator.device.type == "cpu" else schema.CUDA_RNG_BYTES
    other = schema.CUDA_RNG_BYTES if own == schema.CPU_RNG_BYTES else schema.CPU_RNG_BYTES
    if state.dtype != torch.uint8 or state.dim() != 1 or state.numel() not in (own, other):
        raise CheckpointError(
            f"generator state must be {own} (or, from another device type, {other}) uint8 values, "
            f"got {str(state.dtype).removeprefix('torch.')} {tuple(state.shape)}"
        )
    if state.numel() == own:
        try:
            generator.set_state(state.cpu())
        except RuntimeError as err:
            raise CheckpointError(f"invalid generator state ({str(err)[:100]})") from None
        return True
    warnings.warn(
        f"checkpoint RNG state is from another device type; reseeding the {generator.device} generator "
        "(training continues, but not bit-identically)",
        RuntimeWarning,
        stacklevel=3,
    )
    generator.manual_seed(int(fallback_seed))
    return False


def _check_timesteps(value: Any, name: str = "total_timesteps") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def _clone(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


def _shapes(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flattened ``{path: shape or type}`` of a nested state, to compare parameter sets."""
    if isinstance(obj, Tensor):
        return {prefix: tuple(obj.shape)}
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_shapes(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_shapes(v, f"{prefix}.{i}"))
        return out
    return {prefix: type(obj).__name__}


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


def require_ints(config: Any, names: tuple[str, ...], minimum: int) -> None:
    """Check that each named field of ``config`` is a whole number ``>= minimum`` (a ValueError naming
    the field otherwise) and store it as an ``int``."""
    for name in names:
        value = getattr(config, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or int(value) != value
            or value < minimum
        ):
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        setattr(config, name, int(value))


def hidden_widths(hidden: Any) -> tuple[int, ...]:
    """``hidden`` as a non-empty tuple of positive layer widths (a ValueError otherwise)."""
    widths = tuple(int(h) for h in hidden)
    if not widths or any(h < 1 for h in widths):
        raise ValueError(f"hidden must be a non-empty sequence of positive widths, got {widths}")
    return widths


def finite_float(name: str, value: float) -> float:
    """Return ``value`` as a float or raise a ValueError naming ``name`` when it is not finite."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value
