"""Training callbacks with stable-baselines3's shape: evaluation, checkpointing, composition."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from riskrl.agents.base import Agent

__all__ = ["BaseCallback", "CallbackList", "CheckpointCallback", "EvalCallback"]


class BaseCallback:
    """Hooks called by :meth:`Agent.learn`. ``on_step`` returning ``False`` stops training."""

    def on_training_start(self, agent: Agent) -> None:
        """Called once before the first environment step."""

    def on_step(self, agent: Agent) -> bool:
        """Called after every vectorised environment step (``agent.num_timesteps`` has advanced)."""
        return True

    def on_training_end(self, agent: Agent) -> None:
        """Called once when training stops."""


class CallbackList(BaseCallback):
    """Run several callbacks in order; training stops if any of them asks to."""

    def __init__(self, callbacks: list[BaseCallback]) -> None:
        self.callbacks = list(callbacks)

    def on_training_start(self, agent: Agent) -> None:
        for cb in self.callbacks:
            cb.on_training_start(agent)

    def on_step(self, agent: Agent) -> bool:
        return all([cb.on_step(agent) for cb in self.callbacks])

    def on_training_end(self, agent: Agent) -> None:
        for cb in self.callbacks:
            cb.on_training_end(agent)


class _EveryN(BaseCallback):
    def __init__(self, every: int) -> None:
        if int(every) < 1:
            raise ValueError(f"callback frequency must be >= 1 environment step, got {every}")
        self.every = int(every)
        self._next = self.every

    def on_training_start(self, agent: Agent) -> None:
        self._next = (agent.num_timesteps // self.every + 1) * self.every

    def _due(self, agent: Agent) -> bool:
        if agent.num_timesteps >= self._next:
            self._next = (agent.num_timesteps // self.every + 1) * self.every
            return True
        return False


class EvalCallback(_EveryN):
    """Evaluate the agent every ``eval_freq`` environment steps with :func:`riskrl.evaluate`.

    Results are kept in ``self.history`` (list of dicts), logged to the agent's logger when one is
    active, appended to ``<log_path>/evaluations.jsonl`` if ``log_path`` is given, and the best
    agent so far is saved to ``best_model_path`` if given.
    """

    def __init__(
        self,
        eval_env: Any = None,
        eval_freq: int = 10_000,
        n_eval_episodes: int = 10,
        seed: int = 0,
        log_path: str | Path | None = None,
        best_model_path: str | Path | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(eval_freq)
        self.eval_env = eval_env
        self.n_eval_episodes = n_eval_episodes
        self.seed = seed
        self.log_path = Path(log_path) if log_path else None
        self.best_model_path = Path(best_model_path) if best_model_path else None
        self.verbose = verbose
        self.history: list[dict[str, float]] = []
        self.best_mean = -float("inf")

    def on_step(self, agent: Agent) -> bool:
        if not self._due(agent):
            return True
        from riskrl.evaluation import evaluate

        env = self.eval_env if self.eval_env is not None else agent.env_id
        result = evaluate(agent, env, n_episodes=self.n_eval_episodes, seed=self.seed, device=agent.device)
        row = {
            "timestep": agent.num_timesteps,
            "mean_return": result.mean,
            "std_return": result.std,
            "cvar": result.cvar,
            "mean_length": float(result.lengths.mean()),
        }
        self.history.append(row)
        agent.log_scalar("eval/mean_return", result.mean)
        agent.log_scalar("eval/cvar", result.cvar)
        if self.log_path is not None:
            self.log_path.mkdir(parents=True, exist_ok=True)
            with open(self.log_path / "evaluations.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
        if self.verbose:
            print(f"[eval] step {agent.num_timesteps}: return {result.mean:.1f} ± {result.std:.1f}")
        if result.mean > self.best_mean:
            self.best_mean = result.mean
            if self.best_model_path is not None:
                agent.save(self.best_model_path)
        return True


class CheckpointCallback(_EveryN):
    """Save the full training state every ``save_freq`` environment steps (atomically).

    Files are ``<save_path>/<name_prefix>_<steps>_steps.riskrl`` and ``<name_prefix>_latest.riskrl``
    (the one to resume from); ``keep_last`` bounds how many numbered files are kept.
    """

    def __init__(self, save_freq: int, save_path: str | Path, name_prefix: str = "agent", keep_last: int = 2):
        super().__init__(save_freq)
        self.save_path = Path(save_path)
        self.name_prefix = name_prefix
        self.keep_last = keep_last
        self.saved: list[Path] = []

    def on_step(self, agent: Agent) -> bool:
        if self._due(agent):
            path = self.save_path / f"{self.name_prefix}_{agent.num_timesteps}_steps.riskrl"
            agent.save(path)
            agent.save(self.save_path / f"{self.name_prefix}_latest.riskrl")
            self.saved.append(path)
            while self.keep_last and len(self.saved) > self.keep_last:
                self.saved.pop(0).unlink(missing_ok=True)
        return True
