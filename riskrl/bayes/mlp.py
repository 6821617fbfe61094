"""``BayesMLP``: one network class, three posterior families, two likelihoods (Gaussian regression,
categorical classification), an optional convolutional trunk, one uncertainty interface."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from riskrl.bayes.ensemble import EnsembleConv2d, EnsembleLinear
from riskrl.bayes.layers import BayesConv2d, BayesLinear, MCDropout
from riskrl.bayes.prediction import (
    ClassPrediction,
    LayerDraw,
    Particles,
    Prediction,
    all_finite,
    flatten_features,
    soft_clamp_logvar,
)

__all__ = ["ACTIVATIONS", "FAMILIES", "LIKELIHOODS", "BayesMLP", "Standardizer"]

FAMILIES = ("bbb", "mc_dropout", "ensemble")
LIKELIHOODS = ("gaussian", "categorical")
_CONV_TYPES = (BayesConv2d, nn.Conv2d, EnsembleConv2d)


def _ln_relu(h: Tensor) -> Tensor:
    return torch.relu(F.layer_norm(h, h.shape[-1:]))


def _ln_silu(h: Tensor) -> Tensor:
    return F.silu(F.layer_norm(h, h.shape[-1:]))


# ``ln_*``: layer normalisation over the hidden units (no learnt scale/shift) before the
# nonlinearity. It keeps hidden features bounded, which stabilises TD learning (Gallici et al. 2024,
# "Simplifying Deep Temporal Difference Learning").
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "elu": F.elu,
    "silu": F.silu,
    "gelu": F.gelu,
    "leaky_relu": F.leaky_relu,
    "ln_relu": _ln_relu,
    "ln_silu": _ln_silu,
}
_LOG_2PI = math.log(2 * math.pi)


def as_numeric_tensor(v: Any, name: str) -> Tensor:
    """``v`` as a tensor, or a ValueError naming ``name`` when it is not a numeric array."""
    if not isinstance(v, Tensor):
        try:
            v = np.asarray(v)
        except (TypeError, ValueError) as err:  # ragged nested lists and the like
            raise ValueError(f"{name} must be a numeric array ({err})") from None
        if v.dtype.kind not in "fiu":
            raise ValueError(f"{name} must be numeric, got dtype {v.dtype}")
        v = torch.from_numpy(np.ascontiguousarray(v))
    if not (
        v.is_floating_point() or v.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
    ):
        raise ValueError(f"{name} must be numeric, got dtype {v.dtype}")
    return v


class Standardizer(nn.Module):
    """Per-feature ``(v - mean) / std`` stored as buffers (so it travels with ``state_dict``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, data: Tensor) -> Standardizer:
        """Set mean/std from ``data`` (N, dim); computed in float64, std floored for constant features."""
        d = data.detach().to(torch.float64)
        mean = d.mean(0)
        std = d.std(0, correction=0) if d.shape[0] > 1 else torch.zeros_like(mean)
        std = torch.maximum(std, 1e-6 * (1.0 + mean.abs()))
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(std.to(self.std.dtype))
        return self

    def transform(self, v: Tensor) -> Tensor:
        """Raw -> standardised units."""
        return (v - self.mean) / self.std

    def inverse(self, v: Tensor) -> Tensor:
        """Standardised -> raw units."""
        return v * self.std + self.mean


