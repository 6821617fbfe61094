import math

import numpy as np
import pytest
import torch

from riskrl.risk import cvar, lcb, validate_risk_tolerance


@pytest.mark.parametrize("k", [-1.0, 0.0, 0.5, 2.0])
def test_lcb_formula(k: float) -> None:
    mean = torch.tensor([1.0, 2.0, 3.0])
    std = torch.tensor([0.5, 0.0, 2.0])
    torch.testing.assert_close(lcb(mean, std, k), mean - k * std)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "a", None, True])
def test_lcb_rejects_non_finite_tolerance(bad: object) -> None:
    with pytest.raises(ValueError, match="risk_tolerance"):
        lcb(torch.zeros(2), torch.ones(2), bad)  # type: ignore[arg-type]


def test_validate_risk_tolerance_accepts_numbers() -> None:
    assert validate_risk_tolerance(1) == 1.0
    assert validate_risk_tolerance(torch.tensor(-0.5)) == -0.5
    assert validate_risk_tolerance(np.float32(2.0)) == 2.0


def test_lcb_rejects_negative_std() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        lcb(torch.zeros(2), torch.tensor([1.0, -1.0]), 1.0)


def test_cvar_matches_numpy_on_integer_tail() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000)
    expected = np.sort(x)[:100].mean()
    assert cvar(torch.as_tensor(x), 0.1).item() == pytest.approx(expected, rel=1e-12)


def test_cvar_fractional_tail_and_limits() -> None:
    x = torch.tensor([4.0, 1.0, 3.0, 2.0], dtype=torch.float64)
    # alpha n = 1.5: (1 + 0.5 * 2) / 1.5
    assert cvar(x, 0.375).item() == pytest.approx(2.0 / 1.5)
    assert cvar(x, 1.0).item() == pytest.approx(2.5)
    assert cvar(x, 1e-9).item() == pytest.approx(1.0)
    assert cvar(torch.tensor([7.0]), 0.1).item() == 7.0


def test_cvar_batched_dim_and_inf() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 0.0, -float("inf"), 5.0]])
    out = cvar(x, 0.5, dim=1)
    assert out[0].item() == pytest.approx(1.5)
    assert out[1].item() == -math.inf
    col = cvar(x[:, :2], 0.5, dim=0)
    torch.testing.assert_close(col, torch.tensor([1.0, 0.0]))


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5, float("nan")])
def test_cvar_rejects_bad_alpha(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        cvar(torch.ones(3), alpha)


def test_cvar_rejects_empty_and_nan() -> None:
    with pytest.raises(ValueError, match="at least one"):
        cvar(torch.ones(0), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        cvar(torch.tensor([1.0, float("nan")]), 0.5)
