"""Behaviour cloning: what the policy that recorded a dataset did in a state.

:class:`BehaviorPolicy` is a small MLP fitted to a dataset's ``(observation, action)`` pairs. BayesMPC
uses it offline as the planner's starting point (MBOP, Argenson & Dulac-Arnold 2021): the search
begins at the plan the behaviour policy would follow through the learnt model and samples around
it, so plans stay near actions the data show. A dynamics model fitted to narrow data (an expert's
actions as a function of the state) cannot tell the effect of an action from the state it was taken
in; plans far from the data's actions exploit that error, and the ensemble's disagreement does not
flag it (its members share the confound).

* Box actions: a Gaussian per action dimension, in units of the half-range: a tanh-bounded mean and
  a learnt std (softly bounded to ``[0.001, 2]``), trained by Gaussian negative log-likelihood. The
  std is what makes the prior adaptive: on an expert's data it is small (plans stay near the
  expert's actions), on random data about the uniform's 0.58 (the search is as wide as without a
  prior).
* Discrete actions: logits over the ``n`` actions; trained by cross-entropy.

Observations are standardised with the dataset's mean and std (stored as buffers, so they travel
with the ``state_dict``).
"""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from riskrl.bayes import Standardizer
from riskrl.bayes.mlp import ACTIVATIONS

__all__ = ["UNIFORM_STD", "BehaviorPolicy", "sharpen_spread"]

#: soft bounds of the Box std's log, in units of the half-range
_MIN_LOG_STD, _MAX_LOG_STD = math.log(1e-3), math.log(2.0)
#: the std of a uniform distribution over the action range, in units of the half-range (1/sqrt(3))
UNIFORM_STD = 1.0 / math.sqrt(3.0)


def sharpen_spread(std: Tensor, power: float) -> Tensor:
    """Narrow a cloned spread by its confidence: ``std * min(1, std / UNIFORM_STD) ** (power - 1)``.

    ``power == 1`` returns ``std`` unchanged. Above 1, a spread as wide as a uniform's (random data)
    or wider is kept, and narrower ones shrink faster the narrower they are (``power == 2``: a
    clone at half the uniform's spread starts the search at a quarter of it), so a search around
    a sure clone stays close to it while one around data that look random stays wide.
    """
    if power == 1.0:
        return std
    return std * (std / UNIFORM_STD).clamp(max=1.0).pow(power - 1.0)


class BehaviorPolicy(nn.Module):
    """A behaviour-cloning policy for a Box (Gaussian) or Discrete (categorical) ``action_space``.

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
        if not self.discrete:
            widths[-1] = 2 * out  # mean and log std per action dimension
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self._act = ACTIVATIONS[activation]

    def forward(self, obs: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Discrete: logits ``(..., n)``; Box: mean in ``[-1, 1]`` and std, in units of the half-range."""
        h = self.obs_scaler.transform(obs)
        for layer in self.layers[:-1]:
            h = self._act(layer(h))
        out = self.layers[-1](h)
        if self.discrete:
            return out
        mean, raw = out.chunk(2, dim=-1)
        log_std = _MAX_LOG_STD - F.softplus(_MAX_LOG_STD - raw)
        log_std = _MIN_LOG_STD + F.softplus(log_std - _MIN_LOG_STD)
        return torch.tanh(mean), log_std.exp()

    def loss(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Cross-entropy (Discrete) or Gaussian negative log-likelihood in half-range units (Box)."""
        out = self(obs)
        if self.discrete:
            assert isinstance(out, Tensor)
            return F.cross_entropy(out, actions.long().reshape(-1) - self.start)
        mean, std = out
        target = ((actions.float() - self.action_mid) / self.action_half).clamp(-1.0, 1.0)
        return F.gaussian_nll_loss(mean, target, std.square(), full=False)

    def distribution(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Box only: the cloned action's mean (env units) and std (fraction of the half-range)."""
        if self.discrete:
            raise ValueError("distribution() is for Box action spaces; use probs()")
        mean, std = self(obs)
        return self.action_mid + self.action_half * mean, std

    def probs(self, obs: Tensor) -> Tensor:
        """Discrete only: the action probabilities ``(..., n)``."""
        if not self.discrete:
            raise ValueError("probs() is for Discrete action spaces")
        logits = self(obs)
        assert isinstance(logits, Tensor)
        return torch.softmax(logits, dim=-1)

    def action(self, obs: Tensor) -> Tensor:
        """The cloned action: Box ``(..., act_dim)`` in env units; Discrete ``(...)`` the most likely index."""
        if self.discrete:
            return self.probs(obs).argmax(-1) + self.start
        return self.distribution(obs)[0]
