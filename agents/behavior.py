"""Behaviour cloning: what the policy that recorded a dataset did in a state.

:class:`BehaviorPolicy` is a small MLP fitted to a dataset's ``(observation, action)`` pairs. BayesMPC
uses it offline as the planner's starting point (MBOP, Argenson & Dulac-Arnold 2021): the search
begins at the plan the behaviour policy would follow through the learnt model and samples around
it, so plans stay near actions the data show. A dynamics model fitted to narrow data (an expert's
actions as a function of the state) cannot tell the effect of an action from the state it was taken
in; plans far from the data's actions exploit that error, and the ensemble's disagreement does not
flag it (its members share the confound).

* Box actions: a tanh head maps to the action bounds; trained by mean squared error in units of the
  half-range.
* Discrete actions: logits over the ``n`` actions; trained by cross-entropy.

Observations are standardised with the dataset's mean and std (stored as buffers, so they travel
with the ``state_dict``).
"""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from riskrl.bayes import Standardizer
from riskrl.bayes.mlp import ACTIVATIONS

__all__ = ["BehaviorPolicy"]


class BehaviorPolicy(nn.Module):
    """A deterministic behaviour-cloning policy for a Box or Discrete ``action_space``.

    Args:
        obs_dim: observation size.
        action_space: the agent's action space (flat Box with finite bounds, or Discrete).
        hidden: hidden layer widths.
        activation: one of :data:`riskrl.bayes.mlp.ACTIVATIONS`.
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: gym.Space,
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "silu",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            out = int(action_space.n)
            self.start = int(action_space.start)
            mid = half = torch.zeros(0)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            low = np.asarray(action_space.low, dtype=np.float64)
            high = np.asarray(action_space.high, dtype=np.float64)
            if not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise ValueError(f"behaviour cloning needs finite Box action bounds, got {action_space}")
            out = int(low.size)
            self.start = 0
            mid = torch.as_tensor((low + high) / 2, dtype=torch.float32)
            half = torch.as_tensor((high - low) / 2, dtype=torch.float32)
        else:
            raise ValueError(
                f"behaviour cloning needs a Discrete or flat Box action space, got {action_space}"
            )
        self.register_buffer("action_mid", mid)
        self.register_buffer("action_half", half)
        self.obs_scaler = Standardizer(obs_dim)
        widths = [obs_dim, *hidden, out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self._act = ACTIVATIONS[activation]

    def forward(self, obs: Tensor) -> Tensor:
        """Discrete: logits ``(..., n)``; Box: actions in ``[-1, 1]`` units of the half-range."""
        h = self.obs_scaler.transform(obs)
        for layer in self.layers[:-1]:
            h = self._act(layer(h))
        out = self.layers[-1](h)
        return out if self.discrete else torch.tanh(out)

    def loss(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Cross-entropy (Discrete) or mean squared error in half-range units (Box) on a minibatch."""
        out = self(obs)
        if self.discrete:
            return F.cross_entropy(out, actions.long().reshape(-1) - self.start)
        target = ((actions.float() - self.action_mid) / self.action_half).clamp(-1.0, 1.0)
        return F.mse_loss(out, target)

    def probs(self, obs: Tensor) -> Tensor:
        """Discrete only: the action probabilities ``(..., n)``."""
        if not self.discrete:
            raise ValueError("probs() is for Discrete action spaces")
        return torch.softmax(self(obs), dim=-1)

    def action(self, obs: Tensor) -> Tensor:
        """The cloned action: Box ``(..., act_dim)`` in env units; Discrete ``(...)`` the most likely index."""
        out = self(obs)
        if self.discrete:
            return out.argmax(-1) + self.start
        return self.action_mid + self.action_half * out
