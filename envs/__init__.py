"""Torch-batched gymnasium environments (installed as ``riskrl.envs``).

``make_vec(env_id, num_envs, device=..., **params)`` returns a :class:`TorchVectorEnv` for CartPole-v1,
Acrobot-v1, MountainCar-v0, MountainCarContinuous-v0 and Pendulum-v1, and wraps any other gymnasium id
with :class:`GymnasiumVecAdapter`. :class:`SB3VecEnv` exposes a batched env to stable-baselines3.
Importing this package registers ``riskrl/<id>`` with gymnasium.
"""

from .acrobot import AcrobotVecEnv
from .base import TorchVectorEnv
from .cartpole import CartPoleVecEnv
from .gym_adapter import GymnasiumVecAdapter
from .make import ENV_IDS, make_vec, register_envs
from .mountain_car import MountainCarVecEnv
from .mountain_car_continuous import MountainCarContinuousVecEnv
from .pendulum import PendulumVecEnv

register_envs()


def __getattr__(name: str):
    # stable-baselines3 is imported lazily: it is slow to import and only the SB3 adapter needs it.
    if name == "SB3VecEnv":
        from .sb3 import SB3VecEnv

        return SB3VecEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENV_IDS",
    "AcrobotVecEnv",
    "CartPoleVecEnv",
    "GymnasiumVecAdapter",
    "MountainCarContinuousVecEnv",
    "MountainCarVecEnv",
    "PendulumVecEnv",
    "SB3VecEnv",
    "TorchVectorEnv",
    "make_vec",
    "register_envs",
]
