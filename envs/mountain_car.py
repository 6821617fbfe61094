"""Torch-batched MountainCar-v0 (same dynamics as ``gymnasium.envs.classic_control.MountainCarEnv``)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces

from .base import TorchVectorEnv

__all__ = ["MountainCarVecEnv"]


class MountainCarVecEnv(TorchVectorEnv):
    """MountainCar-v0. State = obs = ``(position, velocity)``; actions ``{0: left, 1: none, 2: right}``.

    Per-env parameters: ``force, gravity, max_speed``. Reward -1 per step; terminates when
    ``position >= 0.5`` and ``velocity >= goal_velocity``; truncated after 200 steps.
    """

    env_id = "MountainCar-v0"
    state_dim = 2
    obs_dim = 2
    default_max_episode_steps = 200
    param_defaults: ClassVar[dict[str, float]] = {"force": 0.001, "gravity": 0.0025, "max_speed": 0.07}
    gym_attributes: ClassVar[dict[str, str]] = {k: k for k in param_defaults}
    reset_low = (-0.6, 0.0)
    reset_high = (-0.4, 0.0)
    min_position: float = -1.2
    max_position: float = 0.6
    goal_position: float = 0.5
    obs_max_speed: float = 0.07

    def __init__(self, *args: Any, goal_velocity: float = 0.0, **kwargs: Any) -> None:
        self.goal_velocity = float(goal_velocity)
        super().__init__(*args, **kwargs)

    def _make_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        low = np.array([self.min_position, -self.obs_max_speed], dtype=np.float32)
        high = np.array([self.max_position, self.obs_max_speed], dtype=np.float32)
        return spaces.Box(low, high, dtype=np.float32), spaces.Discrete(3)

    def _parse_reset_options(self, options):
        low = float(options.get("low", self.reset_low[0]))
        high = float(options.get("high", self.reset_high[0]))
        if low > high:
            raise ValueError(f"reset option low ({low}) > high ({high})")
        return (low, 0.0), (high, 0.0)

    def _control(
        self, action: torch.Tensor, act_noise: torch.Tensor | None, dtype: torch.dtype
    ) -> torch.Tensor:
        return (action - 1).to(dtype) + (act_noise if act_noise is not None else 0.0)

    def _accel(self, control: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        p = self.params
        return control * p["force"] + torch.cos(3 * position) * (-p["gravity"])

    def _dynamics(self, s, action, act_noise):
        position, velocity = s.unbind(0)
        ms = self.params["max_speed"]
        velocity = velocity + self._accel(self._control(action, act_noise, s.dtype), position)
        velocity = torch.minimum(torch.maximum(velocity, -ms), ms)
        position = (position + velocity).clamp(self.min_position, self.max_position)
        velocity = torch.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        term = (position >= self.goal_position) & (velocity >= self.goal_velocity)
        return torch.stack((position, velocity)), self._reward(action, term, s.dtype), term

    def _reward(self, action: torch.Tensor, term: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return torch.full(term.shape, -1.0, dtype=dtype, device=term.device)

    def termination_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Goal reached in ``next_obs``."""
        return (next_obs[..., 0] >= self.goal_position) & (next_obs[..., 1] >= self.goal_velocity)

    def reward_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """-1 per step."""
        return torch.full(next_obs.shape[:-1], -1.0, dtype=next_obs.dtype, device=next_obs.device)
