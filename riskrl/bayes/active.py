"""Acting on a classifier's (or regressor's) uncertainty: which points to label next
(:func:`acquire`, active learning) and which predictions to send to an expert (:class:`ReviewRule`).

Every score is "higher = less sure" and comes from one batched pass over posterior samples:

- ``"bald"``: mutual information between label and weights (epistemic; Houlsby et al. 2011);
- ``"entropy"``: predictive entropy (total uncertainty);
- ``"confidence"``: ``1 - max_c p(c)`` (least confidence; the plain softmax baseline);
- ``"std"``: epistemic std, averaged over classes (or over outputs for a regressor);
- ``"random"`` (acquisition only): a seeded uniform choice, the baseline every criterion must beat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from riskrl.bayes.mlp import BayesMLP
from riskrl.bayes.prediction import ClassPrediction, Prediction

__all__ = ["ACQUISITION_CRITERIA", "SCORES", "ReviewRule", "acquire", "uncertainty_scores"]

SCORES = ("bald", "entropy", "confidence", "std")
ACQUISITION_CRITERIA = (*SCORES, "random")


def uncertainty_scores(pred: Prediction | ClassPrediction, criterion: str = "bald") -> Tensor:
    """Per-example uncertainty ``(B,)`` of a prediction under ``criterion`` (one of :data:`SCORES`).

    A regression :class:`Prediction` only has ``"std"`` (its epistemic std, mean over outputs)."""
    if criterion not in SCORES:
        raise ValueError(f"unknown criterion {criterion!r}; allowed values: {', '.join(SCORES)}")
    if isinstance(pred, ClassPrediction):
        if criterion == "bald":
            return pred.mutual_information
        if criterion == "entropy":
            return pred.total_entropy
        if criterion == "confidence":
            return 1.0 - pred.confidence
        return pred.epistemic_std.mean(-1)
    if isinstance(pred, Prediction):
        if criterion != "std":
            raise ValueError(f"criterion {criterion!r} needs a classifier; a regression model has only 'std'")
        return pred.epistemic_std.mean(-1)
    raise ValueError(f"expected a Prediction or ClassPrediction, got {type(pred).__name__}")


def _generator(seed: int | None, generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    if generator is not None:
        return generator
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def acquire(
    model: BayesMLP,
    pool: Any,
    n: int,
    criterion: str = "bald",
    *,
    n_samples: int = 32,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Indices ``(n,)`` of the ``n`` most informative points of ``pool`` (raw inputs), best first.

    All pool points are scored under the SAME ``n_samples`` posterior draws (``model.particles``; an
    ensemble uses its members), in one batched pass; ties go to the lower index. ``"random"`` draws
    ``n`` distinct indices uniformly. ``seed`` (or a ``generator`` on the model's device) makes the
    choice reproducible. Raises ``ValueError`` for an unknown criterion, an empty pool, ``n`` outside
    ``[1, len(pool)]`` or pool points of the wrong shape.
    """
    if criterion not in ACQUISITION_CRITERIA:
        raise ValueError(
            f"unknown criterion {criterion!r}; allowed values: {', '.join(ACQUISITION_CRITERIA)}"
        )
    if not isinstance(model, BayesMLP):
        raise ValueError(f"model must be a BayesMLP, got {type(model).__name__}")
    x = model._as_x(pool, "pool")
    size = x.shape[0]
    if size == 0:
        raise ValueError("cannot acquire from an empty pool")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= size:
        raise ValueError(f"n must be an int in [1, {size}] (the pool size), got {n!r}")
    g = _generator(seed, generator, x.device)
    if criterion == "random":
        return torch.randperm(size, generator=g, device=x.device)[:n]
    n_draws = model.exact_members or BayesMLP._check_n(n_samples, "n_samples")
    with torch.no_grad():
        particles = model.particles(n_draws, g)
        if model.likelihood == "categorical":
            pred: Prediction | ClassPrediction = particles.predict(x)
        else:
            pred = Prediction.from_particles(*particles.mean_and_std(x))
        scores = uncertainty_scores(pred, criterion)
    return torch.sort(scores, descending=True, stable=True).indices[:n]


@dataclass(frozen=True)
class ReviewRule:
    """Flag predictions for expert review when their uncertainty score exceeds ``threshold``.

    Build it with :meth:`fit` on held-out predictions for a target review rate; then
    ``rule.flag(pred)`` marks ``(B,)`` predictions (``True`` = send to review).
    """

    criterion: str
    threshold: float
    target_rate: float

    @classmethod
    def fit(
        cls, heldout: Prediction | ClassPrediction, target_rate: float = 0.1, criterion: str = "bald"
    ) -> ReviewRule:
        """The threshold that flags (at most) ``target_rate`` of the held-out predictions: the
        ``floor(target_rate * N)``-th largest held-out score (ties stay unflagged)."""
        if not (isinstance(target_rate, (int, float)) and 0.0 <= target_rate <= 1.0):
            raise ValueError(f"target_rate must be in [0, 1], got {target_rate!r}")
        scores = uncertainty_scores(heldout, criterion)
        if scores.numel() == 0:
            raise ValueError("cannot choose a review threshold on zero held-out predictions")
        k = math.floor(float(target_rate) * scores.numel() + 1e-9)
        if k >= scores.numel():
            return cls(criterion, -math.inf, float(target_rate))
        ranked = torch.sort(scores, descending=True).values
        return cls(criterion, float(ranked[k]), float(target_rate))

    def scores(self, pred: Prediction | ClassPrediction) -> Tensor:
        """The rule's uncertainty score per prediction ``(B,)``."""
        return uncertainty_scores(pred, self.criterion)

    def flag(self, pred: Prediction | ClassPrediction) -> Tensor:
        """``(B,)`` booleans: ``True`` where the score exceeds the threshold (send to review)."""
        return self.scores(pred) > self.threshold
