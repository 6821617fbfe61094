"""Predictive quality. Regression (:class:`Prediction`): RMSE, Gaussian NLL, interval coverage,
calibration curve. Classification (:class:`ClassPrediction`): accuracy, NLL, expected calibration
error and the reliability diagram. Out-of-distribution detection: :func:`auroc`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from riskrl.bayes.prediction import ClassPrediction, Prediction

__all__ = [
    "CalibrationCurve",
    "ReliabilityDiagram",
    "accuracy",
    "auroc",
    "calibration_curve",
    "categorical_nll",
    "expected_calibration_error",
    "gaussian_nll",
    "interval_coverage",
    "reliability_diagram",
    "rmse",
]


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


# ---------------------------------------------------------------------------------- classification
def _labels(pred: ClassPrediction, y: Tensor) -> Tensor:
    if not isinstance(pred, ClassPrediction):
        raise ValueError(f"expected a ClassPrediction, got {type(pred).__name__}")
    y = torch.as_tensor(y, device=pred.probs.device)
    if y.dim() != 1 or y.shape[0] != pred.probs.shape[0]:
        raise ValueError(f"labels must have shape ({pred.probs.shape[0]},), got {tuple(y.shape)}")
    if y.is_floating_point() and not bool((y == y.round()).all()):
        raise ValueError("labels must be whole numbers")
    y = y.long()
    n_classes = pred.probs.shape[1]
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(
            f"labels must be in [0, {n_classes}), got values in [{int(y.min())}, {int(y.max())}]"
        )
    return y


def accuracy(pred: ClassPrediction, y: Tensor) -> float:
    """Fraction of ``y`` equal to the most probable class."""
    y = _labels(pred, y)
    return float((pred.label == y).to(torch.float64).mean())


def categorical_nll(pred: ClassPrediction, y: Tensor, min_prob: float = 1e-12) -> float:
    """Mean ``-log p(y)`` under the posterior-mean class probabilities (nats)."""
    y = _labels(pred, y)
    p = pred.probs.gather(1, y[:, None])[:, 0].clamp_min(min_prob)
    return float(-p.to(torch.float64).log().mean())


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Confidence bins ``[edges[i], edges[i+1])``: mean confidence, accuracy and count per bin.

    Empty bins have ``nan`` confidence and accuracy. ``ece`` is the count-weighted mean
    ``|accuracy - confidence|`` (expected calibration error, Guo et al. 2017).
    """

    edges: list[float]
    confidence: list[float]
    accuracy: list[float]
    counts: list[int]
    ece: float


def reliability_diagram(pred: ClassPrediction, y: Tensor, n_bins: int = 15) -> ReliabilityDiagram:
    """Bin the predictions by confidence (max probability) into ``n_bins`` equal-width bins."""
    y = _labels(pred, y)
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
    conf = pred.confidence.to(torch.float64)
    correct = (pred.label == y).to(torch.float64)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=conf.device)
    idx = torch.bucketize(conf, edges[1:-1], right=True)  # bin i holds edges[i] <= c < edges[i+1]
    counts = torch.zeros(n_bins, dtype=torch.float64, device=conf.device).index_add_(
        0, idx, torch.ones_like(conf)
    )
    conf_sum = torch.zeros_like(counts).index_add_(0, idx, conf)
    acc_sum = torch.zeros_like(counts).index_add_(0, idx, correct)
    safe = counts.clamp_min(1.0)
    mean_conf = torch.where(counts > 0, conf_sum / safe, torch.nan)
    mean_acc = torch.where(counts > 0, acc_sum / safe, torch.nan)
    total = max(int(counts.sum()), 1)
    ece = float(((acc_sum - conf_sum).abs()).sum() / total)
    return ReliabilityDiagram(
        edges.tolist(), mean_conf.tolist(), mean_acc.tolist(), [int(c) for c in counts.tolist()], ece
    )


def expected_calibration_error(pred: ClassPrediction, y: Tensor, n_bins: int = 15) -> float:
    """Count-weighted mean ``|accuracy - confidence|`` over ``n_bins`` confidence bins."""
    return reliability_diagram(pred, y, n_bins).ece


def auroc(negative: Tensor, positive: Tensor) -> float:
    """Area under the ROC curve for telling ``positive`` scores (e.g. out-of-distribution inputs) from
    ``negative`` ones by thresholding: ``P(score_pos > score_neg) + P(equal) / 2`` (Mann-Whitney),
    computed with one sort and a binary search (no loop over pairs). 0.5 is chance, 1 perfect."""
    neg = torch.as_tensor(negative).detach().to(torch.float64).flatten()
    pos = torch.as_tensor(positive).detach().to(torch.float64).flatten().to(neg.device)
    if neg.numel() == 0 or pos.numel() == 0:
        raise ValueError("auroc needs at least one negative and one positive score")
    if not (bool(torch.isfinite(neg).all()) and bool(torch.isfinite(pos).all())):
        raise ValueError("auroc scores contain NaN or infinite values")
    neg_sorted = torch.sort(neg).values
    below = torch.searchsorted(neg_sorted, pos, right=False).to(torch.float64)
    ties = torch.searchsorted(neg_sorted, pos, right=True).to(torch.float64) - below
    return float((below + 0.5 * ties).sum() / (neg.numel() * pos.numel()))