class BayesMLP(nn.Module):
    """A Bayesian MLP ``R^in_dim -> R^out_dim`` from one of three posterior families: a regressor
    (``likelihood="gaussian"``) or a classifier over ``out_dim`` classes (``"categorical"``).

    Args:
        in_dim, out_dim: input and output sizes.
        hidden: hidden layer widths.
        family: ``"bbb"`` (Bayes-by-backprop), ``"mc_dropout"`` or ``"ensemble"``.
        heteroscedastic: add a Gaussian log-variance head (input-dependent aleatoric noise).
        activation: one of :data:`ACTIVATIONS`.
        learn_noise: for homoscedastic models, learn one noise std per output (trained by Gaussian
            NLL, reported as ``aleatoric_std``); this is what makes the intervals calibrated on noisy
            data. ``False``: plain MSE and zero aleatoric std (e.g. for Q-networks).
        n_members, prior_scale: ensemble size and randomized-prior scale (``0`` = no prior net).
        dropout, length_scale: MC-dropout rate and Gal's prior length-scale (sets the weight decay).
        prior, prior_sigma, mixture_pi, mixture_sigma1, mixture_sigma2, posterior_rho_init: bbb prior
            (``"gaussian"`` or ``"mixture"``) and posterior init (``sigma = softplus(rho)``).
        likelihood: ``"gaussian"`` (regression, the default) or ``"categorical"``: the network outputs
            ``out_dim`` logits, targets are integer labels in ``[0, out_dim)``, training minimises
            cross-entropy + the family's KL / N, and :meth:`predict` returns a
            :class:`~riskrl.bayes.prediction.ClassPrediction` (mean probabilities, predictive entropy,
            expected entropy, mutual information). ``heteroscedastic`` and ``learn_noise`` do not apply.
        image_shape: ``(C, H, W)`` with ``C * H * W == in_dim``: inputs may then also be given as images
            ``(B, C, H, W)`` (they are flattened; standardisation stays per pixel).
        conv_channels, conv_kernel, conv_stride: a convolutional trunk before the hidden layers (needs
            ``image_shape``): one ``conv_kernel x conv_kernel`` convolution per entry of
            ``conv_channels`` with padding ``conv_kernel // 2`` and the given stride(s), each followed
            by the activation; its output is flattened into the MLP. Layers follow the family:
            :class:`~riskrl.bayes.layers.BayesConv2d` (bbb), ``nn.Conv2d`` with element-wise dropout
            on its input (mc_dropout, all but the first layer), one grouped convolution for all
            ensemble members (:class:`~riskrl.bayes.ensemble.EnsembleConv2d`).

    Inputs and regression targets are standardised internally by buffers (``x_scaler``/``y_scaler``,
    set by :func:`riskrl.bayes.fit` or :meth:`fit_standardizers`): every public method takes raw ``x``
    and returns raw-scale ``y``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (64, 64),
        family: str = "bbb",
        heteroscedastic: bool = False,
        activation: str = "relu",
        *,
        learn_noise: bool = True,
        n_members: int = 5,
        prior_scale: float = 0.0,
        dropout: float = 0.1,
        length_scale: float = 1.0,
        prior: str = "gaussian",
        prior_sigma: float = 1.0,
        mixture_pi: float = 0.5,
        mixture_sigma1: float = 1.0,
        mixture_sigma2: float = math.exp(-6.0),
        posterior_rho_init: float = -5.0,
        likelihood: str = "gaussian",
        image_shape: Sequence[int] | None = None,
        conv_channels: Sequence[int] = (),
        conv_kernel: int = 3,
        conv_stride: int | Sequence[int] = 1,
    ) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; allowed values: {', '.join(LIKELIHOODS)}")
        categorical = likelihood == "categorical"
        if categorical and heteroscedastic:
            raise ValueError("heteroscedastic=True is for the gaussian likelihood, not 'categorical'")
        if categorical and out_dim < 2:
            raise ValueError(f"a categorical model needs out_dim >= 2 classes, got {out_dim}")
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; allowed values: {', '.join(FAMILIES)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed values: {', '.join(ACTIVATIONS)}")
        hidden = tuple(int(h) for h in hidden)
        if in_dim < 1 or out_dim < 1 or any(h < 1 for h in hidden):
            raise ValueError(
                f"in_dim, out_dim and hidden widths must be >= 1, got {in_dim}, {out_dim}, {hidden}"
            )
        if family == "ensemble" and n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        if not math.isfinite(prior_scale):
            raise ValueError(f"prior_scale must be finite, got {prior_scale}")
        if length_scale <= 0:
            raise ValueError(f"length_scale must be > 0, got {length_scale}")
        img, conv_channels, strides = self._check_conv(
            in_dim, image_shape, conv_channels, conv_kernel, conv_stride, activation
        )
        self.in_dim, self.out_dim, self.hidden = int(in_dim), int(out_dim), hidden
        self.family, self.heteroscedastic, self.activation_name = family, bool(heteroscedastic), activation
        self.learn_noise = bool(learn_noise) and not categorical
        self.likelihood, self.image_shape, self.conv_channels = likelihood, img, conv_channels
        self.n_members = int(n_members) if family == "ensemble" else 1
        self.prior_scale, self.dropout, self.length_scale = (
            float(prior_scale),
            float(dropout),
            float(length_scale),
        )
        self._config: dict[str, Any] = {
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "hidden": list(hidden),
            "family": family,
            "heteroscedastic": self.heteroscedastic,
            "activation": activation,
            "learn_noise": self.learn_noise,
            "n_members": int(n_members),
            "prior_scale": self.prior_scale,
            "dropout": self.dropout,
            "length_scale": self.length_scale,
            "prior": prior,
            "prior_sigma": float(prior_sigma),
            "mixture_pi": float(mixture_pi),
            "mixture_sigma1": float(mixture_sigma1),
            "mixture_sigma2": float(mixture_sigma2),
            "posterior_rho_init": float(posterior_rho_init),
            "likelihood": likelihood,
            "image_shape": None if img is None else list(img),
            "conv_channels": list(conv_channels),
            "conv_kernel": int(conv_kernel),
            "conv_stride": list(strides),
        }
        self.act = ACTIVATIONS[activation]
        head = out_dim * (2 if heteroscedastic else 1)
        # conv trunk: (in_channels, out_channels, stride) per layer and each layer's input shape
        convs: list[tuple[int, int, int]] = []
        self._in_shapes: list[tuple[int, ...]] = []
        flat = in_dim
        if conv_channels:
            assert img is not None
            c, hh, ww = img
            pad = conv_kernel // 2
            for out_c, st in zip(conv_channels, strides):
                convs.append((c, out_c, st))
                self._in_shapes.append((c, hh, ww))
                # padding k // 2 keeps at least one output pixel for any stride
                hh, ww = (hh + 2 * pad - conv_kernel) // st + 1, (ww + 2 * pad - conv_kernel) // st + 1
                c = out_c
            flat = c * hh * ww
        dims = [flat, *hidden, head]
        pairs = list(itertools.pairwise(dims))
        self._in_shapes += [(i,) for i, _ in pairs]
        self._conv_geom = [(st, conv_kernel // 2) for _, _, st in convs]
        self.x_scaler = Standardizer(in_dim)
        self.y_scaler = Standardizer(out_dim)
        self.layers: nn.ModuleList
        self.prior_layers: nn.ModuleList | None = None
        self.dropouts: nn.ModuleList | None = None
        if family == "bbb":
            bbb_kw = {
                "prior": prior,
                "prior_sigma": prior_sigma,
                "mixture_pi": mixture_pi,
                "mixture_sigma1": mixture_sigma1,
                "mixture_sigma2": mixture_sigma2,
                "posterior_rho_init": posterior_rho_init,
            }
            self.layers = nn.ModuleList(
                [BayesConv2d(i, o, conv_kernel, st, conv_kernel // 2, **bbb_kw) for i, o, st in convs]
                + [BayesLinear(i, o, **bbb_kw) for i, o in pairs]
            )
        elif family == "mc_dropout":
            self.layers = nn.ModuleList(
                [nn.Conv2d(i, o, conv_kernel, st, conv_kernel // 2) for i, o, st in convs]
                + [nn.Linear(i, o) for i, o in pairs]
            )
            # dropout on the input of every layer but the first (i.e. after each hidden activation)
            self.dropouts = nn.ModuleList(MCDropout(dropout) for _ in range(len(self.layers) - 1))
        else:

            def ensemble_layers(out: int, trainable: bool) -> list[nn.Module]:
                k = n_members
                return [
                    EnsembleConv2d(k, i, o, conv_kernel, st, conv_kernel // 2, trainable=trainable)
                    for i, o, st in convs
                ] + [
                    EnsembleLinear(k, i, o, trainable=trainable)
                    for i, o in itertools.pairwise([flat, *hidden, out])
                ]

            self.layers = nn.ModuleList(ensemble_layers(head, True))
            if self.prior_scale != 0.0:
                self.prior_layers = nn.ModuleList(ensemble_layers(out_dim, False))
        if not self.heteroscedastic and self.learn_noise:
            shape = (self.n_members, 1, out_dim) if family == "ensemble" else (out_dim,)
            self.log_noise_std = nn.Parameter(torch.full(shape, math.log(0.5)))
        else:
            self.register_parameter("log_noise_std", None)
        sizes = [(i, o) for i, o in pairs]
        self._sum_out = sum(o for _, o in sizes)
        self._sum_inout = sum(i * o for i, o in sizes)

    @staticmethod
    def _check_conv(
        in_dim: int,
        image_shape: Sequence[int] | None,
        conv_channels: Sequence[int],
        conv_kernel: int,
        conv_stride: int | Sequence[int],
        activation: str,
    ) -> tuple[tuple[int, int, int] | None, tuple[int, ...], tuple[int, ...]]:
        img = None
        if image_shape is not None:
            img = tuple(int(v) for v in image_shape)
            if len(img) != 3 or min(img) < 1 or math.prod(img) != in_dim:
                raise ValueError(
                    f"image_shape must be (C, H, W) with C * H * W == in_dim = {in_dim}, got {tuple(image_shape)}"
                )
        channels = tuple(int(c) for c in conv_channels)
        n_conv = len(channels)
        strides = (
            (conv_stride,) * n_conv if isinstance(conv_stride, int) else tuple(int(v) for v in conv_stride)
        )
        if n_conv:
            if img is None:
                raise ValueError("conv_channels needs image_shape=(C, H, W)")
            if min(channels) < 1 or conv_kernel < 1 or len(strides) != n_conv or min(strides) < 1:
                raise ValueError(
                    "need conv_channels >= 1, conv_kernel >= 1 and one conv_stride >= 1 per conv layer, got "
                    f"{channels}, {conv_kernel}, {conv_stride}"
                )
            if activation.startswith("ln_"):
                raise ValueError(
                    f"activation {activation!r} normalises a feature vector; not for conv layers"
                )
        return img, channels, strides

    # ------------------------------------------------------------------ helpers
    @property
    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments: ``BayesMLP(**model.config)`` rebuilds the architecture."""
        return dict(self._config)

    def _ref(self) -> Tensor:
        return self.x_scaler.mean

    def _as_x(self, x: Any, name: str = "x") -> Tensor:
        ref = self._ref()
        x = as_numeric_tensor(x, name).to(dtype=ref.dtype, device=ref.device)
        img = self.image_shape
        if img is not None and x.dim() == 4 and tuple(x.shape[1:]) == img:
            x = x.flatten(1)
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            also = "" if img is None else f" or (B, {', '.join(map(str, img))})"
            raise ValueError(f"{name} must have shape (B, {self.in_dim}){also}, got {tuple(x.shape)}")
        if not all_finite(x):
            raise ValueError(f"{name} contains NaN or infinite values")
        return x

    def _as_y(self, y: Any, batch: int) -> Tensor:
        if self.likelihood == "categorical":
            return self._as_labels(y, batch)
        ref = self._ref()
        y = as_numeric_tensor(y, "y").to(dtype=ref.dtype, device=ref.device)
        if y.dim() == 1 and self.out_dim == 1:
            y = y.unsqueeze(1)
        if y.dim() != 2 or y.shape != (batch, self.out_dim):
            raise ValueError(f"y must have shape ({batch}, {self.out_dim}), got {tuple(y.shape)}")
        if not all_finite(y):
            raise ValueError("y contains NaN or infinite values")
        return y

    def _as_labels(self, y: Any, batch: int) -> Tensor:
        """Class labels as ``(B,)`` int64 in ``[0, out_dim)``; ``(B, 1)`` and whole-number floats are accepted."""
        y = as_numeric_tensor(y, "y")
        if y.dim() == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.dim() != 1 or y.shape[0] != batch:
            raise ValueError(f"class labels y must have shape ({batch},), got {tuple(y.shape)}")
        if y.is_floating_point():
            if not bool(torch.isfinite(y).all()) or not bool((y == y.round()).all()):
                raise ValueError("class labels y must be whole numbers")
        y = y.to(device=self._ref().device, dtype=torch.int64)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.out_dim):
            raise ValueError(
                f"class labels must be in [0, {self.out_dim}), got values in [{int(y.min())}, {int(y.max())}]"
            )
        return y

    @staticmethod
    def _check_n(n: int, name: str) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be an int >= 1, got {n!r}")
        return n

    @torch.no_grad()
    def fit_standardizers(self, x: Any, y: Any) -> None:
        """Set the input/target standardisation from training data (raw units). A classifier's labels
        are only validated (its outputs are logits, never standardised)."""
        x = self._as_x(x)
        y = self._as_y(y, x.shape[0])
        self.x_scaler.fit(x)
        if self.likelihood == "gaussian":
            self.y_scaler.fit(y)

    def _noise_for(self, n: int) -> Tensor | None:
        if self.log_noise_std is None:
            return None
        s = self.log_noise_std.exp()
        if self.family == "ensemble" and n != self.n_members:
            s = s.index_select(0, torch.arange(n, device=s.device) % self.n_members)
        return s

    # ------------------------------------------------------------------ particles
    def particles(self, n: int, generator: torch.Generator | None = None) -> Particles:
        """``n`` posterior draws frozen as one batched callable (see :class:`Particles`).

        bbb: weights sampled once as ``(n, in, out)``; mc_dropout: one ``(n, 1, width)`` mask per layer;
        ensemble: particle ``i`` is member ``i % n_members``.
        """
        n = self._check_n(n, "n")
        draws: list[LayerDraw] = []
        prior_draws: list[LayerDraw] | None = None
        if self.family == "bbb":
            for i, layer in enumerate(self.layers):
                w, b = layer.sample_weights(n, generator)
                draws.append(LayerDraw(w, b, None, self._geom(i)))
        elif self.family == "mc_dropout":
            assert self.dropouts is not None
            for i, layer in enumerate(self.layers):
                mask = None
                if i > 0:
                    shape = self._in_shapes[i]
                    width = shape[0] if len(shape) == 1 else shape
                    mask = self.dropouts[i - 1].sample_masks(n, width, generator, like=layer.weight)
                weight = layer.weight if self._geom(i) is not None else layer.weight.t()
                draws.append(LayerDraw(weight, layer.bias, mask, self._geom(i)))
        else:
            draws = [LayerDraw(*layer.select(n), None, self._geom(i)) for i, layer in enumerate(self.layers)]
            if self.prior_layers is not None:
                prior_draws = [
                    LayerDraw(*layer.select(n), None, self._geom(i))
                    for i, layer in enumerate(self.prior_layers)
                ]
        return self._make_particles(n, draws, prior_draws)

    def _geom(self, i: int) -> tuple[int, int] | None:
        """``(stride, padding)`` of layer ``i`` if it is a convolution, else ``None``."""
        return self._conv_geom[i] if i < len(self._conv_geom) else None

    def _make_particles(
        self, n: int, draws: list[LayerDraw], prior_draws: list[LayerDraw] | None = None
    ) -> Particles:
        return Particles(
            n,
            draws,
            in_dim=self.in_dim,
            out_dim=self.out_dim,
            activation=self.act,
            x_mean=self.x_scaler.mean,
            x_std=self.x_scaler.std,
            y_mean=self.y_scaler.mean,
            y_std=self.y_scaler.std,
            heteroscedastic=self.heteroscedastic,
            noise_std=self._noise_for(n),
            prior_layers=prior_draws,
            prior_scale=self.prior_scale,
            image_shape=self.image_shape,
            likelihood=self.likelihood,
        )

    # ------------------------------------------------------------------ prediction
    def predict(
        self, x: Tensor, n_samples: int = 32, generator: torch.Generator | None = None
    ) -> Prediction | ClassPrediction:
        """Predictive mean and epistemic / aleatoric / total std, each ``(B, out)`` in raw units; for a
        classifier the :class:`ClassPrediction` (mean class probabilities and the entropy decomposition).

        Runs under ``no_grad`` with posterior sampling on. ``ensemble`` always uses every member once
        (the exact ensemble mixture; ``n_samples`` is only validated). ``bbb`` with a batch much
        smaller than the layer widths samples pre-activations per input (local reparameterisation:
        the same per-input predictive distribution as sampling weights, far fewer random numbers);
        otherwise it is exactly ``particles(n_samples, generator)`` summarised.
        """
        n = self._check_n(n_samples, "n_samples")
        with torch.no_grad():
            x = self._as_x(x)
            if self.family == "ensemble":
                n = self.n_members
            elif (
                self.family == "bbb"
                and not self.conv_channels
                and x.shape[0] * self._sum_out * 4 < self._sum_inout
            ):
                return self._predict_local(x, n, generator)
            particles = self.particles(n, generator)
            if self.likelihood == "categorical":
                return particles._predict_validated(x)
            means, alea = particles.mean_and_std(x)
            return Prediction.from_particles(means, alea)

    def _predict_local(
        self, x: Tensor, n: int, generator: torch.Generator | None
    ) -> Prediction | ClassPrediction:
        h = self.x_scaler.transform(x)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i == 0:  # one deterministic moment computation, then n samples of the pre-activation
                mean = h @ layer.weight_mu + layer._bias_mu()
                var = h.square() @ layer.weight_sigma.square() + F.softplus(layer.bias_rho).square()
                eps = torch.randn((n, *mean.shape), generator=generator, device=h.device, dtype=h.dtype)
                h = torch.addcmul(mean, var.sqrt(), eps)
            else:
                h = layer.local_reparam(h, generator)
            if i != last:
                h = self.act(h)
        return self._summarise(h, n)

    def _summarise(self, out: Tensor, n: int) -> Prediction | ClassPrediction:
        if self.likelihood == "categorical":
            return ClassPrediction.from_logits(out)
        mean = out[..., : self.out_dim]
        if self.heteroscedastic:
            alea = (0.5 * soft_clamp_logvar(out[..., self.out_dim :])).exp() * self.y_scaler.std
        else:
            noise = self._noise_for(n)
            alea = torch.zeros_like(mean) if noise is None else (noise * self.y_scaler.std).expand_as(mean)
        return Prediction.from_particles(self.y_scaler.inverse(mean), alea)

    def forward(self, x: Tensor) -> Tensor:
        """Differentiable point prediction ``(B, out)`` in raw units: posterior-mean weights (bbb),
        dropout off (mc_dropout) or the member average (ensemble). A classifier returns logits."""
        x = self._as_x(x)
        if self.family == "ensemble":
            return self.particles(self.n_members)(x).mean(0)
        draws = []
        for i, layer in enumerate(self.layers):
            conv = self._geom(i)
            if self.family == "bbb":
                draws.append(LayerDraw(layer.weight_mu, layer._bias_mu(), None, conv))
            else:
                draws.append(LayerDraw(layer.weight if conv else layer.weight.t(), layer.bias, None, conv))
        return self._make_particles(1, draws)(x)[0]

    # ------------------------------------------------------------------ training
    def kl_divergence(self, generator: torch.Generator | None = None) -> Tensor:
        """Scalar KL(q || prior). bbb: summed over layers (a mixture prior's MC sample uses
        ``generator``); mc_dropout: Gal's approximation ``sum l^2 (1 - p) / 2 ||W||^2 + l^2 / 2 ||b||^2``;
        ensemble: 0."""
        ref = self._ref()
        if self.family == "bbb":
            return sum((layer.kl_divergence(generator) for layer in self.layers), ref.new_zeros(()))
        if self.family == "mc_dropout":
            l2 = self.length_scale**2
            total = ref.new_zeros(())
            for i, layer in enumerate(self.layers):
                keep = 1.0 - self.dropout if i > 0 else 1.0
                total = total + 0.5 * l2 * (keep * layer.weight.square().sum() + layer.bias.square().sum())
            return total
        return ref.new_zeros(())

    def _train_forward(
        self, h: Tensor, generator: torch.Generator | None = None, layers: nn.ModuleList | None = None
    ) -> Tensor:
        """Training pass of standardised ``h`` ``(B, in_dim)``: one sample per example (bbb: local
        reparameterisation; mc_dropout: fresh masks) or every member (ensemble, ``(K, B, out)``).
        ``layers`` defaults to the trained layers (the randomized prior net passes its own)."""
        if layers is None:
            layers = self.layers
        last = len(layers) - 1
        z = h.unflatten(-1, self.image_shape) if self.conv_channels else h
        keep = 1.0 - self.dropout if self.family == "mc_dropout" and layers is self.layers else 1.0
        for i, layer in enumerate(layers):
            if not isinstance(layer, _CONV_TYPES):
                z = flatten_features(z)
            if i > 0 and keep < 1.0:
                mask = torch.rand(z.shape, generator=generator, device=z.device, dtype=z.dtype) < keep
                z = z * mask / keep  # inverted dropout with the caller's generator
            z = layer.local_reparam(z, generator) if self.family == "bbb" else layer(z)
            if i != last:
                z = self.act(z)
        return z

    def loss(
        self,
        x: Tensor,
        y: Tensor,
        n_data: int,
        member_weights: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Per-batch training loss (raw ``x``, ``y``): mean Gaussian NLL in standardised units (MSE when
        the model has no noise model; cross-entropy for a classifier, ``y`` the integer labels) +
        ``kl_divergence() / n_data``, ``n_data`` the DATASET size.

        bbb uses one local-reparameterised forward; mc_dropout one dropout forward; ensemble sums the
        members' losses (all members see the same batch; optional ``member_weights`` of shape
        ``(n_members, B)``, e.g. bootstrap counts, weight each member's per-example losses). All
        sampling (weights, dropout masks, the mixture KL) uses ``generator`` (on the model's device),
        so training is reproducible without touching torch's global RNG.
        """
        n_data = self._check_n(int(n_data) if not isinstance(n_data, bool) else n_data, "n_data")
        x = self._as_x(x)
        y = self._as_y(y, x.shape[0])
        h = self.x_scaler.transform(x)
        out = self._train_forward(h, generator)
        mean = out[..., : self.out_dim]
        if self.prior_layers is not None:
            mean = mean + self.prior_scale * self._train_forward(h, None, self.prior_layers)
        if self.likelihood == "categorical":
            per_example = F.cross_entropy(
                mean.reshape(-1, self.out_dim), y.expand(mean.shape[:-1]).reshape(-1), reduction="none"
            ).reshape(mean.shape[:-1])
        else:
            per_example = self._gaussian_nll(mean, out, self.y_scaler.transform(y))
        if self.family == "ensemble":  # (K, B): sum over members, mean over the batch
            if member_weights is not None:
                if member_weights.shape != per_example.shape:
                    raise ValueError(
                        f"member_weights must have shape {tuple(per_example.shape)}, got {tuple(member_weights.shape)}"
                    )
                per_example = per_example * member_weights
            nll = per_example.mean(-1).sum()
        else:
            nll = per_example.mean()
        return nll + self.kl_divergence(generator) / n_data

    def _gaussian_nll(self, mean: Tensor, out: Tensor, y: Tensor) -> Tensor:
        """Per-example Gaussian NLL (MSE without a noise model) in standardised units, summed over outputs."""
        if self.heteroscedastic:
            logvar = soft_clamp_logvar(out[..., self.out_dim :])
        elif self.log_noise_std is not None:
            logvar = soft_clamp_logvar(2.0 * self.log_noise_std).expand_as(mean)
        else:
            logvar = None
        if logvar is None:
            return (mean - y).square().sum(-1)
        return 0.5 * (_LOG_2PI + logvar + (mean - y).square() * (-logvar).exp()).sum(-1)

    def extra_repr(self) -> str:
        return f"family={self.family!r}, heteroscedastic={self.heteroscedastic}"
