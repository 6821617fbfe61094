"""Single (non-batched) gymnasium envs over riskrl's dynamics: ``gymnasium.make("riskrl/CartPole-v1")``.

Each class is a plain ``gymnasium.Env`` (numpy observations, python float rewards and bool flags) backed
by a one-env :class:`~riskrl.envs.base.TorchVectorEnv`, so the dynamics, physical parameters and
perturbations are exactly the batched env's. Time limits come from ``gymnasium.make``'s ``TimeLimit``
wrapper (``max_episode_steps``), as for gymnasium's own envs; rendering goes through gymnasium's
classic-control renderer. They pass gymnasium's and stable-baselines3's ``check_env``.
"""

from __future__ import annotations

from typing import Any, ClassVar, SupportsFloat

import gymnasium
import numpy as np
import torch

from .acrobot import AcrobotVecEnv
from .base import TorchVectorEnv
from .cartpole import CartPoleVecEnv
from .mountain_car import MountainCarVecEnv
from .mountain_car_continuous import MountainCarContinuousVecEnv
from .pendulum import PendulumVecEnv
from .render import ClassicControlRenderer

__all__ = [
    "AcrobotEnv",
    "CartPoleEnv",
    "MountainCarContinuousEnv",
    "MountainCarEnv",
    "PendulumEnv",
    "TorchSingleEnv",
]

# The batched env never truncates by itself; gymnasium.make's TimeLimit does (as for gymnasium's envs).
_NO_LIMIT = 2**31 - 1


class TorchSingleEnv(gymnasium.Env):
    """One riskrl env as a ``gymnasium.Env``.

    Args:
        render_mode: ``None``, ``"rgb_array"`` or ``"human"`` (a pygame window, where a display exists).
        dtype: dynamics precision (``torch.float64``, gymnasium's, by default).
        device: torch device of the underlying batched env.
        **params: physical parameters and noise options, as in ``TorchVectorEnv.perturb``.

    The batched env is :attr:`vec_env` (``num_envs=1``); use it to :meth:`perturb` or read ``state``.
    """

    vec_class: ClassVar[type[TorchVectorEnv]]
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["human", "rgb_array"], "render_fps": 50}

    def __init__(
        self,
        render_mode: str | None = None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        **params: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        # a render mode on the batched env makes it keep the last action, which some frames show
        self.vec_env = self.vec_class(
            num_envs=1,
            device=device,
            dtype=dtype,
            max_episode_steps=_NO_LIMIT,
            render_mode=None if render_mode is None else "rgb_array",
            **params,
        )
        self.observation_space = self.vec_env.single_observation_space
        self.action_space = self.vec_env.single_action_space
        self.render_mode = render_mode
        self._renderer: ClassicControlRenderer | None = None
        self._discrete = isinstance(self.action_space, gymnasium.spaces.Discrete)

    @property
    def state(self) -> np.ndarray:
        """The current state (a float64 copy), as gymnasium's reference env's ``state``."""
        return self.vec_env.state[0].detach().cpu().double().numpy()

    @state.setter
    def state(self, value: Any) -> None:
        self.vec_env.state = torch.as_tensor(np.asarray(value, dtype=np.float64)).reshape(1, -1)

    def perturb(self, **params: Any) -> None:
        """Set physical parameters / noise (scalars or ``(low, high)`` ranges), see ``TorchVectorEnv``."""
        self.vec_env.perturb(**params)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset; ``seed`` makes the initial state (and everything after it) reproducible."""
        super().reset(seed=seed)
        obs, _ = self.vec_env.reset(seed=seed, options=options)
        if self.render_mode == "human":
            self.render()
        return obs[0].detach().cpu().numpy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """One step; after ``terminated`` call :meth:`reset` (stepping on autoresets, as a vector env)."""
        a = torch.as_tensor(np.asarray(action))
        a = a.reshape(1) if self._discrete else a.reshape(1, -1)
        obs, reward, terminated, _truncated, _info = self.vec_env.step(a)
        if self.render_mode == "human":
            self.render()
        return obs[0].detach().cpu().numpy(), float(reward[0]), bool(terminated[0]), False, {}

    def render(self) -> np.ndarray | None:
        """A frame from gymnasium's classic-control renderer (``rgb_array``) or a window (``human``)."""
        if self.render_mode is None:
            gymnasium.logger.warn(
                'render() called without a render mode; e.g. gymnasium.make(id, render_mode="rgb_array")'
            )
            return None
        if self._renderer is None:
            self._renderer = ClassicControlRenderer(self.vec_env.env_id, self.render_mode)
        return self._renderer.draw(self.vec_env, 0)

    def close(self) -> None:
        """Close the renderer's window, if any."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class CartPoleEnv(TorchSingleEnv):
    """``riskrl/CartPole-v1`` as a single ``gymnasium.Env``."""

    vec_class = CartPoleVecEnv


class AcrobotEnv(TorchSingleEnv):
    """``riskrl/Acrobot-v1`` as a single ``gymnasium.Env``."""

    vec_class = AcrobotVecEnv
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["human", "rgb_array"], "render_fps": 15}


class MountainCarEnv(TorchSingleEnv):
    """``riskrl/MountainCar-v0`` as a single ``gymnasium.Env``."""

    vec_class = MountainCarVecEnv
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["human", "rgb_array"], "render_fps": 30}


class MountainCarContinuousEnv(TorchSingleEnv):
    """``riskrl/MountainCarContinuous-v0`` as a single ``gymnasium.Env``."""

    vec_class = MountainCarContinuousVecEnv
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["human", "rgb_array"], "render_fps": 30}


class PendulumEnv(TorchSingleEnv):
    """``riskrl/Pendulum-v1`` as a single ``gymnasium.Env``."""

    vec_class = PendulumVecEnv
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["human", "rgb_array"], "render_fps": 30}


#: riskrl's batched class -> its single-env class
SINGLE_ENVS: dict[type[TorchVectorEnv], type[TorchSingleEnv]] = {
    c.vec_class: c for c in (CartPoleEnv, AcrobotEnv, MountainCarEnv, MountainCarContinuousEnv, PendulumEnv)
}
