"""Torch-batched MountainCarContinuous-v0 (same dynamics as gymnasium's ``Continuous_MountainCarEnv``)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from gymnasium import spaces

from .mountain_car import MountainCarVecEnv

__all__ = ["MountainCarContinuousVecEnv"]


class MountainCarContinuousVecEnv(MountainCarVecEnv):
    """MountainCarContinuous-v0. State = obs = ``(position, velocity)``; action ``(N, 1)`` in ``[-1, 1]``
    (clipped for the dynamics).

    Per-env parameters: ``power, gravity, max_speed``. Reward ``100 * terminated - 0.1 * action**2``
    (unclipped action, as the reference); goal ``position >= 0.45``; truncated after 999 steps. Like the
    reference, the state is stored in float32 precision after every step.
    """

    env_id = "MountainCarContinuous-v0"
    default_max_episode_steps = 999
    param_defaults: ClassVar[dict[str, float]] = {"power": 0.0015, "gravity": 0.0025, "max_speed": 0.07}
    # gymnasium's Continuous_MountainCarEnv has no attribute for gravity (0.0025 is hard-coded)
    gym_attributes: ClassVar[dict[str, str]] = {"power": "power", "max_speed": "max_speed"}
    goal_position: float = 0.45
    min_action: float = -1.0
    max_action: float = 1.0
    float32_state = True

    def _make_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        obs_space, _ = super()._make_spaces()
        act = spaces.Box(self.min_action, self.max_action, shape=(1,), dtype=np.float32)
        return obs_space, act

    def _control(self, action, act_noise, dtype):
        a = action[:, 0]
        if act_noise is not None:
            a = a + act_noise
        return a.clamp(self.min_action, self.max_action)

    def _accel(self, control, position):
        p = self.params
        return control * p["power"] - p["gravity"] * torch.cos(3 * position)

    def _reward(self, action, term, dtype):
        return torch.where(term, 100.0, 0.0).to(dtype) - action[:, 0].square() * 0.1

    def reward_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """``100 * goal(next_obs) - 0.1 * action[..., 0]**2``."""
        term = self.termination_fn(obs, action, next_obs)
        return (
            torch.where(term, 100.0, 0.0).to(next_obs.dtype)
            - action[..., 0].to(next_obs.dtype).square() * 0.1
        )
