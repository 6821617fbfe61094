"""Bridge to DeepMind's Behaviour Suite (bsuite): any bsuite experiment as a gymnasium ``Env``.

bsuite (``pip install riskrl[bsuite]``) speaks ``dm_env``; :class:`BsuiteEnv` turns one bsuite
experiment, e.g. ``"deep_sea/5"``, into a gymnasium ``Env`` that riskrl agents take as their ``env``
argument, and logs every episode with bsuite's *own* CSV logger
(``bsuite.load_and_record_to_csv``), so bsuite's analysis code reads the runs and scores them::

    from riskrl.agents import BayesDQN
    from riskrl.bsuite import BsuiteEnv, load_results

    env = BsuiteEnv("deep_sea/0", results_dir="runs/bsuite")     # deep_sea with N = 10
    BayesDQN(env, seed=0, hidden=(50, 50), n_members=10).learn(20_000)
    df, sweep_vars = load_results("runs/bsuite")                   # bsuite.logging.csv_load

Agents wrap a gymnasium ``Env`` instance as a one-env batch (``riskrl.envs.from_gym_env``), so one
bsuite environment means one env in flight: bsuite's protocol counts episodes of one agent. For
many deep_sea episodes as one tensor op, see :class:`riskrl.envs.DeepSeaVecEnv` (tested equal to
bsuite's env step for step).

Conventions: observations are bsuite's observation flattened to ``float32`` (deep_sea's ``N x N``
grid becomes ``N * N``); actions ``Discrete(num_values)``; a last time step with discount ``0`` is
``terminated``, one with a non-zero discount ``truncated``; a ``None`` reward (bsuite's first time
step) is ``0``. ``reset(seed=...)`` reseeds the bsuite env's own ``np.random.RandomState`` where it
has one (deep_sea_stochastic's slips and noise, cartpole_swingup's start, ...); bsuite's loaders
leave it unseeded otherwise. ``info`` carries ``bsuite_info()`` (deep_sea's ``total_bad_episodes``
and ``denoised_return``) on the last step of each episode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

__all__ = ["BsuiteEnv", "bsuite_ids", "load_results"]

_INSTALL_HINT = "bsuite is not installed: pip install 'riskrl[bsuite]' (or bsuite==0.3.6)"


def _import_bsuite() -> Any:
    try:
        import bsuite
    except ImportError as err:  # optional dependency
        raise ImportError(_INSTALL_HINT) from err
    return bsuite


def bsuite_ids(experiment: str) -> tuple[str, ...]:
    """All bsuite ids of one experiment, in bsuite's order (``"deep_sea"`` -> ``("deep_sea/0", ...)``)."""
    _import_bsuite()
    from bsuite import sweep

    ids = tuple(i for i in sweep.SWEEP if i.split(sweep.SEPARATOR)[0] == experiment)
    if not ids:
        names = sorted({i.split(sweep.SEPARATOR)[0] for i in sweep.SWEEP})
        raise ValueError(f"unknown bsuite experiment {experiment!r}; bsuite has {names}")
    return ids


class BsuiteEnv(gym.Env):
    """One bsuite experiment as a gymnasium ``Env`` (see the module docstring for the conventions).

    Args:
        bsuite_id: a bsuite id such as ``"deep_sea/0"`` or ``"cartpole_swingup/3"``
            (``bsuite.sweep.SWEEP`` lists them all).
        results_dir: where bsuite's CSV logger writes ``bsuite_id_-_<id>.csv``; ``None`` logs nothing.
        overwrite: let bsuite's logger replace an existing CSV for this id (bsuite refuses otherwise).

    ``env.bsuite_env`` is the (logging-wrapped) dm_env environment, ``env.raw_env`` bsuite's own env.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self, bsuite_id: str, results_dir: str | Path | None = None, overwrite: bool = False
    ) -> None:
        bsuite = _import_bsuite()
        from bsuite import sweep

        if not isinstance(bsuite_id, str) or bsuite_id not in sweep.SETTINGS:
            raise ValueError(
                f"unknown bsuite id {bsuite_id!r}; ids look like 'deep_sea/0' (bsuite.sweep.SWEEP lists them)"
            )
        self.bsuite_id = bsuite_id
        self.results_dir = None if results_dir is None else Path(results_dir)
        if self.results_dir is None:
            self.bsuite_env = bsuite.load_from_id(bsuite_id)
        else:
            self.bsuite_env = bsuite.load_and_record_to_csv(bsuite_id, str(self.results_dir), overwrite)
        self.raw_env = getattr(self.bsuite_env, "raw_env", self.bsuite_env)
        obs_spec = self.bsuite_env.observation_spec()
        act_spec = self.bsuite_env.action_spec()
        if not hasattr(act_spec, "num_values"):
            raise ValueError(f"{bsuite_id}: only discrete bsuite action specs are bridged, got {act_spec}")
        self._obs_size = int(np.prod(obs_spec.shape))
        low = getattr(obs_spec, "minimum", -np.inf)
        high = getattr(obs_spec, "maximum", np.inf)
        self.observation_space = gym.spaces.Box(
            np.broadcast_to(np.asarray(low, np.float32), obs_spec.shape).reshape(-1),
            np.broadcast_to(np.asarray(high, np.float32), obs_spec.shape).reshape(-1),
            dtype=np.float32,
        )
        self.action_space = gym.spaces.Discrete(int(act_spec.num_values))
        #: bsuite's episode budget for this experiment (deep_sea: 10k)
        self.bsuite_num_episodes = int(self.raw_env.bsuite_num_episodes)

    def _obs(self, timestep: Any) -> np.ndarray:
        return np.asarray(timestep.observation, dtype=np.float32).reshape(self._obs_size)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode (bsuite's ``reset``); ``seed`` reseeds the bsuite env's RandomState."""
        super().reset(seed=seed)
        if seed is not None and isinstance(getattr(self.raw_env, "_rng", None), np.random.RandomState):
            self.raw_env._rng.seed(int(seed))
        return self._obs(self.bsuite_env.reset()), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One dm_env step; the last step of an episode is terminated (discount 0) or truncated."""
        a = int(np.asarray(action).reshape(()))
        if not self.action_space.contains(a):
            raise ValueError(
                f"{self.bsuite_id}: action must be in [0, {self.action_space.n}), got {action!r}"
            )
        ts = self.bsuite_env.step(a)
        reward = 0.0 if ts.reward is None else float(ts.reward)
        info: dict[str, Any] = {}
        last = bool(ts.last())
        terminated = last and float(ts.discount) == 0.0
        if last and hasattr(self.raw_env, "bsuite_info"):
            info["bsuite_info"] = dict(self.raw_env.bsuite_info())
        return self._obs(ts), reward, terminated, last and not terminated, info

    def close(self) -> None:
        """Flush bsuite's logger (its CSV is rewritten at every logged episode anyway)."""
        if hasattr(self.bsuite_env, "flush"):
            self.bsuite_env.flush()

    def __repr__(self) -> str:
        return f"BsuiteEnv({self.bsuite_id!r}, results_dir={self.results_dir})"


def load_results(results_dir: str | Path) -> tuple[Any, list[str]]:
    """bsuite's own loader on a results directory: ``(DataFrame, sweep_vars)``
    (``bsuite.logging.csv_load.load_bsuite``), the input of bsuite's analysis functions."""
    _import_bsuite()
    from bsuite.logging import csv_load

    return csv_load.load_bsuite(str(results_dir))
