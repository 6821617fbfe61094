"""Robustness to shifted dynamics: a policy evaluated on a grid over physical parameters.

Robust-RL benchmarks (RRLS, M2TD3) evaluate each policy on every cell of a grid over physical
parameters and report the worst cell and the average over the grid. Here the whole grid is ONE
batched rollout: riskrl's envs hold their physical parameters per env, so ``cells x episodes`` envs
step together, each with its cell's parameters. Every cell starts its episodes from the same states
(those of a plain ``evaluate(policy, env_id, n_episodes, seed=seed)``: common random numbers), so
differences between cells are due to the parameters, not to the starts.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from riskrl.envs import make_vec
from riskrl.evaluation import EvalResult, PolicyLike, bootstrap_ci, evaluate
from riskrl.plotting import plot_grid
from riskrl.risk import cvar, validate_risk_tolerance

__all__ = ["GridResult", "robustness_curve", "robustness_grid"]


@dataclasses.dataclass(frozen=True)
class GridResult:
    """Per-cell results of :func:`robustness_grid` for one ``risk_tolerance`` (None: as the policy is).

    ``cells[i]`` maps each grid parameter to its value in cell ``i``; ``results[i]`` is that cell's
    :class:`~riskrl.evaluation.EvalResult`. Summaries are over cells' mean returns.
    """

    grid: dict[str, list[float]]
    cells: list[dict[str, float]]
    results: list[EvalResult]
    risk_tolerance: float | None = None
    alpha: float = 0.1

    @property
    def cell_means(self) -> np.ndarray:
        """Mean return of every cell, in ``cells`` order."""
        return np.array([r.mean for r in self.results])

    @property
    def average(self) -> float:
        """Average over the grid of the cells' mean returns."""
        return float(self.cell_means.mean())

    @property
    def worst(self) -> float:
        """Mean return of the worst cell."""
        return float(self.cell_means.min())

    @property
    def worst_cell(self) -> dict[str, float]:
        """Parameters of the worst cell."""
        return self.cells[int(np.argmin(self.cell_means))]

    @property
    def cvar(self) -> float:
        """CVaR over cells: the mean of the worst ``alpha`` share of cells' mean returns."""
        return float(cvar(torch.as_tensor(self.cell_means, dtype=torch.float64), self.alpha))

    def table(self) -> np.ndarray:
        """Cell means shaped as the grid (one axis per parameter, in ``grid`` order)."""
        return self.cell_means.reshape([len(v) for v in self.grid.values()])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary with every cell's metrics."""
        return {
            "grid": self.grid,
            "risk_tolerance": self.risk_tolerance,
            "alpha": self.alpha,
            "average": self.average,
            "worst": self.worst,
            "worst_cell": self.worst_cell,
            "cvar_over_cells": self.cvar,
            "cells": [{"params": c, **r.to_dict()} for c, r in zip(self.cells, self.results)],
        }

    def plot(self, path: str | Path | None = None, metric: str = "mean") -> Any:
        """Heatmap over two parameters (or a curve over one); returns the figure or the saved path."""
        return plot_grid(self, path=path, metric=metric)


def _check_grid(grid: Mapping[str, Sequence[float]], param_names: Sequence[str]) -> dict[str, list[float]]:
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError("grid must be a non-empty mapping of parameter names to value lists")
    out: dict[str, list[float]] = {}
    for name, values in grid.items():
        if name not in param_names:
            raise ValueError(f"grid: unknown parameter {name!r}; valid names: {list(param_names)}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
            raise ValueError(f"grid[{name!r}] must be a list of numbers, got {values!r}")
        vals = []
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"grid[{name!r}]: {v!r} is not a number")
            if not math.isfinite(float(v)):
                raise ValueError(f"grid[{name!r}]: {v!r} is not finite")
            vals.append(float(v))
        if not vals:
            raise ValueError(f"grid[{name!r}] is empty")
        out[name] = vals
    return out


