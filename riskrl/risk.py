"""Risk criteria: one knob, ``risk_tolerance``, and tail measures over samples.

Sign convention used everywhere in riskrl::

    score = mean - risk_tolerance * std

* ``risk_tolerance > 0``: risk averse (pessimistic lower confidence bound; safe deployment),
* ``risk_tolerance == 0``: risk neutral (act on the posterior mean),
* ``risk_tolerance < 0``: optimistic (an upper confidence bound; an exploration bonus).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["cvar", "lcb", "validate_risk_tolerance"]


def validate_risk_tolerance(risk_tolerance: float) -> float:
    """Return ``risk_tolerance`` as a float, or raise ``ValueError`` if it is not a finite number."""
    if isinstance(risk_tolerance, bool):
        raise ValueError(f"risk_tolerance must be a finite number, got {risk_tolerance!r}")
    if isinstance(risk_tolerance, Tensor):
        if risk_tolerance.numel() != 1:
            raise ValueError(
                f"risk_tolerance must be a scalar, got a tensor of shape {tuple(risk_tolerance.shape)}"
            )
        risk_tolerance = risk_tolerance.item()
    try:
        value = float(risk_tolerance)
    except (TypeError, ValueError):
        raise ValueError(f"risk_tolerance must be a finite number, got {risk_tolerance!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"risk_tolerance must be finite, got {value}")
    return value


def lcb(mean: Tensor, std: Tensor, risk_tolerance: float, check_std: bool = True) -> Tensor:
    """Risk-adjusted score ``mean - risk_tolerance * std`` (elementwise, broadcasting).

    Positive ``risk_tolerance`` penalises uncertainty (a lower confidence bound), zero ignores it,
    negative rewards it (an upper confidence bound, i.e. optimism in the face of uncertainty).
    ``check_std=False`` skips the non-negativity check of ``std`` (a device-to-host sync), for hot
    paths whose std comes from the library itself.
    """
    k = validate_risk_tolerance(risk_tolerance)
    if check_std and bool((std < 0).any()):
        raise ValueError("std must be non-negative")
    if k == 0.0:
        return mean.clone()
    return mean - k * std


def cvar(samples: Tensor, alpha: float = 0.1, dim: int = -1) -> Tensor:
    """Conditional value at risk of the *lower* tail: the mean of the worst ``alpha`` fraction.

    For returns (higher is better) this is the expected return in the worst ``alpha`` share of
    outcomes. With ``n`` samples and ``alpha * n`` not an integer, the boundary sample gets the
    fractional weight, so the estimator is exact for the empirical distribution:
    ``CVaR = (sum of the floor(alpha n) smallest + frac * next smallest) / (alpha n)``.
    ``alpha = 1`` gives the mean; ``alpha -> 0`` approaches the minimum.

    Works batched: ``dim`` is reduced, every other dimension is kept.
    """
    if not isinstance(samples, Tensor):
        samples = torch.as_tensor(samples, dtype=torch.float64)
    if not (isinstance(alpha, (int, float)) and 0.0 < float(alpha) <= 1.0):
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    n = samples.shape[dim] if samples.dim() > 0 else 0
    if n == 0:
        raise ValueError("cvar needs at least one sample")
    if not torch.is_floating_point(samples):
        samples = samples.to(torch.get_default_dtype())
    if torch.isnan(samples).any():
        raise ValueError("cvar got NaN samples")
    sorted_samples = torch.sort(samples, dim=dim).values
    mass = float(alpha) * n
    # Weight of each sorted sample: 1 for the first floor(mass), the fraction for the next, 0 after.
    ranks = torch.arange(n, device=samples.device, dtype=sorted_samples.dtype)
    weights = (mass - ranks).clamp(0.0, 1.0)
    shape = [1] * sorted_samples.dim()
    shape[dim] = n
    weights = weights.reshape(shape)
    # Infinite samples with zero weight must not turn into NaN (0 * inf).
    contrib = torch.where(weights > 0, sorted_samples * weights, torch.zeros_like(sorted_samples))
    return contrib.sum(dim=dim) / mass
