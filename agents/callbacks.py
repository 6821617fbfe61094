"""Training callbacks: stable-baselines3's own, used unchanged by riskrl agents.

There is one callback system, SB3's. ``BaseCallback``, ``CallbackList``,
``StopTrainingOnRewardThreshold`` and the other SB3 callbacks are re-exported as they are, and
any SB3 callback works in :meth:`riskrl.agents.Agent.learn` (it sees ``model``, ``num_timesteps``,
``n_calls``, ``locals``, ``globals``, ``training_env`` and ``logger``). The three riskrl classes below
are SB3 subclasses that add what riskrl needs:

* :class:`EvalCallback`: evaluates with :func:`riskrl.evaluate` (every episode in flight at once,
  with CVaR) when the eval env is a gymnasium id, a riskrl batched env or omitted (the agent's own
  env id), and exactly as SB3 does (``evaluate_policy``) for gymnasium envs and SB3 ``VecEnv``\\ s.
* :class:`CheckpointCallback`: saves through riskrl's safe format (no pickle), can keep only the
  last ``keep_last`` files and a ``<prefix>_latest`` copy to resume from.
* :class:`ProgressBarCallback`: SB3's progress bar through ``tqdm.auto`` (no ``rich`` needed).

Frequencies count calls, i.e. vectorised environment steps, as in SB3: with ``n`` envs a callback
with ``eval_freq=k`` fires every ``k * n`` environment steps. :class:`EvalCallback` can count
environment steps instead (``freq_unit="timesteps"``), so runs with different numbers of envs (an
SB3 PPO on 8 envs, a DQN on one) are evaluated at the same budgets: this is the periodic evaluator of
:mod:`riskrl.benchmark` and ``experiments/bench_agents.py``.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    ConvertCallback,
    EveryNTimesteps,
    StopTrainingOnMaxEpisodes,
    StopTrainingOnNoModelImprovement,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.callbacks import CheckpointCallback as SB3CheckpointCallback
from stable_baselines3.common.callbacks import EvalCallback as SB3EvalCallback
from stable_baselines3.common.callbacks import EventCallback as SB3EventCallback
from stable_baselines3.common.callbacks import ProgressBarCallback as SB3ProgressBarCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from tqdm.auto import tqdm

# riskrl.evaluation imports no agents (it takes any policy through a small protocol), so the agents'
# EvalCallback can use it without an import cycle.
from riskrl.evaluation import evaluate

__all__ = [
    "BaseCallback",
    "CallbackList",
    "CheckpointCallback",
    "ConvertCallback",
    "EvalCallback",
    "EveryNTimesteps",
    "ProgressBarCallback",
    "StopTrainingOnMaxEpisodes",
    "StopTrainingOnNoModelImprovement",
    "StopTrainingOnRewardThreshold",
]


def _check_freq(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"callback frequency {name} must be an integer >= 1 call (vectorised step), got {value!r}"
        )
    return int(value)


#: what ``EvalCallback.eval_freq`` counts: calls (vectorised steps, SB3's unit) or environment steps
FREQ_UNITS = ("calls", "timesteps")


def _is_riskrl_env(env: Any) -> bool:
    return (
        env is None
        or isinstance(env, str)
        or (hasattr(env, "single_action_space") and hasattr(env, "device"))
    )


class EvalCallback(SB3EvalCallback):
    """SB3's ``EvalCallback``; riskrl ids and batched envs are evaluated by :func:`riskrl.evaluate`.

    Same arguments, attributes and outputs as SB3's (``<log_path>/evaluations.npz``,
    ``<best_model_save_path>/best_model``, ``eval/mean_reward`` in the logger,
    ``callback_on_new_best`` such as :class:`StopTrainingOnRewardThreshold`), plus:

    Args:
        eval_env: a gymnasium id, a riskrl batched env or ``None`` (the agent's env id) for the
            batched riskrl evaluation; a gymnasium ``Env`` or SB3 ``VecEnv`` for SB3's.
        seed: seeds the riskrl evaluation's resets (the same episodes at every evaluation).
        freq_unit: what ``eval_freq`` counts. ``"calls"`` (default, SB3's semantics): calls to the
            callback, i.e. vectorised steps, so with ``n`` envs it fires every ``eval_freq * n``
            environment steps. ``"timesteps"``: environment steps (``num_timesteps``); it fires at
            the first call at or past each multiple of ``eval_freq`` (once per multiple, also when one
            vectorised step crosses several), whatever the number of envs.

    ``history`` holds one dict per evaluation (``timestep``, ``mean_return``, ``std_return``,
    ``cvar`` and ``failure_rate`` where known (the latter needs a failure threshold: the env spec's
    ``reward_threshold``), ``mean_length``), also appended to
    ``<log_path>/evaluations.jsonl``; ``eval_seconds`` is the wall-clock spent evaluating.
    """

    def __init__(
        self,
        eval_env: Any = None,
        callback_on_new_best: BaseCallback | None = None,
        callback_after_eval: BaseCallback | None = None,
        n_eval_episodes: int = 5,
        eval_freq: int = 10_000,
        log_path: str | os.PathLike[str] | None = None,
        best_model_save_path: str | os.PathLike[str] | None = None,
        deterministic: bool = True,
        render: bool = False,
        verbose: int = 1,
        warn: bool = True,
        seed: int = 0,
        freq_unit: str = "calls",
    ) -> None:
        SB3EventCallback.__init__(self, callback_after_eval, verbose=verbose)
        self.callback_on_new_best = callback_on_new_best
        if callback_on_new_best is not None:
            callback_on_new_best.parent = self
        if isinstance(n_eval_episodes, bool) or int(n_eval_episodes) < 1:
            raise ValueError(f"n_eval_episodes must be >= 1, got {n_eval_episodes!r}")
        self.n_eval_episodes = int(n_eval_episodes)
        self.eval_freq = _check_freq("eval_freq", eval_freq)
        if freq_unit not in FREQ_UNITS:
            raise ValueError(f"freq_unit must be one of {FREQ_UNITS}, got {freq_unit!r}")
        self.freq_unit = freq_unit
        self._next_eval_timestep = self.eval_freq
        self.eval_seconds = 0.0
        self.best_mean_reward = -np.inf
        self.last_mean_reward = -np.inf
        self.deterministic = deterministic
        self.render = render
        self.warn = warn
        self.seed = seed
        self._riskrl_eval = _is_riskrl_env(eval_env)
        if self._riskrl_eval and render:
            raise ValueError("render=True needs a gymnasium Env or SB3 VecEnv as eval_env")
        if not self._riskrl_eval and not isinstance(eval_env, VecEnv):
            eval_env = DummyVecEnv([lambda: eval_env])
        self.eval_env = eval_env
        self.best_model_save_path = os.fspath(best_model_save_path) if best_model_save_path else None
        self._log_dir = os.fspath(log_path) if log_path is not None else None
        self.log_path = os.path.join(self._log_dir, "evaluations") if self._log_dir is not None else None
        self.evaluations_results: list[list[float]] = []
        self.evaluations_timesteps: list[int] = []
        self.evaluations_length: list[list[int]] = []
        self._is_success_buffer: list[bool] = []
        self.evaluations_successes: list[list[bool]] = []
        self.history: list[dict[str, float]] = []

    def _init_callback(self) -> None:
        # the first multiple of eval_freq after the steps done so far (learn may resume a run)
        self._next_eval_timestep = (self.model.num_timesteps // self.eval_freq + 1) * self.eval_freq
        if not self._riskrl_eval:
            super()._init_callback()
            return
        if self.eval_env is None and getattr(self.model, "env_id", None) is None:
            raise ValueError("EvalCallback(eval_env=None) needs an agent whose env has a gymnasium id")
        if self.best_model_save_path is not None:
            os.makedirs(self.best_model_save_path, exist_ok=True)
        if self._log_dir is not None:
            os.makedirs(self._log_dir, exist_ok=True)
        if self.callback_on_new_best is not None:
            self.callback_on_new_best.init_callback(self.model)

    def _due(self) -> bool:
        """Whether this call evaluates (and, counting timesteps, the next multiple to wait for)."""
        if self.freq_unit == "calls":
            return self.n_calls % self.eval_freq == 0
        if self.num_timesteps < self._next_eval_timestep:
            return False
        self._next_eval_timestep = (self.num_timesteps // self.eval_freq + 1) * self.eval_freq
        return True

    def _on_step(self) -> bool:
        if not self._due():
            return True
        start = time.perf_counter()
        try:
            if self._riskrl_eval:
                return self._evaluate_batched()
            freq, self.eval_freq = self.eval_freq, 1  # SB3's _on_step re-tests n_calls % eval_freq
            try:
                continue_training = super()._on_step()
            finally:
                self.eval_freq = freq
            self._record_history(self.evaluations_results[-1] if self.log_path else None, None)
            return continue_training
        finally:
            self.eval_seconds += time.perf_counter() - start

    def _evaluate_batched(self) -> bool:
        env = self.eval_env if self.eval_env is not None else self.model.env_id
        result = evaluate(
            self.model,
            env,
            n_episodes=self.n_eval_episodes,
            seed=self.seed,
            device=getattr(self.model, "device", "cpu"),
            deterministic=self.deterministic,
            bootstrap=False,
        )
        returns = [float(r) for r in np.asarray(result.returns)]
        lengths = [int(n) for n in np.asarray(result.lengths)]
        if self.log_path is not None:
            self.evaluations_timesteps.append(self.num_timesteps)
            self.evaluations_results.append(returns)
            self.evaluations_length.append(lengths)
            np.savez(
                self.log_path,
                timesteps=self.evaluations_timesteps,
                results=self.evaluations_results,
                ep_lengths=self.evaluations_length,
            )
        mean_reward, std_reward = float(np.mean(returns)), float(np.std(returns))
        self.last_mean_reward = mean_reward
        if self.verbose >= 1:
            print(
                f"Eval num_timesteps={self.num_timesteps}, episode_reward={mean_reward:.2f} +/- {std_reward:.2f}"
            )
            print(f"Episode length: {np.mean(lengths):.2f} +/- {np.std(lengths):.2f}")
        self.logger.record("eval/mean_reward", mean_reward)
        self.logger.record("eval/mean_ep_length", float(np.mean(lengths)))
        self.logger.record("eval/cvar", float(result.cvar))
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(self.num_timesteps)
        self._record_history(returns, float(result.cvar), lengths, result.failure_rate)
        continue_training = True
        if mean_reward > self.best_mean_reward:
            if self.verbose >= 1:
                print("New best mean reward!")
            if self.best_model_save_path is not None:
                self.model.save(os.path.join(self.best_model_save_path, "best_model"))
            self.best_mean_reward = mean_reward
            if self.callback_on_new_best is not None:
                continue_training = self.callback_on_new_best.on_step()
        if self.callback is not None:
            continue_training = continue_training and self._on_event()
        return continue_training

    def _record_history(
        self,
        returns: list[float] | None,
        cvar: float | None,
        lengths: list[int] | None = None,
        failure_rate: float | None = None,
    ) -> None:
        row: dict[str, Any] = {"timestep": self.num_timesteps, "mean_return": self.last_mean_reward}
        if returns is not None:
            row["std_return"] = float(np.std(returns))
        if cvar is not None:
            row["cvar"] = cvar
        if failure_rate is not None and math.isfinite(failure_rate):  # NaN: the env has no threshold
            row["failure_rate"] = failure_rate
        if lengths is not None:
            row["mean_length"] = float(np.mean(lengths))
        self.history.append(row)
        if self._log_dir is not None:
            with open(Path(self._log_dir) / "evaluations.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")


class CheckpointCallback(SB3CheckpointCallback):
    """SB3's ``CheckpointCallback``: every ``save_freq`` calls, ``model.save`` to
    ``<save_path>/<name_prefix>_<num_timesteps>_steps.<extension>``.

    riskrl agents save in riskrl's safe format (safetensors + JSON, never pickle), with the full
    training state (replay buffer, optimisers, RNGs) inside, so ``save_replay_buffer`` adds nothing
    for them. Extra options:

    Args:
        keep_last: keep only the newest ``keep_last`` numbered files (``None``: keep all).
        save_latest: also write ``<name_prefix>_latest.<extension>`` (the file to resume from).
        extension: file extension (SB3's ``"zip"``; riskrl's own runs use ``"riskrl"``).
    """

    def __init__(
        self,
        save_freq: int,
        save_path: str | os.PathLike[str],
        name_prefix: str = "rl_model",
        save_replay_buffer: bool = False,
        save_vecnormalize: bool = False,
        verbose: int = 0,
        keep_last: int | None = None,
        save_latest: bool = False,
        extension: str = "zip",
    ) -> None:
        super().__init__(
            _check_freq("save_freq", save_freq),
            os.fspath(save_path),
            name_prefix=name_prefix,
            save_replay_buffer=save_replay_buffer,
            save_vecnormalize=save_vecnormalize,
            verbose=verbose,
        )
        if keep_last is not None and (isinstance(keep_last, bool) or int(keep_last) < 1):
            raise ValueError(f"keep_last must be >= 1 or None, got {keep_last!r}")
        self.keep_last = None if keep_last is None else int(keep_last)
        self.save_latest = save_latest
        self.extension = extension.lstrip(".")
        self.saved: list[Path] = []

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq != 0:
            return True
        path = Path(self._checkpoint_path(extension=self.extension))
        self.model.save(path)
        if self.verbose >= 2:
            print(f"Saving model checkpoint to {path}")
        if self.save_latest:
            self.model.save(Path(self.save_path) / f"{self.name_prefix}_latest.{self.extension}")
        if self.save_replay_buffer and getattr(self.model, "replay_buffer", None) is not None:
            self.model.save_replay_buffer(self._checkpoint_path("replay_buffer_", extension="pkl"))
        vec_normalize = self.model.get_vec_normalize_env() if self.save_vecnormalize else None
        if vec_normalize is not None:
            vec_normalize.save(self._checkpoint_path("vecnormalize_", extension="pkl"))
        self.saved.append(path)
        while self.keep_last is not None and len(self.saved) > self.keep_last:
            self.saved.pop(0).unlink(missing_ok=True)
        return True


class ProgressBarCallback(SB3ProgressBarCallback):
    """SB3's ``ProgressBarCallback`` drawn with ``tqdm.auto`` (SB3's needs ``rich``): counts
    environment steps from ``model.num_timesteps`` to the learn call's target."""

    def __init__(self, desc: str | None = None) -> None:
        BaseCallback.__init__(self)
        self.desc = desc

    def _on_training_start(self) -> None:
        desc = self.desc or f"{type(self.model).__name__} learn"
        self.pbar = tqdm(
            total=int(self.locals["total_timesteps"]),
            initial=self.model.num_timesteps,
            desc=desc,
            unit="step",
        )
