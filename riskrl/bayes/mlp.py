"""``BayesMLP``: one network class, three posterior families (:mod:`riskrl.bayes.posteriors`), two
likelihoods (Gaussian regression, categorical classification), an optional convolutional trunk, one
uncertainty interface."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from riskrl.bayes.posteriors import POSTERIORS, Architecture, Draw, Posterior, posterior_class
from riskrl.bayes.prediction import ClassPrediction, Particles, Prediction, all_finite, soft_clamp_logvar

__all__ = ["ACTIVATIONS", "FAMILIES", "LIKELIHOODS", "BayesMLP", "Standardizer"]

FAMILIES = tuple(POSTERIORS)
LIKELIHOODS = ("gaussian", "categorical")


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
        posterior_cls = posterior_class(family)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed values: {', '.join(ACTIVATIONS)}")
        hidden = tuple(int(h) for h in hidden)
        if in_dim < 1 or out_dim < 1 or any(h < 1 for h in hidden):
            raise ValueError(
                f"in_dim, out_dim and hidden widths must be >= 1, got {in_dim}, {out_dim}, {hidden}"
            )
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
        in_shapes: list[tuple[int, ...]] = []
        flat = in_dim
        if conv_channels:
            assert img is not None
            c, hh, ww = img
            pad = conv_kernel // 2
            for out_c, st in zip(conv_channels, strides):
                convs.append((c, out_c, st))
                in_shapes.append((c, hh, ww))
                # padding k // 2 keeps at least one output pixel for any stride
                hh, ww = (hh + 2 * pad - conv_kernel) // st + 1, (ww + 2 * pad - conv_kernel) // st + 1
                c = out_c
            flat = c * hh * ww
        arch = Architecture(
            convs=tuple(convs),
            conv_kernel=int(conv_kernel),
            dims=(flat, *hidden, head),
            out_dim=self.out_dim,
            in_shapes=(*in_shapes, *((i,) for i in (flat, *hidden))),
        )
        self.x_scaler = Standardizer(in_dim)
        self.y_scaler = Standardizer(out_dim)
        # The posterior builds the family's layers; registering them here keeps the state_dict keys
        # (layers.*, prior_layers.*, dropouts.*) independent of the posterior classes.
        self._posterior: Posterior = posterior_cls(arch, self._config)
        self.layers: nn.ModuleList = self._posterior.layers
        self.prior_layers: nn.ModuleList | None = self._posterior.prior_layers
        self.dropouts: nn.ModuleList | None = self._posterior.dropouts
        if not self.heteroscedastic and self.learn_noise:
            shape = self._posterior.noise_shape(out_dim)
            self.log_noise_std = nn.Parameter(torch.full(shape, math.log(0.5)))
        else:
            self.register_parameter("log_noise_std", None)

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

    @property
    def n_members(self) -> int:
        """Members trained side by side: the ensemble size, 1 for the sampled families."""
        return self._posterior.n_members

    @property
    def exact_members(self) -> int | None:
        """How many members make up the posterior when they are exact (an ensemble: ``n_members``;
        ``predict`` uses each once and a Thompson sample picks one), ``None`` when the posterior is
        sampled (draw as many :meth:`particles` as wanted)."""
        return self._posterior.exact_members

    def _noise_for(self, n: int) -> Tensor | None:
        if self.log_noise_std is None:
            return None
        return self._posterior.noise(self.log_noise_std.exp(), n)

    # ------------------------------------------------------------------ particles
    def particles(self, n: int, generator: torch.Generator | None = None) -> Particles:
        """``n`` posterior draws frozen as one batched callable (see :class:`Particles`).

        bbb: weights sampled once as ``(n, in, out)``; mc_dropout: one ``(n, 1, width)`` mask per layer;
        ensemble: particle ``i`` is member ``i % n_members``.
        """
        n = self._check_n(n, "n")
        return self._particles_of(self._posterior.draw(n, generator))

    def _particles_of(self, draw: Draw) -> Particles:
        return Particles(
            draw.n,
            draw.layers,
            in_dim=self.in_dim,
            out_dim=self.out_dim,
            activation=self.act,
            x_mean=self.x_scaler.mean,
            x_std=self.x_scaler.std,
            y_mean=self.y_scaler.mean,
            y_std=self.y_scaler.std,
            heteroscedastic=self.heteroscedastic,
            noise_std=self._noise_for(draw.n),
            prior_layers=draw.prior_layers,
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
            particles = self._particles_of(self._posterior.predictive_draw(n, generator, x.shape[0]))
            if self.likelihood == "categorical":
                return particles._predict_validated(x)
            means, alea = particles.mean_and_std(x)
            return Prediction.from_particles(means, alea)

    def forward(self, x: Tensor) -> Tensor:
        """Differentiable point prediction ``(B, out)`` in raw units: posterior-mean weights (bbb),
        dropout off (mc_dropout) or the member average (ensemble). A classifier returns logits."""
        x = self._as_x(x)
        return self._particles_of(self._posterior.point())(x).mean(0)

    # ------------------------------------------------------------------ training
    def kl_divergence(self, generator: torch.Generator | None = None) -> Tensor:
        """Scalar KL(q || prior). bbb: summed over layers (a mixture prior's MC sample uses
        ``generator``); mc_dropout: Gal's approximation ``sum l^2 (1 - p) / 2 ||W||^2 + l^2 / 2 ||b||^2``;
        ensemble: 0."""
        return self._posterior.kl_divergence(generator)

    def reduce_loss(self, per_example: Tensor) -> Tensor:
        """Batch loss from per-example losses ``(draws, B)``: an ensemble sums its members' batch means
        (each member learns its own regression), a sampled posterior averages over draws and examples."""
        return self._posterior.reduce_loss(per_example)

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

        The training pass is the family's training draw (bbb: local reparameterisation, one sample per
        example; mc_dropout: fresh dropout masks per example; ensemble: every member on the whole
        batch) through the same forward as :meth:`particles`; :meth:`reduce_loss` turns the
        ``(n_members, B)`` per-example losses into one number. Optional ``member_weights`` of that
        shape (``n_members`` is 1 for bbb and mc_dropout), e.g. bootstrap counts, weight each
        member's per-example losses. All sampling (weights, dropout masks, the mixture KL) uses
        ``generator`` (on the model's device), so training is reproducible without touching torch's
        global RNG.
        """
        n_data = self._check_n(int(n_data) if not isinstance(n_data, bool) else n_data, "n_data")
        x = self._as_x(x)
        y = self._as_y(y, x.shape[0])
        mean, logvar = self._particles_of(self._posterior.training_draw(generator))._raw(x)
        if self.likelihood == "categorical":
            per_example = F.cross_entropy(
                mean.reshape(-1, self.out_dim), y.expand(mean.shape[:-1]).reshape(-1), reduction="none"
            ).reshape(mean.shape[:-1])
        else:
            per_example = self._gaussian_nll(mean, logvar, self.y_scaler.transform(y))
        if member_weights is not None:
            if member_weights.shape != per_example.shape:
                raise ValueError(
                    f"member_weights must have shape {tuple(per_example.shape)}, got {tuple(member_weights.shape)}"
                )
            per_example = per_example * member_weights
        return self.reduce_loss(per_example) + self.kl_divergence(generator) / n_data

    def _gaussian_nll(self, mean: Tensor, logvar: Tensor | None, y: Tensor) -> Tensor:
        """Per-example Gaussian NLL (MSE without a noise model) in standardised units, summed over
        outputs; ``logvar``: the heteroscedastic head's, else the learnt noise's (if any)."""
        if logvar is None and self.log_noise_std is not None:
            logvar = soft_clamp_logvar(2.0 * self.log_noise_std).expand_as(mean)
        if logvar is None:
            return (mean - y).square().sum(-1)
        return 0.5 * (_LOG_2PI + logvar + (mean - y).square() * (-logvar).exp()).sum(-1)

    def extra_repr(self) -> str:
        return f"family={self.family!r}, heteroscedastic={self.heteroscedastic}"
