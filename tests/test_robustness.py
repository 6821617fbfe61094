"""riskrl.robustness_grid: one batched rollout over a grid of physical parameters."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from riskrl import GridResult, cvar, evaluate, robustness_grid
from riskrl.agents import BayesDQN


def lean_policy(obs: torch.Tensor) -> torch.Tensor:
    return (obs[..., 2] > 0).long()


GRID = {"length": [0.25, 0.5, 1.0], "force_mag": [5.0, 10.0]}


def test_grid_in_one_rollout_equals_each_cell_evaluated_alone() -> None:
    result = robustness_grid(lean_policy, "CartPole-v1", GRID, n_episodes=12, seed=4)
    assert isinstance(result, GridResult)
    assert [tuple(c.values()) for c in result.cells] == [
        (0.25, 5.0), (0.25, 10.0), (0.5, 5.0), (0.5, 10.0), (1.0, 5.0), (1.0, 10.0)
    ]  # fmt: skip
    for cell, res in zip(result.cells, result.results):
        alone = evaluate(lean_policy, "CartPole-v1", n_episodes=12, seed=4, perturb=cell, bootstrap=False)
        np.testing.assert_array_equal(res.returns, alone.returns)
        np.testing.assert_array_equal(res.lengths, alone.lengths)
    # the cells really differ (parameters reached each env of the batch)
    assert len({round(r.mean, 6) for r in result.results}) == len(result.cells)


def test_grid_summaries() -> None:
    result = robustness_grid(lean_policy, "CartPole-v1", GRID, n_episodes=8, seed=0, alpha=0.34)
    means = np.array([r.mean for r in result.results])
    assert result.average == pytest.approx(means.mean())
    assert result.worst == pytest.approx(means.min())
    assert result.worst_cell == result.cells[int(np.argmin(means))]
    assert result.cvar == pytest.approx(float(cvar(torch.as_tensor(means), 0.34)))
    assert result.worst <= result.cvar <= result.average
    assert result.table().shape == (3, 2) and result.table()[1, 1] == pytest.approx(means[3])
    d = result.to_dict()
    assert d["worst_cell"] == result.worst_cell and len(d["cells"]) == 6


def test_risk_tolerances_evaluate_the_same_agent_and_restore_its_knob() -> None:
    agent = BayesDQN("CartPole-v1", seed=0, hidden=(16, 16), n_members=3, risk_tolerance=0.7)
    out = robustness_grid(
        agent, "CartPole-v1", {"length": [0.5, 1.5]}, n_episodes=6, seed=1, risk_tolerances=[0.0, 4.0]
    )
    assert [r.risk_tolerance for r in out] == [0.0, 4.0]
    assert agent.risk_tolerance == 0.7
    agent.risk_tolerance = 4.0
    alone = evaluate(agent, "CartPole-v1", n_episodes=6, seed=1, perturb={"length": 1.5}, bootstrap=False)
    np.testing.assert_array_equal(out[1].results[1].returns, alone.returns)


def test_heatmap_and_curve_plots(tmp_path: Path) -> None:
    result = robustness_grid(lean_policy, "CartPole-v1", GRID, n_episodes=4, seed=0)
    assert result.plot(tmp_path / "grid.png").stat().st_size > 1000
    one = robustness_grid(lean_policy, "CartPole-v1", {"length": [0.5, 1.0]}, n_episodes=4, seed=0)
    assert one.plot(tmp_path / "curve.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("grid", "match"),
    [
        ({}, "non-empty"),
        ({"lenght": [0.5]}, "lenght"),
        ({"length": []}, "length"),
        ({"length": [0.5, math.nan]}, "length"),
        ({"length": [0.5, math.inf]}, "length"),
        ({"length": ["long"]}, "length"),
        ({"length": 0.5}, "length"),
    ],
)
def test_bad_grids_name_the_parameter(grid, match) -> None:
    with pytest.raises(ValueError, match=match):
        robustness_grid(lean_policy, "CartPole-v1", grid, n_episodes=2)