def robustness_grid(
    policy: PolicyLike,
    env_id: str,
    grid: Mapping[str, Sequence[float]],
    n_episodes: int = 100,
    *,
    seed: int = 0,
    risk_tolerances: Sequence[float] | None = None,
    alpha: float = 0.1,
    device: str | torch.device = "cpu",
    bootstrap: bool = False,
    **env_kwargs: Any,
) -> GridResult | list[GridResult]:
    """Evaluate ``policy`` on every cell of ``grid`` (e.g. ``{"length": [0.25, 0.5, 1.0],
    "masspole": [0.05, 0.1, 0.3]}``), ``n_episodes`` per cell, as one batched rollout.

    Args:
        policy: a riskrl agent, a stable-baselines3 model or a callable (as :func:`riskrl.evaluate`).
        env_id: a riskrl batched env id (``riskrl.envs.make_vec`` must give per-env parameters).
        grid: parameter name -> list of values; cells are the Cartesian product.
        seed: every cell starts from the states of ``evaluate(..., n_episodes, seed=seed)``.
        risk_tolerances: evaluate the same agent at each of these (``policy.risk_tolerance`` is set
            and restored); returns one :class:`GridResult` per value. None: the policy as it is.
        bootstrap: per-cell bootstrap confidence intervals (costs one resampling per cell).
        **env_kwargs: passed to :func:`riskrl.envs.make_vec` (e.g. ``dtype``).
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, (int, np.integer)) or n_episodes < 1:
        raise ValueError(f"n_episodes must be a positive integer, got {n_episodes!r}")
    probe = make_vec(env_id, num_envs=int(n_episodes), device=device, **env_kwargs)
    if not hasattr(probe, "perturb") or not hasattr(probe, "state"):
        raise ValueError(f"{env_id} has no riskrl batched env with per-env physical parameters")
    checked = _check_grid(grid, probe.param_names)
    cells = [dict(zip(checked, values)) for values in itertools.product(*checked.values())]
    n_cells, n = len(cells), int(n_episodes)
    # The starts of a plain evaluation with n envs, repeated in every cell (common random numbers).
    probe.reset(seed=seed)
    starts = probe.state.repeat(n_cells, 1)
    env = make_vec(env_id, num_envs=n_cells * n, device=device, **env_kwargs)
    per_env = {
        name: torch.tensor([c[name] for c in cells], dtype=torch.float64).repeat_interleave(n)
        for name in checked
    }

    def one(k: float | None) -> GridResult:
        if k is not None:
            policy.risk_tolerance = k
        res = evaluate(
            policy, env, n_cells * n, seed=seed, perturb=per_env, alpha=alpha, bootstrap=False,
            start_states=starts,
        )  # fmt: skip
        # One episode per env slot: slot c * n + j is cell c's j-th episode.
        returns = res.returns.reshape(n_cells, n)
        lengths = res.lengths.reshape(n_cells, n)
        results = [
            EvalResult(
                returns=returns[c],
                lengths=lengths[c],
                alpha=alpha,
                failure_threshold=res.failure_threshold,
                ci=bootstrap_ci(returns[c], alpha, seed) if bootstrap else {},
            )
            for c in range(n_cells)
        ]
        return GridResult(checked, cells, results, risk_tolerance=k, alpha=alpha)

    if risk_tolerances is None:
        return one(None)
    if not hasattr(policy, "risk_tolerance"):
        raise ValueError("risk_tolerances needs a riskrl agent (a policy with a risk_tolerance attribute)")
    before = policy.risk_tolerance
    try:
        return [one(validate_risk_tolerance(k)) for k in risk_tolerances]
    finally:
        policy.risk_tolerance = before


def robustness_curve(
    policy: PolicyLike,
    env_id: str,
    param: str,
    values: Sequence[float] | np.ndarray,
    n_episodes: int = 100,
    **kwargs: Any,
) -> list[tuple[float, EvalResult]]:
    """``(value, EvalResult)`` for each value of one physical parameter: the one-parameter case of
    :func:`robustness_grid` (one batched rollout; every point starts from the same states)."""
    result = robustness_grid(policy, env_id, {param: list(values)}, n_episodes, **kwargs)
    assert isinstance(result, GridResult)
    return [(cell[param], r) for cell, r in zip(result.cells, result.results)]
