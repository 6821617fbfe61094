"""Learning-curve logging: CSV files and TensorBoard, written as training goes."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO, Any

__all__ = ["TrainingLogger"]


class TrainingLogger:
    """Write episodes to ``episodes.csv``, scalars to ``metrics.csv`` and both to TensorBoard.

    ``episodes.csv`` has one row per finished training episode: ``timestep, return, length``.
    ``metrics.csv`` is long-format: ``timestep, name, value`` (losses, evaluation results, ...).
    TensorBoard event files go to the same directory (``tensorboard --logdir <log_dir>``).
    """

    def __init__(self, log_dir: str | Path, tensorboard: bool = True) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._episodes_fh: IO[str] = open(self.log_dir / "episodes.csv", "a", newline="")
        self._metrics_fh: IO[str] = open(self.log_dir / "metrics.csv", "a", newline="")
        self._episodes = csv.writer(self._episodes_fh)
        self._metrics = csv.writer(self._metrics_fh)
        if self._episodes_fh.tell() == 0:
            self._episodes.writerow(["timestep", "return", "length"])
        if self._metrics_fh.tell() == 0:
            self._metrics.writerow(["timestep", "name", "value"])
        self._tb: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.log_dir))

    def log_episodes(self, timestep: int, returns: list[float], lengths: list[int]) -> None:
        """Record finished training episodes at ``timestep``."""
        for r, length in zip(returns, lengths):
            self._episodes.writerow([timestep, r, length])
            if self._tb is not None:
                self._tb.add_scalar("rollout/episode_return", r, timestep)
                self._tb.add_scalar("rollout/episode_length", length, timestep)

    def log_scalar(self, timestep: int, name: str, value: float) -> None:
        """Record one named scalar (a loss, an evaluation result) at ``timestep``."""
        self._metrics.writerow([timestep, name, value])
        if self._tb is not None:
            self._tb.add_scalar(name, value, timestep)

    def flush(self) -> None:
        """Push buffered rows and events to disk."""
        self._episodes_fh.flush()
        self._metrics_fh.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Flush and close every file."""
        self.flush()
        self._episodes_fh.close()
        self._metrics_fh.close()
        if self._tb is not None:
            self._tb.close()
