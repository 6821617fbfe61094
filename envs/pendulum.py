"""Torch-batched Pendulum-v1 (same dynamics as ``gymnasium.envs.classic_control.PendulumEnv``)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces

from .base import TorchVectorEnv, angle_normalize

__all__ = ["PendulumVecEnv"]


class PendulumVecEnv(TorchVectorEnv):
    """Pendulum-v1. State ``(theta, theta_dot)``; obs ``(cos θ, sin θ, θ_dot)``; action torque ``(N, 1)``
    clipped to ``[-2, 2]``.

    Per-env parameters: ``g, m, l, dt, max_speed``. Reward ``-(angle_normalize(θ)² + 0.1 θ_dot² +
    0.001 u²)`` of the pre-step state; never terminates; truncated after 200 steps.
    """

    env_id = "Pendulum-v1"
    state_dim = 2
    obs_dim = 3
    default_max_episode_steps = 200
    param_defaults: ClassVar[dict[str, float]] = {"g": 10.0, "m": 1.0, "l": 1.0, "dt": 0.05, "max_speed": 8.0}
    gym_attributes: ClassVar[dict[str, str]] = {k: k for k in param_defaults}
    reset_low = (-math.pi, -1.0)
    reset_high = (math.pi, 1.0)
    max_torque: float = 2.0
    obs_max_speed: float = 8.0

    def _make_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        high = np.array([1.0, 1.0, self.obs_max_speed], dtype=np.float32)
        act = spaces.Box(-self.max_torque, self.max_torque, shape=(1,), dtype=np.float32)
        return spaces.Box(-high, high, dtype=np.float32), act

    def _parse_reset_options(self, options: dict[str, Any]):
        x = float(options.get("x_init", math.pi))
        y = float(options.get("y_init", 1.0))
        return (-x, -y), (x, y)

    def _dynamics(self, s, action, act_noise):
        p = self.params
        th, thdot = s.unbind(0)
        u = action[:, 0]
        if act_noise is not None:
            u = u + act_noise
        # The reference clips a float32 action and (NumPy 2 promotion) evaluates the torque terms in float32.
        u = u.clamp(-self.max_torque, self.max_torque).to(torch.float32)
        costs = angle_normalize(th).square() + 0.1 * thdot.square() + (0.001 * u.square()).to(th.dtype)
        g, m, ln, dt, ms = p["g"], p["m"], p["l"], p["dt"], p["max_speed"]
        torque_acc = ((3.0 / (m * ln**2)).to(torch.float32) * u).to(th.dtype)
        newthdot = thdot + (3 * g / (2 * ln) * torch.sin(th) + torque_acc) * dt
        newthdot = torch.minimum(torch.maximum(newthdot, -ms), ms)
        newth = th + newthdot * dt
        term = torch.zeros_like(th, dtype=torch.bool)
        return torch.stack((newth, newthdot)), -costs, term

    def _render_extras(self, i: int) -> dict[str, Any]:
        # gymnasium draws the last (clipped, float32) torque as an arrow; none right after a reset
        if self._last_action is None:
            return {"last_u": None}
        u = np.float32(self._last_action[i, 0].item())
        return {"last_u": np.clip(u, -self.max_torque, self.max_torque)}

    def _obs_from_state(self, s: torch.Tensor) -> torch.Tensor:
        th, thdot = s.unbind(0)
        return self._stack_obs(torch.cos(th), torch.sin(th), thdot)

    def reward_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Reward from the CURRENT obs: θ = atan2(sin, cos), torque clipped to ``[-2, 2]``."""
        th = torch.atan2(obs[..., 1], obs[..., 0])
        thdot = obs[..., 2]
        u = action[..., 0].to(obs.dtype).clamp(-self.max_torque, self.max_torque)
        return -(th.square() + 0.1 * thdot.square() + 0.001 * u.square())

    def termination_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Pendulum never terminates."""
        return torch.zeros(next_obs.shape[:-1], dtype=torch.bool, device=next_obs.device)
