"""Regression quality of a :class:`Prediction`: RMSE, Gaussian NLL, interval coverage, calibration."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from riskrl.bayes.prediction import Prediction

__all__ = ["CalibrationCurve", "calibration_curve", "gaussian_nll", "interval_coverage", "rmse"]


def _check(pred: Prediction, y: Tensor) -> Tensor:
    y = torch.as_tensor(y, dtype=pred.mean.dtype, device=pred.mean.device)
    if y.dim() == 1 and pred.mean.dim() == 2 and pred.mean.shape[1] == 1:
        y = y.unsqueeze(1)
    if y.shape != pred.mean.shape:
        raise ValueError(f"y must have the prediction's shape {tuple(pred.mean.shape)}, got {tuple(y.shape)}")
    return y


def _check_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must be in (0, 1), got {level}")
    return float(level)


def rmse(pred: Prediction, y: Tensor) -> float:
    """Root mean squared error of ``pred.mean``."""
    y = _check(pred, y)
    return float((pred.mean - y).square().mean().sqrt())


def gaussian_nll(pred: Prediction, y: Tensor, min_std: float = 1e-6) -> float:
    """Mean Gaussian negative log-likelihood of ``y`` under ``N(mean, total_std^2)`` per element."""
    y = _check(pred, y)
    std = pred.total_std.clamp_min(min_std)
    nll = 0.5 * math.log(2 * math.pi) + std.log() + 0.5 * ((y - pred.mean) / std).square()
    return float(nll.mean())


def _z(level: float) -> float:
    return math.sqrt(2.0) * torch.special.erfinv(torch.tensor(level, dtype=torch.float64)).item()


def interval_coverage(pred: Prediction, y: Tensor, level: float = 0.95) -> float:
    """Fraction of ``y`` inside the central ``level`` Gaussian interval ``mean ± z * total_std``."""
    y = _check(pred, y)
    z = _z(_check_level(level))
    return float(((y - pred.mean).abs() <= z * pred.total_std).to(torch.float64).mean())


@dataclass(frozen=True)
class CalibrationCurve:
    """Nominal central-interval levels vs the observed coverage (perfect calibration: equal)."""

    levels: list[float]
    observed: list[float]

    @property
    def max_abs_error(self) -> float:
        """Largest ``|observed - nominal|`` over the levels."""
        return max(abs(o - n) for o, n in zip(self.observed, self.levels))


def calibration_curve(
    pred: Prediction,
    y: Tensor,
    levels: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99),
) -> CalibrationCurve:
    """Observed coverage of the central intervals at each nominal level."""
    levels = [_check_level(v) for v in levels]
    return CalibrationCurve(levels, [interval_coverage(pred, y, v) for v in levels])
