"""Aleatoric vs epistemic behaviour, held-out calibration, calibration metrics and the band plot."""

from __future__ import annotations

import math

import pytest
import torch

from riskrl.bayes import BayesMLP, Prediction, calibration, calibration_curve, fit, interval_coverage

GRID = torch.linspace(0.5, 4.5, 9)[:, None]
TRUE_NOISE = 0.1 + 0.3 * GRID


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """y = 2 sin x + noise whose std grows with x (0.1 + 0.3 x), x in [0, 5]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 5
    return x, 2 * torch.sin(x) + (0.1 + 0.3 * x) * torch.randn(n, 1, generator=g)


def _trained(family: str, n: int) -> BayesMLP:
    torch.manual_seed(0)
    x, y = _data(n, 0)
    model = BayesMLP(1, 1, family=family, heteroscedastic=True)
    fit(model, x, y, epochs=max(20, 40000 // n), batch_size=64, lr=3e-3, seed=0)
    return model


@pytest.fixture(scope="module")
def models() -> dict[tuple[str, int], BayesMLP]:
    return {
        key: _trained(*key)
        for key in [("bbb", 200), ("bbb", 2000), ("ensemble", 200), ("ensemble", 2000), ("mc_dropout", 200)]
    }


def _pred(model: BayesMLP, x: torch.Tensor) -> Prediction:
    return model.predict(x, n_samples=64, generator=torch.Generator().manual_seed(0))


def test_heteroscedastic_head_tracks_growing_noise(models) -> None:
    for key in [("bbb", 2000), ("ensemble", 200)]:
        alea = _pred(models[key], GRID).aleatoric_std
        assert alea[-1] > 3 * alea[0]  # true ratio 5.8
        assert torch.all(alea[1:] > alea[:-1] - 0.05)  # increasing along x (up to jitter)
    # Within 20% of the true noise everywhere. The ensemble converges to it robustly; bbb at this
    # budget is less reliable (its mean fit lags, and the head absorbs the misfit: 10-28% by seed).
    alea = _pred(models[("ensemble", 2000)], GRID).aleatoric_std
    assert torch.allclose(alea, TRUE_NOISE, rtol=0.2)


def test_more_data_shrinks_epistemic_not_aleatoric(models) -> None:
    small, large = _pred(models[("bbb", 200)], GRID), _pred(models[("bbb", 2000)], GRID)
    assert large.epistemic_std.mean() < 0.7 * small.epistemic_std.mean()
    assert large.aleatoric_std.mean() > 0.75 * small.aleatoric_std.mean()
    # the aleatoric part converges to the true noise rather than to zero
    assert large.aleatoric_std.mean() == pytest.approx(TRUE_NOISE.mean().item(), rel=0.15)


@pytest.mark.parametrize("family", ["bbb", "ensemble", "mc_dropout"])
def test_95_percent_intervals_cover_held_out_points(models, family: str) -> None:
    x, y = _data(2000, 1)
    pred = _pred(models[(family, 200)], x)
    assert 0.90 <= interval_coverage(pred, y, 0.95) <= 0.99
    curve = calibration_curve(pred, y, levels=(0.5, 0.8, 0.95))
    # bbb with 200 points is on the conservative side (about 0.65 observed at the 0.5 level)
    assert curve.max_abs_error < 0.15


def _toy_prediction() -> tuple[Prediction, torch.Tensor]:
    mean = torch.zeros(4, 1)
    std = torch.ones(4, 1)
    pred = Prediction(mean, std, torch.zeros_like(std), std)
    return pred, torch.tensor([[0.5], [-1.0], [2.0], [-3.0]])


def test_metrics_on_known_values() -> None:
    pred, y = _toy_prediction()
    assert calibration.rmse(pred, y) == pytest.approx(math.sqrt((0.25 + 1 + 4 + 9) / 4))
    expected_nll = 0.5 * math.log(2 * math.pi) + 0.5 * (0.25 + 1 + 4 + 9) / 4
    assert calibration.gaussian_nll(pred, y) == pytest.approx(expected_nll)
    # |z| = 0.5, 1, 2, 3 against z_0.95 = 1.96 and z_0.5 = 0.674
    assert interval_coverage(pred, y, 0.95) == pytest.approx(0.5)
    assert interval_coverage(pred, y.squeeze(1), 0.5) == pytest.approx(0.25)
    curve = calibration_curve(pred, y, levels=(0.5, 0.99))
    assert curve.observed == pytest.approx([0.25, 0.75])
    with pytest.raises(ValueError, match="level"):
        interval_coverage(pred, y, 1.0)
    with pytest.raises(ValueError, match="shape"):
        calibration.rmse(pred, torch.zeros(3, 1))


def test_coverage_of_exact_gaussian_is_nominal() -> None:
    g = torch.Generator().manual_seed(0)
    y = 2.0 + 3.0 * torch.randn(50000, 1, generator=g)
    pred = Prediction(
        torch.full_like(y, 2.0), torch.zeros_like(y), torch.full_like(y, 3.0), torch.full_like(y, 3.0)
    )
    curve = calibration_curve(pred, y)
    assert curve.max_abs_error < 0.01


def test_plot_uncertainty(tmp_path, models) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from riskrl.plotting import plot_uncertainty

    x, y = _data(200, 0)
    fig = plot_uncertainty(models[("ensemble", 200)], (-1, 8), data=(x, y), path=tmp_path / "u.png")
    assert (tmp_path / "u.png").stat().st_size > 1000
    ax = fig.axes[0]
    assert len(ax.collections) == 3 and len(ax.lines) == 1  # two bands, data, mean
    with pytest.raises(ValueError, match="x_range"):
        plot_uncertainty(models[("ensemble", 200)], (3, 1))
