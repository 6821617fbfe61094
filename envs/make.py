"""``make_vec`` and gymnasium registration of the torch-batched envs."""

from __future__ import annotations

from typing import Any

import gymnasium
import torch

from .acrobot import AcrobotVecEnv
from .base import TorchVectorEnv
from .cartpole import CartPoleVecEnv
from .gym_adapter import GymnasiumVecAdapter
from .mountain_car import MountainCarVecEnv
from .mountain_car_continuous import MountainCarContinuousVecEnv
from .pendulum import PendulumVecEnv

__all__ = ["ENV_IDS", "NAMESPACE", "make_vec", "register_envs"]

NAMESPACE = "riskrl"
#: gymnasium id -> torch-batched class
ENV_IDS: dict[str, type[TorchVectorEnv]] = {
    cls.env_id: cls
    for cls in (CartPoleVecEnv, AcrobotVecEnv, MountainCarVecEnv, MountainCarContinuousVecEnv, PendulumVecEnv)
}


def make_vec(
    env_id: str, num_envs: int = 1, device: str | torch.device = "cpu", **kwargs: Any
) -> TorchVectorEnv | GymnasiumVecAdapter:
    """Batched env for ``env_id``: ours for the five classic-control ids (``"CartPole-v1"`` or
    ``"riskrl/CartPole-v1"``), otherwise gymnasium's sync vector env behind :class:`GymnasiumVecAdapter`.
    ``kwargs`` go to the constructor (physical parameters, ``dtype``, ``autoreset_mode``, ...).
    """
    name = env_id[len(NAMESPACE) + 1 :] if env_id.startswith(NAMESPACE + "/") else env_id
    if name in ENV_IDS:
        return ENV_IDS[name](num_envs=num_envs, device=device, **kwargs)
    if env_id.startswith(NAMESPACE + "/"):
        raise ValueError(f"unknown riskrl env id {env_id!r}; available: {sorted(ENV_IDS)}")
    try:
        gymnasium.spec(env_id)
    except gymnasium.error.Error as err:
        raise ValueError(
            f"unknown env id {env_id!r}: not a riskrl torch env ({sorted(ENV_IDS)}) nor a registered gymnasium env"
        ) from err
    return GymnasiumVecAdapter(env_id, num_envs=num_envs, device=device, **kwargs)


def _entry_point(cls: type[TorchVectorEnv]):
    def create(num_envs: int = 1, **kwargs: Any) -> TorchVectorEnv:
        kwargs.pop("render_mode", None)
        return cls(num_envs=num_envs, **kwargs)

    create.__name__ = f"make_{cls.__name__}"
    return create


def register_envs() -> None:
    """Register ``riskrl/<id>`` with gymnasium (``vector_entry_point`` only); idempotent."""
    for name, cls in ENV_IDS.items():
        full = f"{NAMESPACE}/{name}"
        if full in gymnasium.registry:
            continue
        gymnasium.register(
            id=full,
            vector_entry_point=_entry_point(cls),
            max_episode_steps=cls.default_max_episode_steps,
        )
