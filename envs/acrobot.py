"""Torch-batched Acrobot-v1 (same dynamics as ``gymnasium.envs.classic_control.AcrobotEnv``, "book" variant)."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from gymnasium import spaces

from .base import TorchVectorEnv

__all__ = ["AcrobotVecEnv"]


def _wrap(x: torch.Tensor, m: float, big_m: float) -> torch.Tensor:
    """Like gymnasium's ``wrap`` (repeated +/- 2pi until in ``[m, M]``), without a Python loop."""
    diff = big_m - m
    k_hi = torch.clamp(torch.ceil((x - big_m) / diff), min=0.0)
    k_lo = torch.clamp(torch.ceil((m - x) / diff), min=0.0)
    return x - k_hi * diff + k_lo * diff


class AcrobotVecEnv(TorchVectorEnv):
    """Acrobot-v1. State ``(theta1, theta2, dtheta1, dtheta2)``; obs
    ``(cos θ1, sin θ1, cos θ2, sin θ2, dθ1, dθ2)``; actions ``{0, 1, 2}`` -> torque ``{-1, 0, +1}``.

    Per-env parameters: ``link_length_1, link_mass_1, link_mass_2, link_com_pos_1, link_com_pos_2,
    link_moi, gravity, dt``. Reward -1 per step, 0 on the terminating step; truncated after 500 steps.
    RK4 integration over one ``dt`` like the reference.
    """

    env_id = "Acrobot-v1"
    state_dim = 4
    obs_dim = 6
    default_max_episode_steps = 500
    param_defaults: ClassVar[dict[str, float]] = {
        "link_length_1": 1.0,
        "link_mass_1": 1.0,
        "link_mass_2": 1.0,
        "link_com_pos_1": 0.5,
        "link_com_pos_2": 0.5,
        "link_moi": 1.0,
        "gravity": 9.8,
        "dt": 0.2,
    }
    # gymnasium's Acrobot has no attribute for gravity (9.8 is hard-coded in its dynamics)
    gym_attributes: ClassVar[dict[str, str]] = {
        "link_length_1": "LINK_LENGTH_1",
        "link_mass_1": "LINK_MASS_1",
        "link_mass_2": "LINK_MASS_2",
        "link_com_pos_1": "LINK_COM_POS_1",
        "link_com_pos_2": "LINK_COM_POS_2",
        "link_moi": "LINK_MOI",
        "dt": "dt",
    }
    reset_low = (-0.1,) * 4
    reset_high = (0.1,) * 4
    MAX_VEL_1: float = 4 * math.pi
    MAX_VEL_2: float = 9 * math.pi

    def _make_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        high = np.array([1.0, 1.0, 1.0, 1.0, self.MAX_VEL_1, self.MAX_VEL_2], dtype=np.float32)
        return spaces.Box(-high, high, dtype=np.float32), spaces.Discrete(3)

    def _initial_state(self, u: torch.Tensor) -> torch.Tensor:
        # The reference draws the initial state in float32.
        return super()._initial_state(u).to(torch.float32).to(u.dtype)

    def _dsdt(self, th1, th2, dth1, dth2, torque):
        p = self.params
        m1, m2, l1 = p["link_mass_1"], p["link_mass_2"], p["link_length_1"]
        lc1, lc2, moi, g = p["link_com_pos_1"], p["link_com_pos_2"], p["link_moi"], p["gravity"]
        cos2, sin2 = torch.cos(th2), torch.sin(th2)
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos2) + moi + moi
        d2 = m2 * (lc2**2 + l1 * lc2 * cos2) + moi
        phi2 = m2 * lc2 * g * torch.cos(th1 + th2 - math.pi / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * dth2**2 * sin2
            - 2 * m2 * l1 * lc2 * dth2 * dth1 * sin2
            + (m1 * lc1 + m2 * l1) * g * torch.cos(th1 - math.pi / 2)
            + phi2
        )
        ddth2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dth1**2 * sin2 - phi2) / (
            m2 * lc2**2 + moi - d2**2 / d1
        )
        ddth1 = -(d2 * ddth2 + phi1) / d1
        return dth1, dth2, ddth1, ddth2

    def _dynamics(self, s, action, act_noise):
        torque = (action - 1).to(s.dtype)
        if act_noise is not None:
            torque = torque + act_noise
        dt = self.params["dt"]
        dt2 = dt / 2.0
        y0 = s.unbind(0)
        k1 = self._dsdt(*y0, torque)
        k2 = self._dsdt(*[y + dt2 * k for y, k in zip(y0, k1)], torque)
        k3 = self._dsdt(*[y + dt2 * k for y, k in zip(y0, k2)], torque)
        k4 = self._dsdt(*[y + dt * k for y, k in zip(y0, k3)], torque)
        ns = [y + dt / 6.0 * (a + 2 * b + 2 * c + d) for y, a, b, c, d in zip(y0, k1, k2, k3, k4)]
        th1 = _wrap(ns[0], -math.pi, math.pi)
        th2 = _wrap(ns[1], -math.pi, math.pi)
        dth1 = ns[2].clamp(-self.MAX_VEL_1, self.MAX_VEL_1)
        dth2 = ns[3].clamp(-self.MAX_VEL_2, self.MAX_VEL_2)
        term = -torch.cos(th1) - torch.cos(th2 + th1) > 1.0
        reward = torch.where(term, 0.0, -1.0).to(s.dtype)
        return torch.stack((th1, th2, dth1, dth2)), reward, term

    def _obs_from_state(self, s: torch.Tensor) -> torch.Tensor:
        th1, th2, dth1, dth2 = s.unbind(0)
        return self._stack_obs(torch.cos(th1), torch.sin(th1), torch.cos(th2), torch.sin(th2), dth1, dth2)

    def termination_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """``-cos θ1 - cos(θ1 + θ2) > 1`` computed from the (cos, sin) features of ``next_obs``."""
        c1, s1, c2, s2 = next_obs[..., 0], next_obs[..., 1], next_obs[..., 2], next_obs[..., 3]
        return -c1 - (c1 * c2 - s1 * s2) > 1.0

    def reward_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """-1 per step, 0 when ``next_obs`` is terminal."""
        return torch.where(self.termination_fn(obs, action, next_obs), 0.0, -1.0).to(next_obs.dtype)
