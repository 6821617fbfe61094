"""The posterior families behind :class:`~riskrl.bayes.BayesMLP`, one class each.

A :class:`Posterior` builds its family's layers and owns everything that depends on the family:
frozen posterior draws (:meth:`~Posterior.draw`), the point estimate, the draw a training step
runs (a fresh sample per example), the KL term, how per-example losses are reduced over members and
the shape of a learnt noise std. Every draw is a :class:`Draw` of layers that
:class:`~riskrl.bayes.prediction.Particles` evaluates, so training, prediction, ``forward`` and
``particles`` share one forward pass. :data:`POSTERIORS` maps a family name to its class;
:class:`~riskrl.bayes.BayesMLP` picks one in its constructor and never looks at the name again.

A posterior is a plain object, not an ``nn.Module``: the model registers the modules it built
(``layers``, ``prior_layers``, ``dropouts``) under the same names, so ``state_dict`` keys do not
depend on this class.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from functools import partial
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from riskrl.bayes.ensemble import EnsembleConv2d, EnsembleLinear
from riskrl.bayes.layers import BayesConv2d, BayesLinear, MCDropout, PriorSpec
from riskrl.bayes.prediction import LayerDraw, SampledLayer

__all__ = [
    "POSTERIORS",
    "Architecture",
    "BBBPosterior",
    "Draw",
    "DropoutPosterior",
    "EnsemblePosterior",
    "Posterior",
    "exact_members",
    "posterior_class",
    "sum_of_member_means",
]


# bbb's predict samples pre-activations instead of weights when that draws at least this many times
# fewer random numbers (the local pass does two matmuls per layer, mean and variance)
_LOCAL_PREDICT_MARGIN = 4


@dataclass(frozen=True)
class Architecture:
    """The layer sizes a posterior builds its layers for.

    ``convs``: ``(in_channels, out_channels, stride)`` per convolution (``conv_kernel`` square
    kernels, padding ``conv_kernel // 2``), followed by linear layers ``dims[0] -> ... -> dims[-1]``
    (``dims[-1]`` the head: ``out_dim``, or ``2 * out_dim`` with a log-variance head; a randomized
    prior network ends in ``out_dim``). ``in_shapes``: every layer's input shape, ``(C, H, W)`` for
    a convolution and ``(width,)`` for a linear layer.
    """

    convs: tuple[tuple[int, int, int], ...]
    conv_kernel: int
    dims: tuple[int, ...]
    out_dim: int
    in_shapes: tuple[tuple[int, ...], ...]

    def conv(self, i: int) -> tuple[int, int] | None:
        """``(stride, padding)`` of layer ``i`` if it is a convolution, else ``None``."""
        return (self.convs[i][2], self.conv_kernel // 2) if i < len(self.convs) else None

    def linear_pairs(self, out: int | None = None) -> list[tuple[int, int]]:
        """``(in, out)`` of every linear layer; ``out`` replaces the head's width."""
        return list(itertools.pairwise([*self.dims[:-1], self.dims[-1] if out is None else out]))


@dataclass(frozen=True)
class Draw:
    """``n`` posterior draws as layers :class:`~riskrl.bayes.prediction.Particles` evaluates, with
    the randomized prior network's layers (``None``: no prior network)."""

    n: int
    layers: Sequence[LayerDraw | SampledLayer]
    prior_layers: Sequence[LayerDraw] | None = None


class Posterior:
    """One posterior family: builds ``layers`` (and ``prior_layers`` / ``dropouts`` where the family
    has them) for an :class:`Architecture` from the model's config, and answers for the family.

    Subclasses set :attr:`family` and implement :meth:`draw`, :meth:`point`, :meth:`training_draw`
    and :meth:`kl_divergence`.
    """

    #: the family's name in :data:`POSTERIORS` and in ``BayesMLP(family=...)``
    family: ClassVar[str]
    #: whether the posterior is a finite set of equally weighted members (predict uses each once)
    exact: ClassVar[bool] = False

    layers: nn.ModuleList
    prior_layers: nn.ModuleList | None = None
    dropouts: nn.ModuleList | None = None

    def __init__(self, arch: Architecture, config: Mapping[str, Any]) -> None:
        self.arch = arch

    @property
    def n_members(self) -> int:
        """Members trained side by side (rows of the per-example loss): 1 unless an ensemble."""
        return 1

    @property
    def exact_members(self) -> int | None:
        """The number of members when they are the exact posterior, ``None`` when it is sampled."""
        return self.n_members if self.exact else None

    def draw(self, n: int, generator: torch.Generator | None = None) -> Draw:
        """``n`` frozen posterior draws (weights, masks or members) made with ``generator``."""
        raise NotImplementedError

    def point(self) -> Draw:
        """The point estimate, as draws whose average is the model's ``forward``."""
        raise NotImplementedError

    def training_draw(self, generator: torch.Generator | None) -> Draw:
        """What one training step evaluates: a fresh sample per example, or every member."""
        raise NotImplementedError

    def predictive_draw(self, n: int, generator: torch.Generator | None, batch: int) -> Draw:
        """The draws ``predict`` summarises for a batch of ``batch`` inputs and ``n`` samples."""
        return self.draw(n, generator)

    def kl_divergence(self, generator: torch.Generator | None = None) -> Tensor:
        """Scalar ``KL(q || prior)`` (the family's regulariser)."""
        raise NotImplementedError

    def reduce_loss(self, per_example: Tensor) -> Tensor:
        """Batch loss from per-example losses ``(draws, B)``: their mean (a Monte Carlo average)."""
        return per_example.mean()

    def noise_shape(self, out_dim: int) -> tuple[int, ...]:
        """Shape of a learnt homoscedastic log noise std: one per output."""
        return (out_dim,)

    def noise(self, std: Tensor, n: int) -> Tensor:
        """The learnt noise std for ``n`` particles (shared by all of them)."""
        return std

    def _weight_ref(self) -> Tensor:
        """A parameter of the model (for the dtype and device of new tensors)."""
        return next(self.layers.parameters())


class BBBPosterior(Posterior):
    """Bayes-by-backprop (Blundell et al. 2015): a factorised Gaussian over every weight.

    Draws sample whole weight sets; training samples pre-activations per example (local
    reparameterisation); ``predict`` on a batch much smaller than the layer widths does the same
    with ``n`` samples per input (same per-input predictive, far fewer random numbers).
    """

    family = "bbb"

    def __init__(self, arch: Architecture, config: Mapping[str, Any]) -> None:
        super().__init__(arch, config)
        spec = asdict(PriorSpec(**{f.name: config[f.name] for f in fields(PriorSpec)}))
        k = arch.conv_kernel
        self.layers = nn.ModuleList(
            [BayesConv2d(i, o, k, st, k // 2, **spec) for i, o, st in arch.convs]
            + [BayesLinear(i, o, **spec) for i, o in arch.linear_pairs()]
        )
        pairs = arch.linear_pairs()
        self._sum_out = sum(o for _, o in pairs)
        self._sum_inout = sum(i * o for i, o in pairs)

    def draw(self, n: int, generator: torch.Generator | None = None) -> Draw:
        """Weights sampled once: ``(n, in, out)`` per linear layer, ``(n, out, in, k, k)`` per conv."""
        return Draw(
            n,
            [
                LayerDraw(*layer.sample_weights(n, generator), None, self.arch.conv(i))
                for i, layer in enumerate(self.layers)
            ],
        )

    def point(self) -> Draw:
        """The posterior-mean weights."""
        return Draw(
            1,
            [
                LayerDraw(layer.weight_mu, layer._bias_mu(), None, self.arch.conv(i))
                for i, layer in enumerate(self.layers)
            ],
        )

    def training_draw(self, generator: torch.Generator | None) -> Draw:
        """Local reparameterisation: every pre-activation sampled per example."""
        return self._local(generator, None)

    def predictive_draw(self, n: int, generator: torch.Generator | None, batch: int) -> Draw:
        """Local reparameterisation with ``n`` samples per input when the batch is small (an MLP
        whose batch times its summed layer widths, the random numbers per sample, is under
        ``1 / _LOCAL_PREDICT_MARGIN`` of its weight count, those of a weight draw), else :meth:`draw`."""
        if not self.arch.convs and batch * self._sum_out * _LOCAL_PREDICT_MARGIN < self._sum_inout:
            return self._local(generator, n)
        return self.draw(n, generator)

    def _local(self, generator: torch.Generator | None, n: int | None) -> Draw:
        """Locally reparameterised layers; ``n``: the first layer draws ``n`` samples of each input
        (its moments computed once), ``None``: one sample per input row."""
        layers = []
        for i, layer in enumerate(self.layers):
            sample = partial(layer.local_reparam, generator=generator)
            if i == 0 and n is not None:
                sample = partial(sample, n_samples=n)
            layers.append(SampledLayer(sample, self.arch.conv(i)))
        return Draw(1 if n is None else n, layers)

    def kl_divergence(self, generator: torch.Generator | None = None) -> Tensor:
        """Summed over layers (a mixture prior's one-sample estimate uses ``generator``)."""
        return sum(
            (layer.kl_divergence(generator) for layer in self.layers), self._weight_ref().new_zeros(())
        )


class DropoutPosterior(Posterior):
    """MC dropout (Gal & Ghahramani 2016): dropout on the input of every layer but the first.

    A draw freezes one mask per layer and particle; training drops units per example with the
    caller's generator; the point estimate is the network without dropout.
    """

    family = "mc_dropout"

    def __init__(self, arch: Architecture, config: Mapping[str, Any]) -> None:
        super().__init__(arch, config)
        self.p, self.length_scale = float(config["dropout"]), float(config["length_scale"])
        k = arch.conv_kernel
        self.layers = nn.ModuleList(
            [nn.Conv2d(i, o, k, st, k // 2) for i, o, st in arch.convs]
            + [nn.Linear(i, o) for i, o in arch.linear_pairs()]
        )
        # dropout on the input of every layer but the first (i.e. after each hidden activation)
        self.dropouts = nn.ModuleList(MCDropout(self.p) for _ in range(len(self.layers) - 1))

    def _weight(self, i: int) -> Tensor:
        """Layer ``i``'s weight in the draw layout (linear ``(in, out)``, conv as stored)."""
        w = self.layers[i].weight
        return w if self.arch.conv(i) is not None else w.t()

    def draw(self, n: int, generator: torch.Generator | None = None) -> Draw:
        """One frozen mask per particle and layer input: ``(n, 1, width)`` or ``(n, C, H, W)``."""
        assert self.dropouts is not None
        draws = []
        for i, layer in enumerate(self.layers):
            mask = None
            if i > 0:
                shape = self.arch.in_shapes[i]
                width = shape[0] if len(shape) == 1 else shape
                mask = self.dropouts[i - 1].sample_masks(n, width, generator, like=layer.weight)
            draws.append(LayerDraw(self._weight(i), layer.bias, mask, self.arch.conv(i)))
        return Draw(n, draws)

    def point(self) -> Draw:
        """Dropout off."""
        return Draw(
            1,
            [
                LayerDraw(self._weight(i), layer.bias, None, self.arch.conv(i))
                for i, layer in enumerate(self.layers)
            ],
        )

    def training_draw(self, generator: torch.Generator | None) -> Draw:
        """Fresh inverted-dropout masks per example, drawn with ``generator``."""
        keep = 1.0 - self.p
        return Draw(
            1,
            [
                SampledLayer(
                    layer if i == 0 or keep >= 1.0 else partial(_dropped, layer, keep, generator),
                    self.arch.conv(i),
                )
                for i, layer in enumerate(self.layers)
            ],
        )

    def kl_divergence(self, generator: torch.Generator | None = None) -> Tensor:
        """Gal's approximation ``sum l^2 (1 - p) / 2 ||W||^2 + l^2 / 2 ||b||^2`` (``1 - p`` only on
        layers with dropout on their input)."""
        l2 = self.length_scale**2
        total = self._weight_ref().new_zeros(())
        for i, layer in enumerate(self.layers):
            keep = 1.0 - self.p if i > 0 else 1.0
            total = total + 0.5 * l2 * (keep * layer.weight.square().sum() + layer.bias.square().sum())
        return total


def _dropped(layer: nn.Module, keep: float, generator: torch.Generator | None, z: Tensor) -> Tensor:
    """``layer`` on ``z`` after inverted dropout (keep probability ``keep``) with ``generator``."""
    mask = torch.rand(z.shape, generator=generator, device=z.device, dtype=z.dtype) < keep
    return layer(z * mask / keep)


class EnsemblePosterior(Posterior):
    """A deep ensemble of ``n_members`` networks, evaluated side by side, optionally each plus a
    fixed random prior network scaled by ``prior_scale`` (Osband et al. 2018).

    The members are the posterior: particle ``i`` is member ``i % n_members``, ``predict`` uses every
    member once, training fits all members (their losses summed) and the point estimate is their
    average. No KL term.
    """

    family = "ensemble"
    exact = True

    def __init__(self, arch: Architecture, config: Mapping[str, Any]) -> None:
        super().__init__(arch, config)
        k = int(config["n_members"])
        if k < 1:
            raise ValueError(f"n_members must be >= 1, got {k}")
        self.k = k
        self.layers = nn.ModuleList(self._members(arch.dims[-1], trainable=True))
        if float(config["prior_scale"]) != 0.0:
            self.prior_layers = nn.ModuleList(self._members(arch.out_dim, trainable=False))

    def _members(self, out: int, *, trainable: bool) -> list[nn.Module]:
        a, k = self.arch, self.k
        return [
            EnsembleConv2d(k, i, o, a.conv_kernel, st, a.conv_kernel // 2, trainable=trainable)
            for i, o, st in a.convs
        ] + [EnsembleLinear(k, i, o, trainable=trainable) for i, o in a.linear_pairs(out)]

    @property
    def n_members(self) -> int:
        """The ensemble size."""
        return self.k

    def draw(self, n: int, generator: torch.Generator | None = None) -> Draw:
        """Particle ``i`` is member ``i % n_members`` (``generator`` is not needed)."""

        def select(layers: nn.ModuleList) -> list[LayerDraw]:
            return [LayerDraw(*layer.select(n), None, self.arch.conv(i)) for i, layer in enumerate(layers)]

        return Draw(n, select(self.layers), None if self.prior_layers is None else select(self.prior_layers))

    def point(self) -> Draw:
        """Every member (``forward`` averages them)."""
        return self.draw(self.k)

    def training_draw(self, generator: torch.Generator | None) -> Draw:
        """Every member, each on the whole batch."""
        return self.draw(self.k)

    def predictive_draw(self, n: int, generator: torch.Generator | None, batch: int) -> Draw:
        """Every member once, whatever ``n``: the exact ensemble mixture."""
        return self.draw(self.k)

    def kl_divergence(self, generator: torch.Generator | None = None) -> Tensor:
        """Zero: the members are point estimates."""
        return self._weight_ref().new_zeros(())

    def reduce_loss(self, per_example: Tensor) -> Tensor:
        """See :func:`sum_of_member_means`."""
        return sum_of_member_means(per_example)

    def noise_shape(self, out_dim: int) -> tuple[int, ...]:
        """One log noise std per member and output: ``(n_members, 1, out_dim)``."""
        return (self.k, 1, out_dim)

    def noise(self, std: Tensor, n: int) -> Tensor:
        """Particle ``i``'s noise std is member ``i % n_members``'s."""
        if n == self.k:
            return std
        return std.index_select(0, torch.arange(n, device=std.device) % self.k)


def sum_of_member_means(per_example: Tensor) -> Tensor:
    """An ensemble's loss from per-example losses ``(n_members, B)``: every member's batch mean,
    summed (each member learns its own regression)."""
    return per_example.mean(-1).sum()


#: family name -> posterior class
POSTERIORS: dict[str, type[Posterior]] = {
    cls.family: cls for cls in (BBBPosterior, DropoutPosterior, EnsemblePosterior)
}


def posterior_class(family: str) -> type[Posterior]:
    """The :class:`Posterior` subclass of a family name (ValueError for an unknown one)."""
    try:
        return POSTERIORS[family]
    except KeyError:
        raise ValueError(f"unknown family {family!r}; allowed values: {', '.join(POSTERIORS)}") from None


def exact_members(family: str, n_members: int) -> int | None:
    """:attr:`Posterior.exact_members` of a family without building a model: ``n_members`` for a
    family whose members are the exact posterior (the ensemble), ``None`` for a sampled one."""
    return int(n_members) if posterior_class(family).exact else None
