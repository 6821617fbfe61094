"""Training logs: stable-baselines3's ``Logger`` (same stdout, ``progress.csv`` and TensorBoard
output as SB3) plus riskrl's per-episode ``episodes.csv``."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import IO

from stable_baselines3.common.logger import HumanOutputFormat, KVWriter, Logger, make_output_format
from stable_baselines3.common.utils import get_latest_run_id

__all__ = ["TrainingLogger", "configure_training_logger"]


class TrainingLogger(Logger):
    """SB3's ``Logger`` (``record`` / ``record_mean`` / ``dump``) that also writes ``episodes.csv``.

    ``episodes.csv`` (in ``folder``, when given) has one row per finished training episode:
    ``timestep, return, length``. Everything recorded goes to the output formats at each ``dump``:
    with :func:`configure_training_logger` these are ``progress.csv`` and TensorBoard event files in
    ``log_dir``, stdout when ``verbose >= 1``, as in SB3.
    """

    def __init__(self, folder: str | os.PathLike[str] | None, output_formats: list[KVWriter]) -> None:
        super().__init__(os.fspath(folder) if folder is not None else None, output_formats)
        self._episodes_fh: IO[str] | None = None
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self._episodes_fh = open(Path(folder) / "episodes.csv", "a", newline="")
            self._episodes = csv.writer(self._episodes_fh)
            if self._episodes_fh.tell() == 0:
                self._episodes.writerow(["timestep", "return", "length"])

    def log_episodes(self, timestep: int, returns: list[float], lengths: list[int]) -> None:
        """Append finished training episodes (at ``timestep``) to ``episodes.csv``."""
        if self._episodes_fh is None:
            return
        for r, length in zip(returns, lengths):
            self._episodes.writerow([timestep, r, length])

    def close(self) -> None:
        """Close every output (``dump`` first to write what is still recorded)."""
        super().close()
        if self._episodes_fh is not None:
            self._episodes_fh.close()
            self._episodes_fh = None


def configure_training_logger(
    log_dir: str | os.PathLike[str] | None = None,
    verbose: int = 0,
    tensorboard_log: str | os.PathLike[str] | None = None,
    tb_log_name: str = "",
    reset_num_timesteps: bool = True,
) -> TrainingLogger | None:
    """The logger of one ``learn`` call, or ``None`` when nothing would be written.

    ``log_dir``: ``progress.csv``, TensorBoard events and ``episodes.csv`` in that folder.
    ``tensorboard_log``: SB3's layout, TensorBoard events in ``<tensorboard_log>/<tb_log_name>_<run>``
    (a new run each call, the same run when continuing with ``reset_num_timesteps=False``).
    ``verbose >= 1``: SB3's table on stdout.
    """
    formats: list[KVWriter] = []
    if verbose >= 1:
        formats.append(HumanOutputFormat(sys.stdout))
    if log_dir is not None:
        folder = os.fspath(log_dir)
        os.makedirs(folder, exist_ok=True)
        formats += [make_output_format("csv", folder), make_output_format("tensorboard", folder)]
    if tensorboard_log is not None:
        root = os.fspath(tensorboard_log)
        run_id = get_latest_run_id(root, tb_log_name)
        if reset_num_timesteps or run_id == 0:
            run_id += 1
        formats.append(make_output_format("tensorboard", os.path.join(root, f"{tb_log_name}_{run_id}")))
    if not formats:
        return None
    return TrainingLogger(log_dir, formats)
