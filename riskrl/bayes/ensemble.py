"""Vectorised deep ensemble layers: K members' weights stacked as ``(K, in, out)`` (linear) or
``(K, out, in, k, k)`` (conv).

One ``torch.baddbmm`` (one grouped ``conv2d``) evaluates all members at once (the same computation as ``torch.func``'s
``stack_module_state`` + ``vmap`` over ``nn.Linear``, without the functional-call overhead), so K
members train in one pass. Randomized prior functions (Osband et al. 2018) use a second stack of
the same shape, stored as buffers: fixed, random and never trained.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from riskrl.bayes.layers import check_conv_args

__all__ = ["EnsembleConv2d", "EnsembleLinear", "ensemble_conv2d"]


class _Members(nn.Module):
    """``K`` members' stacked ``weight`` / ``bias`` (parameters, or buffers for fixed prior networks)
    and the particle selection shared by :class:`EnsembleLinear` and :class:`EnsembleConv2d`."""

    weight: Tensor
    bias: Tensor

    def __init__(self, n_members: int) -> None:
        super().__init__()
        if n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        self.n_members = n_members

    def _set_weights(self, weight: Tensor, bias: Tensor, trainable: bool) -> None:
        """``weight`` / ``bias`` as parameters (trainable members) or buffers (fixed prior networks)."""
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias)
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias)

    def select(self, n: int) -> tuple[Tensor, Tensor]:
        """Weights and biases for ``n`` particles, particle ``i`` = member ``i % K`` (the stacks
        themselves when ``n == K``)."""
        if n == self.n_members:
            return self.weight, self.bias
        idx = torch.arange(n, device=self.weight.device) % self.n_members
        return self.weight.index_select(0, idx), self.bias.index_select(0, idx)


class EnsembleLinear(_Members):
    """``K`` independent linear layers: ``x (K, B, in) -> (K, B, out)``.

    With ``trainable=False`` the weights are buffers (used for randomized prior networks).
    """

    def __init__(
        self, n_members: int, in_features: int, out_features: int, *, trainable: bool = True
    ) -> None:
        super().__init__(n_members)
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        w = torch.empty(n_members, in_features, out_features).uniform_(-bound, bound)
        b = torch.empty(n_members, 1, out_features).uniform_(-bound, bound)
        self._set_weights(w, b, trainable)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` of shape ``(B, in)`` (shared by all members) or ``(K, B, in)``; returns ``(K, B, out)``."""
        if x.dim() == 2:
            x = x.expand(self.n_members, *x.shape)
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"n_members={self.n_members}, in_features={self.in_features}, out_features={self.out_features}"


def ensemble_conv2d(x: Tensor, weight: Tensor, bias: Tensor, stride: int, padding: int) -> Tensor:
    """``K`` convolutions in one call: ``weight`` ``(K, out, in, k, k)``, ``bias`` ``(K, out)``.

    ``x`` is ``(B, in, H, W)`` (shared by the K kernels: one convolution with ``K * out`` filters) or
    ``(B, K, in, H, W)`` (one input per kernel set: a grouped convolution with ``groups=K``); returns
    ``(B, K, out, H', W')``. Kernel set ``k`` only ever sees input ``k``.
    """
    k, out = weight.shape[:2]
    if x.dim() == 4:
        y = F.conv2d(x, weight.flatten(0, 1), bias.flatten(), stride, padding)
    else:
        y = F.conv2d(x.flatten(1, 2), weight.flatten(0, 1), bias.flatten(), stride, padding, groups=k)
    return y.unflatten(1, (k, out))


class EnsembleConv2d(_Members):
    """``K`` independent 2-d convolutions: ``x (B, C, H, W)`` or ``(B, K, C, H, W) -> (B, K, out, H', W')``.

    All members run as one grouped convolution (:func:`ensemble_conv2d`). With ``trainable=False``
    the kernels are buffers (randomized prior networks).
    """

    def __init__(
        self,
        n_members: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        *,
        trainable: bool = True,
    ) -> None:
        super().__init__(n_members)
        check_conv_args(in_channels, out_channels, kernel_size, stride, padding)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        w = torch.empty(n_members, out_channels, in_channels, kernel_size, kernel_size).uniform_(
            -bound, bound
        )
        b = torch.empty(n_members, out_channels).uniform_(-bound, bound)
        self._set_weights(w, b, trainable)

    def forward(self, x: Tensor) -> Tensor:
        """Every member's convolution of its input; see :func:`ensemble_conv2d`."""
        return ensemble_conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (
            f"n_members={self.n_members}, {self.in_channels}, {self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        )
