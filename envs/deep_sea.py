"""Torch-batched ``deep_sea`` (bsuite's deep-exploration probe), deterministic and stochastic.

The same MDP as ``bsuite.environments.deep_sea.DeepSea`` (Osband et al., "Deep Exploration via
Randomized Value Functions", 2019), step for step: an ``N x N`` grid, the agent starts top left and
falls one row per step; each cell maps the actions ``{0, 1}`` to ``{left, right}`` through a fixed
random ``action_mapping`` (bsuite's: ``np.random.RandomState(mapping_seed).binomial(1, 0.5, (N, N))``).
Moving right costs ``0.01 / N``; moving right in the bottom-right column earns ``+1``. Every episode
lasts exactly ``N`` steps and ends in a termination (bsuite's discount 0). An episode is *bad* when the
agent leaves the diagonal (goes left while ``row == column``), as bsuite counts it.

``deterministic=False`` is bsuite's ``deep_sea_stochastic``: "right" succeeds only with probability
``1 - 1/N`` and the two bottom corner cells add ``N(0, 1)`` reward noise. The randomness comes from the
counter-based hash RNG of :class:`~riskrl.envs.base.TorchVectorEnv` (seeded by ``reset(seed=...)``), so
a step is one tensor program over the batch; :meth:`DeepSeaVecEnv.peek_noise` returns the numbers the
next step will use (the tests feed them to bsuite's env to compare the two exactly).

Observations are the flattened one-hot grid, ``(num_envs, N * N)`` (all zeros after the last step, as
bsuite's); gymnasium's vector conventions (autoreset, ``info``) are those of the other riskrl envs.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from .base import TorchVectorEnv, _hash_uniform_premul

__all__ = ["DeepSeaVecEnv", "bsuite_action_mapping"]


def bsuite_action_mapping(size: int, mapping_seed: int | None) -> np.ndarray:
    """bsuite's per-cell action mapping: ``1`` where action 1 means "right" (``(size, size)`` int64)."""
    return np.random.RandomState(mapping_seed).binomial(1, 0.5, [size, size]).astype(np.int64)


