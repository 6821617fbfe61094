"""``make_vec`` and gymnasium registration of the torch-batched envs."""

from __future__ import annotations

from typing import Any

import gymnasium
import torch

from .acrobot import AcrobotVecEnv
from .base import TorchVectorEnv
from .cartpole import CartPoleVecEnv
from .deep_sea import DeepSeaVecEnv
from .gym_adapter import GymnasiumVecAdapter
from .mountain_car import MountainCarVecEnv
from .mountain_car_continuous import MountainCarContinuousVecEnv
from .numpy_wrapper import TorchToNumpy
from .pendulum import PendulumVecEnv
from .single import SINGLE_ENVS

__all__ = ["ENV_IDS", "NAMESPACE", "make_vec", "register_envs"]

NAMESPACE = "riskrl"
#: gymnasium id -> torch-batched class
ENV_IDS: dict[str, type[TorchVectorEnv]] = {
    cls.env_id: cls
    for cls in (CartPoleVecEnv, AcrobotVecEnv, MountainCarVecEnv, MountainCarContinuousVecEnv, PendulumVecEnv)
}


def make_vec(
    env_id: str,
    num_envs: int = 1,
    device: str | torch.device = "cpu",
    array: str = "torch",
    **kwargs: Any,
) -> TorchVectorEnv | GymnasiumVecAdapter | TorchToNumpy:
    """Batched env for ``env_id``: ours for the five classic-control ids (``"CartPole-v1"`` or
    ``"riskrl/CartPole-v1"``), otherwise gymnasium's sync vector env behind :class:`GymnasiumVecAdapter`.

    ``kwargs`` go to the constructor (physical parameters, ``dtype``, ``autoreset_mode``,
    ``max_episode_steps``, ``episode_statistics``, ``render_mode``, ...). ``array="numpy"`` returns the env
    wrapped in :class:`TorchToNumpy` (numpy in and out), the form gymnasium's vector wrappers
    (``RecordEpisodeStatistics``, ``NormalizeObservation``, ``NormalizeReward``, ...) work on.
    """
    if array not in ("torch", "numpy"):
        raise ValueError(f'array must be "torch" or "numpy", got {array!r}')
    name = env_id[len(NAMESPACE) + 1 :] if env_id.startswith(NAMESPACE + "/") else env_id
    if name in ENV_IDS:
        env: Any = ENV_IDS[name](num_envs=num_envs, device=device, **kwargs)
    elif name in ("deep_sea", "deep_sea_stochastic"):  # bsuite's probe: make_vec("deep_sea", size=20)
        kwargs.setdefault("deterministic", name == "deep_sea")
        env = DeepSeaVecEnv(num_envs=num_envs, device=device, **kwargs)
    elif env_id.startswith(NAMESPACE + "/"):
        raise ValueError(f"unknown riskrl env id {env_id!r}; available: {sorted(ENV_IDS)}")
    else:
        try:
            gymnasium.spec(env_id)
        except gymnasium.error.DeprecatedEnv as err:
            raise ValueError(f"{env_id!r}: {err}") from err  # gymnasium names the version to use
        except gymnasium.error.Error as err:
            raise ValueError(
                f"unknown env id {env_id!r}: not a riskrl torch env ({sorted(ENV_IDS)}) nor a registered "
                f"gymnasium env ({err})"
            ) from err
        env = GymnasiumVecAdapter(env_id, num_envs=num_envs, device=device, **kwargs)
    return TorchToNumpy(env) if array == "numpy" else env


def _vector_entry_point(cls: type[TorchVectorEnv]):
    def create(num_envs: int = 1, **kwargs: Any) -> TorchVectorEnv:
        return cls(num_envs=num_envs, **kwargs)

    create.__name__ = f"make_{cls.__name__}"
    return create


def register_envs() -> None:
    """Register ``riskrl/<id>`` with gymnasium, idempotently: ``gymnasium.make`` gives the single env
    (:mod:`riskrl.envs.single`), ``gymnasium.make_vec`` the torch-batched one."""
    for name, cls in ENV_IDS.items():
        full = f"{NAMESPACE}/{name}"
        if full in gymnasium.registry:
            continue
        ref = gymnasium.spec(name)
        gymnasium.register(
            id=full,
            entry_point=SINGLE_ENVS[cls],
            vector_entry_point=_vector_entry_point(cls),
            max_episode_steps=cls.default_max_episode_steps,
            reward_threshold=ref.reward_threshold,
        )
