"""Stochastic layers: :class:`BayesLinear` (Bayes-by-backprop) and :class:`MCDropout`.

Weights are stored as ``(in, out)`` so that ``n`` posterior draws stack into ``(n, in, out)`` tensors
and one ``torch.baddbmm`` evaluates all of them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BayesLinear", "MCDropout"]

_PRIORS = ("gaussian", "mixture")


def _normal_log_prob(w: Tensor, sigma: float) -> Tensor:
    return -0.5 * (w / sigma).square() - math.log(sigma) - 0.5 * math.log(2 * math.pi)


class BayesLinear(nn.Module):
    """Linear layer with a factorised Gaussian posterior over weights (Blundell et al. 2015).

    ``sigma = softplus(rho)``. ``prior="gaussian"`` is ``N(0, prior_sigma^2)`` with a closed-form KL;
    ``prior="mixture"`` is ``pi N(0, sigma1^2) + (1 - pi) N(0, sigma2^2)`` with a one-sample Monte
    Carlo KL. In training mode ``forward`` uses the local reparameterisation trick (Kingma et al.
    2015); in eval mode it uses the posterior mean weights.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        prior: str = "gaussian",
        prior_sigma: float = 1.0,
        mixture_pi: float = 0.5,
        mixture_sigma1: float = 1.0,
        mixture_sigma2: float = math.exp(-6.0),
        posterior_rho_init: float = -5.0,
    ) -> None:
        super().__init__()
        if prior not in _PRIORS:
            raise ValueError(f"unknown prior {prior!r}; allowed values: {', '.join(_PRIORS)}")
        if in_features < 1 or out_features < 1:
            raise ValueError(f"in_features and out_features must be >= 1, got {in_features}, {out_features}")
        for name, v in (("prior_sigma", prior_sigma), ("mixture_sigma1", mixture_sigma1)):
            if not v > 0:
                raise ValueError(f"{name} must be > 0, got {v}")
        if not mixture_sigma2 > 0:
            raise ValueError(f"mixture_sigma2 must be > 0, got {mixture_sigma2}")
        if not 0.0 < mixture_pi < 1.0:
            raise ValueError(f"mixture_pi must be in (0, 1), got {mixture_pi}")
        self.in_features, self.out_features = in_features, out_features
        self.prior, self.prior_sigma = prior, float(prior_sigma)
        self.mixture_pi, self.mixture_sigma1, self.mixture_sigma2 = (
            float(mixture_pi),
            float(mixture_sigma1),
            float(mixture_sigma2),
        )
        self.posterior_rho_init = float(posterior_rho_init)
        self.weight_mu = nn.Parameter(torch.empty(in_features, out_features))
        self.weight_rho = nn.Parameter(torch.empty(in_features, out_features))
        if bias:
            self.bias_mu = nn.Parameter(torch.empty(out_features))
            self.bias_rho = nn.Parameter(torch.empty(out_features))
        else:
            self.register_parameter("bias_mu", None)
            self.register_parameter("bias_rho", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``-style init of the means, ``posterior_rho_init`` for every ``rho``."""
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight_mu, -bound, bound)
        nn.init.constant_(self.weight_rho, self.posterior_rho_init)
        if self.bias_mu is not None:
            nn.init.uniform_(self.bias_mu, -bound, bound)
            nn.init.constant_(self.bias_rho, self.posterior_rho_init)

    @property
    def weight_sigma(self) -> Tensor:
        """Posterior std of the weights, ``softplus(weight_rho)``."""
        return F.softplus(self.weight_rho)

    def _bias_mu(self) -> Tensor:
        return self.bias_mu if self.bias_mu is not None else self.weight_mu.new_zeros(self.out_features)

    def forward(self, x: Tensor) -> Tensor:
        """Training: one local-reparameterised sample per row of ``x``. Eval: posterior-mean weights."""
        if not self.training:
            return x @ self.weight_mu + self._bias_mu()
        return self.local_reparam(x)

    def local_reparam(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Sample pre-activations ``N(x mu + b, x^2 sigma^2 + s_b^2)`` independently per row."""
        mean = x @ self.weight_mu + self._bias_mu()
        var = x.square() @ self.weight_sigma.square()
        if self.bias_rho is not None:
            var = var + F.softplus(self.bias_rho).square()
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return torch.addcmul(mean, var.clamp_min(1e-30).sqrt(), eps)

    def sample_weights(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``n`` weight sets: ``(n, in, out)`` weights and ``(n, 1, out)`` biases (reparameterised)."""
        mu = self.weight_mu
        eps = torch.randn((n, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        w = torch.addcmul(mu, self.weight_sigma, eps)
        if self.bias_mu is None:
            return w, mu.new_zeros(n, 1, self.out_features)
        eps_b = torch.randn((n, 1, self.out_features), generator=generator, device=mu.device, dtype=mu.dtype)
        return w, torch.addcmul(self.bias_mu, F.softplus(self.bias_rho), eps_b)

    def _pairs(self) -> list[tuple[Tensor, Tensor]]:
        pairs = [(self.weight_mu, self.weight_rho)]
        if self.bias_mu is not None:
            pairs.append((self.bias_mu, self.bias_rho))
        return pairs

    def kl_divergence(self, generator: torch.Generator | None = None) -> Tensor:
        """``KL(q || p)`` summed over weights: closed form (Gaussian prior) or one MC sample (mixture,
        drawn with ``generator``)."""
        total = self.weight_mu.new_zeros(())
        for mu, rho in self._pairs():
            sigma = F.softplus(rho).clamp_min(1e-12)
            if self.prior == "gaussian":
                sp = self.prior_sigma
                kl = math.log(sp) - sigma.log() + (sigma.square() + mu.square()) / (2 * sp * sp) - 0.5
            else:
                eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
                w = mu + sigma * eps
                log_q = -0.5 * eps.square() - sigma.log() - 0.5 * math.log(2 * math.pi)
                log_p = torch.logaddexp(
                    math.log(self.mixture_pi) + _normal_log_prob(w, self.mixture_sigma1),
                    math.log1p(-self.mixture_pi) + _normal_log_prob(w, self.mixture_sigma2),
                )
                kl = log_q - log_p
            total = total + kl.sum()
        return total

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias_mu is not None}, prior={self.prior!r}"
        )


class MCDropout(nn.Module):
    """Dropout that stays on at prediction time (Gal & Ghahramani 2016)."""

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        """Drop units with probability ``p`` and rescale, in train and eval mode alike."""
        return F.dropout(x, self.p, training=True)

    def sample_masks(
        self, n: int, width: int, generator: torch.Generator | None = None, *, like: Tensor
    ) -> Tensor:
        """``n`` frozen masks ``(n, 1, width)`` scaled by ``1 / (1 - p)``."""
        keep = 1.0 - self.p
        u = torch.rand((n, 1, width), generator=generator, device=like.device, dtype=like.dtype)
        return (u < keep).to(like.dtype).mul_(1.0 / keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"
