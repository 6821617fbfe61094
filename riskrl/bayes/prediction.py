"""The two answers every model family gives: a :class:`Prediction` and frozen :class:`Particles`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LayerDraw", "Particles", "Prediction"]

# Soft bounds (in standardised target units) on a heteroscedastic head's log-variance.
MIN_LOGVAR = -14.0
MAX_LOGVAR = 6.0


def soft_clamp_logvar(raw: Tensor) -> Tensor:
    """Smoothly squash a raw log-variance into ``[MIN_LOGVAR, MAX_LOGVAR]`` (PETS-style)."""
    lv = MAX_LOGVAR - torch.nn.functional.softplus(MAX_LOGVAR - raw)
    return MIN_LOGVAR + torch.nn.functional.softplus(lv - MIN_LOGVAR)


@dataclass(frozen=True)
class Prediction:
    """Predictive summary, every field shaped ``(B, out)`` and in raw target units.

    ``epistemic_std`` is the spread of the mean across posterior samples, ``aleatoric_std`` the
    learned noise (``sqrt`` of the mean predicted variance; zeros for a model without noise model)
    and ``total_std = sqrt(epistemic_std**2 + aleatoric_std**2)`` (the mixture-of-Gaussians std).
    """

    mean: Tensor
    epistemic_std: Tensor
    aleatoric_std: Tensor
    total_std: Tensor

    @classmethod
    def from_particles(cls, means: Tensor, aleatoric_std: Tensor) -> Prediction:
        """Moment-match a mixture of ``n`` Gaussians given ``(n, B, out)`` means and stds."""
        mean = means.mean(0)
        # (x - mean)^2 by hand: torch.std/var over a leading dim is ~20x slower on CPU
        epi = (means - mean).square().mean(0).sqrt()
        alea = aleatoric_std.square().mean(0).sqrt()
        total = (epi.square() + alea.square()).sqrt()
        return cls(mean, epi, alea, total)


@dataclass(frozen=True)
class LayerDraw:
    """One layer of a frozen draw: ``h -> act((h * mask) @ weight + bias)``.

    ``weight`` is ``(in, out)`` (shared by all particles) or ``(n, in, out)``; ``bias`` is ``(out,)``
    or ``(n, 1, out)``; ``mask`` (optional) is ``(n, 1, in)``, already scaled by ``1 / (1 - p)``.
    """

    weight: Tensor
    bias: Tensor
    mask: Tensor | None = None


def run_layers(h: Tensor, layers: Sequence[LayerDraw], n: int, act: Callable[[Tensor], Tensor]) -> Tensor:
    """Batched forward through frozen layers; ``h`` is ``(B, d)`` or ``(n, B, d)``, returns ``(n, B, out)``."""
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        weight = layer.weight
        if layer.mask is not None:
            if h.shape[-2] > h.shape[-1]:
                # more rows than features: scale the weights' rows instead of the activations,
                # (h * m) @ W == h @ (m^T * W), which touches n*in*out numbers instead of n*B*in
                weight = layer.mask.transpose(1, 2) * weight
            else:
                h = h * layer.mask  # (B, w) * (n, 1, w) -> (n, B, w)
        if weight.dim() == 3:
            if h.dim() == 2:
                h = h.expand(n, *h.shape)
            h = torch.baddbmm(layer.bias, h, weight)
        else:
            # shared weights: n and B fold into one matmul
            h = torch.addmm(layer.bias, h.reshape(-1, h.shape[-1]), weight).reshape(*h.shape[:-1], -1)
        if i != last:
            # h is a fresh matmul output here, so relu can run in place (autograd-safe: relu's
            # backward needs only its result, the matmul's backward does not need its output)
            h = torch.relu_(h) if act is torch.relu else act(h)
    if h.dim() == 2:
        h = h.expand(n, *h.shape)
    return h


class Particles:
    """``n`` posterior draws frozen as one batched function (PETS' TS-inf).

    ``p(x)`` with ``x`` shaped ``(B, d)`` or ``(n, B, d)`` (raw units) returns means ``(n, B, out)``;
    ``p.mean_and_std(x)`` also returns the aleatoric std ``(n, B, out)``. The draw is the same on
    every call. Built with grad enabled, outputs are differentiable w.r.t. the model parameters.
    """

    def __init__(
        self,
        n: int,
        layers: Sequence[LayerDraw],
        *,
        in_dim: int,
        out_dim: int,
        activation: Callable[[Tensor], Tensor],
        x_mean: Tensor,
        x_std: Tensor,
        y_mean: Tensor,
        y_std: Tensor,
        heteroscedastic: bool,
        noise_std: Tensor | None = None,
        prior_layers: Sequence[LayerDraw] | None = None,
        prior_scale: float = 0.0,
    ) -> None:
        self.n = int(n)
        self.layers = tuple(layers)
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.activation = activation
        self.x_mean, self.x_std, self.y_mean, self.y_std = x_mean, x_std, y_mean, y_std
        self.heteroscedastic = heteroscedastic
        self.noise_std = noise_std  # (out,) or (n, 1, out) in standardised units, or None
        self.prior_layers = tuple(prior_layers) if prior_layers is not None and prior_scale != 0.0 else None
        self.prior_scale = float(prior_scale)

    def _check(self, x: Tensor) -> Tensor:
        ref = self.x_mean
        x = torch.as_tensor(x, dtype=ref.dtype, device=ref.device)
        if x.dim() == 2:
            ok = x.shape[1] == self.in_dim
        elif x.dim() == 3:
            ok = x.shape[0] == self.n and x.shape[2] == self.in_dim
        else:
            ok = False
        if not ok:
            raise ValueError(
                f"Particles expect x of shape (B, {self.in_dim}) or ({self.n}, B, {self.in_dim}), "
                f"got {tuple(x.shape)}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or infinite values")
        return x

    def raw(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Network output in standardised units: ``(mean, logvar or None)``, each ``(n, B, out)``."""
        x = self._check(x)
        h = (x - self.x_mean) / self.x_std
        out = run_layers(h, self.layers, self.n, self.activation)
        mean = out[..., : self.out_dim]
        if self.prior_layers is not None:
            mean = mean + self.prior_scale * run_layers(h, self.prior_layers, self.n, self.activation)
        logvar = soft_clamp_logvar(out[..., self.out_dim :]) if self.heteroscedastic else None
        return mean, logvar

    def mean_and_std(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-particle predictive mean and aleatoric std, both ``(n, B, out)`` in raw units."""
        mean, logvar = self.raw(x)
        if logvar is not None:
            std = (0.5 * logvar).exp() * self.y_std
        elif self.noise_std is not None:
            std = (self.noise_std * self.y_std).expand_as(mean)
        else:
            std = torch.zeros_like(mean)
        return mean * self.y_std + self.y_mean, std

    def __call__(self, x: Tensor) -> Tensor:
        """Per-particle means ``(n, B, out)`` in raw units."""
        mean, _ = self.raw(x)
        return mean * self.y_std + self.y_mean

    def __repr__(self) -> str:
        return f"Particles(n={self.n}, in_dim={self.in_dim}, out_dim={self.out_dim})"
