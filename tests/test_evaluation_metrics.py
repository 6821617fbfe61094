"""EvalResult statistics against numpy/scipy on fixed arrays, and their edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from riskrl import evaluate
from riskrl.evaluation import EvalResult, bootstrap_ci


def _result(returns, **kw) -> EvalResult:
    r = np.asarray(returns, dtype=np.float64)
    return EvalResult(returns=r, lengths=np.ones_like(r, dtype=np.int64), **kw)


def test_metrics_match_numpy_scipy() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(100, 30, size=400)
    res = _result(x, alpha=0.1, failure_threshold=80.0)
    assert res.mean == pytest.approx(np.mean(x))
    assert res.std == pytest.approx(np.std(x))
    assert res.iqm == pytest.approx(stats.trim_mean(x, 0.25))
    assert res.cvar == pytest.approx(np.sort(x)[:40].mean())
    assert res.worst == pytest.approx(x.min())
    assert res.failure_rate == pytest.approx(np.mean(x < 80.0))
    assert res.n_episodes == 400


def test_iqm_ignores_outliers_and_cvar_tail() -> None:
    x = [10.0] * 8 + [-1000.0, 1000.0]
    res = _result(x, alpha=0.1)
    assert res.iqm == pytest.approx(10.0)
    assert res.cvar == pytest.approx(-1000.0)
    assert res.worst == -1000.0


def test_single_episode_and_no_threshold() -> None:
    res = _result([5.0])
    assert res.cvar == 5.0 and res.iqm == 5.0 and res.std == 0.0
    assert math.isnan(res.failure_rate)
    assert bootstrap_ci(np.array([5.0]), 0.1, 0) == {
        "mean": (5.0, 5.0),
        "iqm": (5.0, 5.0),
        "cvar": (5.0, 5.0),
    }


def test_bootstrap_ci_brackets_the_estimates_and_is_seeded() -> None:
    rng = np.random.default_rng(2)
    x = rng.exponential(10, size=300)
    ci = bootstrap_ci(x, 0.1, seed=3)
    res = _result(x)
    for name, value in (("mean", res.mean), ("iqm", res.iqm), ("cvar", res.cvar)):
        low, high = ci[name]
        assert low <= value <= high
        assert high - low > 0
    # The mean's interval is close to the normal-theory one.
    se = np.std(x, ddof=1) / np.sqrt(x.size)
    assert ci["mean"][1] - ci["mean"][0] == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert bootstrap_ci(x, 0.1, seed=3) == ci


def test_to_dict_is_json_ready() -> None:
    import json

    res = _result([1.0, 2.0, 3.0], failure_threshold=2.5, ci={"mean": (1.0, 3.0)})
    d = json.loads(json.dumps(res.to_dict()))
    assert d["returns"] == [1.0, 2.0, 3.0] and d["failure_rate"] == pytest.approx(2 / 3)
    assert "cvar" in str(res).lower()


@pytest.mark.parametrize("alpha", [0.05, 0.25, 0.5])
def test_cvar_uses_the_given_alpha(alpha: float) -> None:
    """CVaR, its bootstrap interval and ``evaluate`` all follow ``alpha`` (not a fixed 0.1)."""
    x = np.arange(1.0, 201.0)  # 200 distinct returns: the worst alpha share is 1 .. alpha * 200
    k = round(alpha * 200)
    res = _result(x, alpha=alpha)
    assert res.cvar == pytest.approx(x[:k].mean())
    lo, hi = bootstrap_ci(x, alpha, seed=0)["cvar"]
    assert lo <= x[:k].mean() <= hi
    if alpha >= 0.25:  # far from the 0.1 tail: an interval computed with alpha 0.1 would miss it
        assert lo > x[:20].mean()


def test_evaluate_passes_alpha_through() -> None:
    def lean(obs):
        return (obs[:, 2] > 0).long()

    a = evaluate(lean, "CartPole-v1", n_episodes=40, seed=3, alpha=0.1)
    b = evaluate(lean, "CartPole-v1", n_episodes=40, seed=3, alpha=0.5)
    np.testing.assert_array_equal(a.returns, b.returns)
    assert b.alpha == 0.5
    assert b.cvar == pytest.approx(np.sort(b.returns)[:20].mean())
    assert a.cvar == pytest.approx(np.sort(a.returns)[:4].mean())
