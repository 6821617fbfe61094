"""Stochastic layers: :class:`BayesLinear` and :class:`BayesConv2d` (Bayes-by-backprop) and
:class:`MCDropout`.

Linear weights are stored as ``(in, out)`` so that ``n`` posterior draws stack into ``(n, in, out)``
tensors and one ``torch.baddbmm`` evaluates all of them; ``n`` drawn conv kernels stack into one
grouped convolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BayesConv2d", "BayesLinear", "MCDropout", "PriorSpec", "check_conv_args"]

_PRIORS = ("gaussian", "mixture")


def _normal_log_prob(w: Tensor, sigma: float) -> Tensor:
    return -0.5 * (w / sigma).square() - math.log(sigma) - 0.5 * math.log(2 * math.pi)


def check_conv_args(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> None:
    """ValueError unless channels, kernel size and stride are ``>= 1`` and padding ``>= 0``."""
    if in_channels < 1 or out_channels < 1 or kernel_size < 1 or stride < 1 or padding < 0:
        raise ValueError(
            "need in_channels, out_channels, kernel_size, stride >= 1 and padding >= 0, got "
            f"{in_channels}, {out_channels}, {kernel_size}, {stride}, {padding}"
        )


@dataclass(frozen=True)
class PriorSpec:
    """Prior and posterior initialisation of a Bayes-by-backprop layer (validated on construction).

    ``prior="gaussian"``: ``N(0, prior_sigma^2)``; ``"mixture"``: ``mixture_pi N(0, mixture_sigma1^2)
    + (1 - mixture_pi) N(0, mixture_sigma2^2)``. Every ``rho`` starts at ``posterior_rho_init``
    (``sigma = softplus(rho)``). The field names are the layers' keyword arguments.
    """

    prior: str = "gaussian"
    prior_sigma: float = 1.0
    mixture_pi: float = 0.5
    mixture_sigma1: float = 1.0
    mixture_sigma2: float = math.exp(-6.0)
    posterior_rho_init: float = -5.0

    def __post_init__(self) -> None:
        if self.prior not in _PRIORS:
            raise ValueError(f"unknown prior {self.prior!r}; allowed values: {', '.join(_PRIORS)}")
        for name in ("prior_sigma", "mixture_sigma1", "mixture_sigma2"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.mixture_pi < 1.0:
            raise ValueError(f"mixture_pi must be in (0, 1), got {self.mixture_pi}")
        for name in ("prior_sigma", "mixture_pi", "mixture_sigma1", "mixture_sigma2", "posterior_rho_init"):
            object.__setattr__(self, name, float(getattr(self, name)))


class _BayesWeights(nn.Module):
    """Factorised Gaussian posterior ``N(mu, softplus(rho)^2)`` over a weight tensor and a bias,
    with its prior and ``KL(q || p)``: what :class:`BayesLinear` and :class:`BayesConv2d` share."""

    def __init__(
        self, weight_shape: tuple[int, ...], out_features: int, fan_in: int, bias: bool, spec: PriorSpec
    ) -> None:
        super().__init__()
        self.out_features, self._fan_in = out_features, fan_in
        self.prior, self.prior_sigma = spec.prior, spec.prior_sigma
        self.mixture_pi, self.mixture_sigma1, self.mixture_sigma2 = (
            spec.mixture_pi,
            spec.mixture_sigma1,
            spec.mixture_sigma2,
        )
        self.posterior_rho_init = spec.posterior_rho_init
        self.weight_mu = nn.Parameter(torch.empty(weight_shape))
        self.weight_rho = nn.Parameter(torch.empty(weight_shape))
        if bias:
            self.bias_mu = nn.Parameter(torch.empty(out_features))
            self.bias_rho = nn.Parameter(torch.empty(out_features))
        else:
            self.register_parameter("bias_mu", None)
            self.register_parameter("bias_rho", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``-style init of the means, ``posterior_rho_init`` for every ``rho``."""
        bound = 1.0 / math.sqrt(self._fan_in)
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

    def _bias_var(self) -> Tensor | None:
        return None if self.bias_rho is None else F.softplus(self.bias_rho).square()

    def _sample(self, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """``n`` reparameterised draws: weights ``(n, *weight_shape)`` and biases ``(n, out)``."""
        mu = self.weight_mu
        eps = torch.randn((n, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        w = torch.addcmul(mu, self.weight_sigma, eps)
        if self.bias_mu is None:
            return w, mu.new_zeros(n, self.out_features)
        eps_b = torch.randn((n, self.out_features), generator=generator, device=mu.device, dtype=mu.dtype)
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


class BayesLinear(_BayesWeights):
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
        if in_features < 1 or out_features < 1:
            raise ValueError(f"in_features and out_features must be >= 1, got {in_features}, {out_features}")
        super().__init__(
            (in_features, out_features),
            out_features,
            in_features,
            bias,
            PriorSpec(prior, prior_sigma, mixture_pi, mixture_sigma1, mixture_sigma2, posterior_rho_init),
        )
        self.in_features = in_features

    def forward(self, x: Tensor) -> Tensor:
        """Training: one local-reparameterised sample per row of ``x``. Eval: posterior-mean weights."""
        if not self.training:
            return x @ self.weight_mu + self._bias_mu()
        return self.local_reparam(x)

    def local_reparam(
        self, x: Tensor, generator: torch.Generator | None = None, n_samples: int | None = None
    ) -> Tensor:
        """Sample pre-activations ``N(x mu + b, x^2 sigma^2 + s_b^2)`` independently per row: one
        sample per row of ``x`` (``(..., out)``), or ``n_samples`` of each (``(n_samples, ..., out)``,
        the moments computed once)."""
        mean = x @ self.weight_mu + self._bias_mu()
        var = x.square() @ self.weight_sigma.square()
        bias_var = self._bias_var()
        if bias_var is not None:
            var = var + bias_var
        shape = mean.shape if n_samples is None else (n_samples, *mean.shape)
        eps = torch.randn(shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return torch.addcmul(mean, var.clamp_min(1e-30).sqrt(), eps)

    def sample_weights(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``n`` weight sets: ``(n, in, out)`` weights and ``(n, 1, out)`` biases (reparameterised)."""
        w, b = self._sample(n, generator)
        return w, b.unsqueeze(1)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias_mu is not None}, prior={self.prior!r}"
        )


class BayesConv2d(_BayesWeights):
    """2-d convolution with a factorised Gaussian posterior over its kernels (Bayes-by-backprop).

    Kernels are ``(out_channels, in_channels, k, k)`` as in ``torch.nn.Conv2d``; prior, KL and
    ``sigma = softplus(rho)`` as in :class:`BayesLinear`. Training mode samples every output
    activation by local reparameterisation (``conv(x, mu)`` and ``conv(x^2, sigma^2)`` give its mean
    and variance); eval mode convolves with the posterior-mean kernels. :meth:`sample_weights` draws
    ``n`` kernel sets at once, which a grouped convolution evaluates in one call.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        *,
        prior: str = "gaussian",
        prior_sigma: float = 1.0,
        mixture_pi: float = 0.5,
        mixture_sigma1: float = 1.0,
        mixture_sigma2: float = math.exp(-6.0),
        posterior_rho_init: float = -5.0,
    ) -> None:
        check_conv_args(in_channels, out_channels, kernel_size, stride, padding)
        super().__init__(
            (out_channels, in_channels, kernel_size, kernel_size),
            out_channels,
            in_channels * kernel_size * kernel_size,
            bias,
            PriorSpec(prior, prior_sigma, mixture_pi, mixture_sigma1, mixture_sigma2, posterior_rho_init),
        )
        self.in_channels, self.kernel_size = in_channels, kernel_size
        self.stride, self.padding = stride, padding

    @property
    def out_channels(self) -> int:
        """Number of output channels."""
        return self.out_features

    def _conv(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        return F.conv2d(x, w, b, self.stride, self.padding)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``(B, C, H, W)``. Training: local-reparameterised sample. Eval: posterior-mean kernels."""
        if not self.training:
            return self._conv(x, self.weight_mu, self.bias_mu)
        return self.local_reparam(x)

    def local_reparam(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Sample every output activation from ``N(conv(x, mu) + b, conv(x^2, sigma^2) + s_b^2)``."""
        mean = self._conv(x, self.weight_mu, self.bias_mu)
        var = self._conv(x.square(), self.weight_sigma.square(), self._bias_var())
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return torch.addcmul(mean, var.clamp_min(1e-30).sqrt(), eps)

    def sample_weights(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``n`` kernel sets: ``(n, out, in, k, k)`` kernels and ``(n, out)`` biases."""
        return self._sample(n, generator)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, bias={self.bias_mu is not None}, prior={self.prior!r}"
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
        self,
        n: int,
        width: int | tuple[int, ...],
        generator: torch.Generator | None = None,
        *,
        like: Tensor,
    ) -> Tensor:
        """``n`` frozen masks scaled by ``1 / (1 - p)``: ``(n, 1, width)`` for an int ``width`` (a
        linear layer's input), ``(n, *width)`` for a shape such as ``(C, H, W)`` (a conv layer's)."""
        keep = 1.0 - self.p
        shape = (n, 1, width) if isinstance(width, int) else (n, *width)
        u = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
        return (u < keep).to(like.dtype).mul_(1.0 / keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"