class DeepSeaVecEnv(TorchVectorEnv):
    """A batch of ``deep_sea`` envs of one ``size`` and one action mapping (bsuite's ``deep_sea/k``).

    Args:
        num_envs: batch size.
        size: grid side ``N >= 2`` (bsuite sweeps 10, 12, ..., 50).
        deterministic: ``False`` gives bsuite's ``deep_sea_stochastic`` (slippery "right", noisy corners).
        mapping_seed: seed of bsuite's action mapping (bsuite's sweeps use 42); ``None`` draws one.
        action_mapping: an explicit ``(size, size)`` 0/1 mapping instead of ``mapping_seed``.
        unscaled_move_cost: cost of "right" times ``N`` (bsuite's default 0.01).
        **kwargs: :class:`~riskrl.envs.base.TorchVectorEnv`'s options (``device``, ``dtype``,
            ``autoreset_mode``, ``episode_statistics``, ``obs_noise_std``, ...).

    State ``(num_envs, 3)``: ``(row, column, bad)``. :attr:`total_bad_episodes` and
    :attr:`denoised_return` are bsuite's per-env running counters (``bsuite_info``), counted over every
    episode since construction (bsuite never resets them either).
    """

    env_id = "deep_sea"
    state_dim = 3
    default_max_episode_steps = 0  # set per instance: episodes end by termination after `size` steps
    param_defaults: ClassVar[dict[str, float]] = {}
    reset_low = (0.0, 0.0, 0.0)
    reset_high = (0.0, 0.0, 0.0)
    metadata: ClassVar[dict[str, Any]] = {**TorchVectorEnv.metadata, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 1,
        size: int = 10,
        deterministic: bool = True,
        mapping_seed: int | None = 42,
        action_mapping: np.ndarray | torch.Tensor | None = None,
        unscaled_move_cost: float = 0.01,
        **kwargs: Any,
    ) -> None:
        if isinstance(size, bool) or int(size) != size or size < 2:
            raise ValueError(f"size must be an integer >= 2, got {size!r}")
        if not math.isfinite(unscaled_move_cost) or unscaled_move_cost < 0:
            raise ValueError(f"unscaled_move_cost must be finite and >= 0, got {unscaled_move_cost!r}")
        if kwargs.get("max_episode_steps") is not None:
            raise ValueError("deep_sea episodes always last `size` steps; max_episode_steps cannot be set")
        self.size = int(size)
        self.obs_dim = self.size * self.size
        self.deterministic = bool(deterministic)
        self.unscaled_move_cost = float(unscaled_move_cost)
        # never truncated: every episode terminates after `size` steps
        kwargs["max_episode_steps"] = self.size + 1
        super().__init__(num_envs=num_envs, **kwargs)
        if action_mapping is None:
            mapping = bsuite_action_mapping(self.size, mapping_seed)
        else:
            mapping = np.asarray(
                action_mapping.cpu() if isinstance(action_mapping, torch.Tensor) else action_mapping
            )
            if mapping.shape != (self.size, self.size) or not np.isin(mapping, (0, 1)).all():
                raise ValueError(f"action_mapping must be a ({self.size}, {self.size}) array of 0/1")
        #: flattened mapping; one extra cell so that the post-terminal row (``row == size``) indexes safely
        self.action_mapping = torch.as_tensor(mapping.reshape(-1), dtype=torch.int64, device=self.device)
        self._mapping_padded = torch.cat((self.action_mapping, self.action_mapping.new_zeros(self.size)))
        self.total_bad_episodes = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self.denoised_return = torch.zeros(self.num_envs, dtype=self.dtype, device=self.device)
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self._optimal_return = (
            1.0 if self.deterministic else (1 - 1 / self.size) ** (self.size - 1)
        ) - self.unscaled_move_cost

    def _make_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        return spaces.Box(0.0, 1.0, (self.size * self.size,), dtype=np.float32), spaces.Discrete(2)

    # --- dynamics --------------------------------------------------------------------------------------
    def peek_noise(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(uniform, normal)`` numbers, each ``(num_envs,)``, that the next :meth:`step` uses for
        the stochastic variant: "right" succeeds where ``uniform > 1/N``; ``normal`` is the corner noise."""
        u = _hash_uniform_premul(self._key, self._counter, self._idx_mul, self.dtype)
        # Box-Muller on two more uniforms; 1 - u lies in (0, 1], so the log is finite
        z = torch.sqrt(-2.0 * torch.log1p(-u[1])) * torch.cos((2.0 * math.pi) * u[2])
        return u[0], z

    def _dynamics(self, s: torch.Tensor, action: torch.Tensor, act_noise: torch.Tensor | None):
        if act_noise is not None:
            raise ValueError("deep_sea has no action noise (its actions are discrete moves)")
        n = self.size
        row, col, bad = s.unbind(0)
        r_i, c_i = row.long(), col.long()
        right = action == self._mapping_padded[(r_i * n + c_i).clamp(max=n * n + n - 1)]
        treasure = right & (c_i == n - 1)
        reward = torch.where(treasure, 1.0, 0.0).to(s.dtype)
        moves_right = right
        if not self.deterministic:
            u, z = self.peek_noise()
            corner = (r_i == n - 1) & ((c_i == 0) | (c_i == n - 1))
            reward = torch.where(corner, reward + z, reward)
            moves_right = right & (u > 1.0 / n)
        reward = torch.where(right, reward - self.unscaled_move_cost / n, reward)
        new_col = torch.where(moves_right, (col + 1).clamp(max=n - 1), col)
        new_col = torch.where(right, new_col, (col - 1).clamp(min=0))
        new_bad = torch.where(~right & (r_i == c_i), 1.0, bad)
        new_row = row + 1
        term = new_row == n
        self._pending = (term & (new_bad > 0), treasure)
        return torch.stack((new_row, new_col, new_bad)), reward, term

    def _obs_from_state(self, s: torch.Tensor) -> torch.Tensor:
        n = self.size
        row, col = s[0].long(), s[1].long()
        inside = row < n
        idx = torch.where(inside, row * n + col, 0)
        obs = torch.zeros(s.shape[1], n * n, dtype=s.dtype, device=s.device)
        obs.scatter_(1, idx.unsqueeze(1), inside.to(s.dtype).unsqueeze(1))
        return obs

    def step(self, actions: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Step all envs (see :class:`~riskrl.envs.base.TorchVectorEnv`) and update bsuite's counters."""
        stale = self._prev_done.clone()  # envs whose step is an autoreset (NEXT_STEP mode)
        out = super().step(actions)
        if self._pending is not None:
            ended_bad, treasure = self._pending
            if self.autoreset_mode == AutoresetMode.NEXT_STEP:
                ended_bad, treasure = ended_bad & ~stale, treasure & ~stale
            self.total_bad_episodes += ended_bad.long()
            self.denoised_return += treasure.to(self.dtype)
            self._pending = None
        return out

    def bsuite_info(self) -> dict[str, torch.Tensor]:
        """bsuite's logged counters per env: ``total_bad_episodes`` and ``denoised_return``."""
        return {
            "total_bad_episodes": self.total_bad_episodes.clone(),
            "denoised_return": self.denoised_return.clone(),
        }

    @property
    def optimal_return(self) -> float:
        """Expected return of the optimal policy (bsuite's ``_optimal_return``)."""
        return self._optimal_return

    # --- batched model functions (observation space) ---------------------------------------------------
    def _decode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = obs.argmax(-1)
        return idx // self.size, idx % self.size, obs.amax(-1) > 0

    def reward_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Expected reward of the deterministic part: ``+1`` for "right" in the last column, minus the move
        cost for "right" (the stochastic variant's corner noise has mean zero). ``(..., N*N)`` -> ``(...)``."""
        row, col, inside = self._decode(obs)
        right = inside & (action.long() == self.action_mapping[(row * self.size + col)])
        reward = torch.where(right & (col == self.size - 1), 1.0, 0.0).to(obs.dtype)
        return torch.where(right, reward - self.unscaled_move_cost / self.size, reward)

    def termination_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Episode over: ``obs`` is in the last row (``next_obs`` is the all-zero null observation)."""
        row, _, inside = self._decode(obs)
        return inside & (row == self.size - 1)

    def __repr__(self) -> str:
        kind = "deterministic" if self.deterministic else "stochastic"
        return f"DeepSeaVecEnv(size={self.size}, {kind}, num_envs={self.num_envs}, device={self.device})"
