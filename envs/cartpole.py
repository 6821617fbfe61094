"""Torch-batched CartPole-v1 (same dynamics as ``gymnasium.envs.classic_control.CartPoleEnv``)."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from gymnasium import spaces

from .base import TorchVectorEnv

__all__ = ["CartPoleVecEnv"]


class CartPoleVecEnv(TorchVectorEnv):
    """CartPole-v1. State = obs = ``(x, x_dot, theta, theta_dot)``; actions ``{0: left, 1: right}``.

    Per-env parameters: ``gravity, masscart, masspole, length`` (half pole length), ``force_mag, tau``.
    Reward +1 every step (including the terminating one); terminates when ``|x| > 2.4`` or
    ``|theta| > 12°``; truncated after 500 steps.
    """

    env_id = "CartPole-v1"
    state_dim = 4
    obs_dim = 4
    default_max_episode_steps = 500
    param_defaults: ClassVar[dict[str, float]] = {
        "gravity": 9.8,
        "masscart": 1.0,
        "masspole": 0.1,
        "length": 0.5,
        "force_mag": 10.0,
        "tau": 0.02,
    }
    gym_attributes: ClassVar[dict[str, str]] = {k: k for k in param_defaults}
    reset_low = (-0.05,) * 4
    reset_high = (0.05,) * 4
    x_threshold: float = 2.4
    theta_threshold_radians: float = 12 * 2 * math.pi / 360

    def _make_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        high = np.array(
            [self.x_threshold * 2, np.inf, self.theta_threshold_radians * 2, np.inf], dtype=np.float32
        )
        return spaces.Box(-high, high, dtype=np.float32), spaces.Discrete(2)

    def _dynamics(self, s, action, act_noise):
        p = self.params
        x, x_dot, theta, theta_dot = s.unbind(0)
        fm = p["force_mag"]
        force = torch.where(action == 1, fm, -fm)
        if act_noise is not None:
            force = force + act_noise * fm
        masspole, length = p["masspole"], p["length"]
        total_mass = masspole + p["masscart"]
        polemass_length = masspole * length
        costheta = torch.cos(theta)
        sintheta = torch.sin(theta)
        temp = (force + polemass_length * theta_dot.square() * sintheta) / total_mass
        thetaacc = (p["gravity"] * sintheta - costheta * temp) / (
            length * (4.0 / 3.0 - masspole * costheta.square() / total_mass)
        )
        xacc = temp - polemass_length * thetaacc * costheta / total_mass
        tau = p["tau"]
        nx = x + tau * x_dot
        nth = theta + tau * theta_dot
        next_s = torch.stack((nx, x_dot + tau * xacc, nth, theta_dot + tau * thetaacc))
        term = (nx.abs() > self.x_threshold) | (nth.abs() > self.theta_threshold_radians)
        reward = torch.ones_like(nx)
        return next_s, reward, term

    def reward_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """+1 for every transition (``(..., 4)`` -> ``(...)``)."""
        return torch.ones(next_obs.shape[:-1], dtype=next_obs.dtype, device=next_obs.device)

    def termination_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Cart out of ``[-2.4, 2.4]`` or pole beyond 12° in ``next_obs``."""
        return (next_obs[..., 0].abs() > self.x_threshold) | (
            next_obs[..., 2].abs() > self.theta_threshold_radians
        )
