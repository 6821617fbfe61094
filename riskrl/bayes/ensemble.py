"""Vectorised deep ensemble layers: K members' weights stacked as ``(K, in, out)``.

One ``torch.baddbmm`` evaluates all members at once (the same computation as ``torch.func``'s
``stack_module_state`` + ``vmap`` over ``nn.Linear``, without the functional-call overhead), so K
members train in one pass. Randomized prior functions (Osband et al. 2018) use a second stack of
the same shape, stored as buffers: fixed, random and never trained.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["EnsembleLinear"]


class EnsembleLinear(nn.Module):
    """``K`` independent linear layers: ``x (K, B, in) -> (K, B, out)``.

    With ``trainable=False`` the weights are buffers (used for randomized prior networks).
    """

    def __init__(
        self, n_members: int, in_features: int, out_features: int, *, trainable: bool = True
    ) -> None:
        super().__init__()
        if n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        self.n_members, self.in_features, self.out_features = n_members, in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        w = torch.empty(n_members, in_features, out_features).uniform_(-bound, bound)
        b = torch.empty(n_members, 1, out_features).uniform_(-bound, bound)
        if trainable:
            self.weight = nn.Parameter(w)
            self.bias = nn.Parameter(b)
        else:
            self.register_buffer("weight", w)
            self.register_buffer("bias", b)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` of shape ``(B, in)`` (shared by all members) or ``(K, B, in)``; returns ``(K, B, out)``."""
        if x.dim() == 2:
            x = x.expand(self.n_members, *x.shape)
        return torch.baddbmm(self.bias, x, self.weight)

    def select(self, n: int) -> tuple[Tensor, Tensor]:
        """Weights for ``n`` particles, particle ``i`` = member ``i % K``: ``(n, in, out)``, ``(n, 1, out)``."""
        if n == self.n_members:
            return self.weight, self.bias
        idx = torch.arange(n, device=self.weight.device) % self.n_members
        return self.weight.index_select(0, idx), self.bias.index_select(0, idx)

    def extra_repr(self) -> str:
        return f"n_members={self.n_members}, in_features={self.in_features}, out_features={self.out_features}"
