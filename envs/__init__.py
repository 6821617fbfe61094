"""Torch-batched gymnasium environments (installed as ``riskrl.envs``).

``make_vec(env_id, num_envs, device=..., **params)`` returns a :class:`TorchVectorEnv` for CartPole-v1,
Acrobot-v1, MountainCar-v0, MountainCarContinuous-v0 and Pendulum-v1, and wraps any other gymnasium id
with :class:`GymnasiumVecAdapter`; ``array="numpy"`` adds :class:`TorchToNumpy` for gymnasium's vector
wrappers. :class:`SB3VecEnv` exposes a batched env to stable-baselines3; :func:`from_gym_env` builds the
batched env that reproduces a configured gymnasium env instance. Importing this package registers
``riskrl/<id>`` with gymnasium: ``gymnasium.make`` gives a single env, ``gymnasium.make_vec`` the batched one.
"""

from .acrobot import AcrobotVecEnv
from .base import TorchVectorEnv
from .cartpole import CartPoleVecEnv
from .configured import batched_settings, from_gym_env
from .deep_sea import DeepSeaVecEnv
from .gym_adapter import GymnasiumVecAdapter
from .make import ENV_IDS, make_vec, register_envs
from .mountain_car import MountainCarVecEnv
from .mountain_car_continuous import MountainCarContinuousVecEnv
from .numpy_wrapper import TorchToNumpy
from .pendulum import PendulumVecEnv
from .perturbation import Perturbation
from .single import TorchSingleEnv

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
    "DeepSeaVecEnv",
    "GymnasiumVecAdapter",
    "MountainCarContinuousVecEnv",
    "MountainCarVecEnv",
    "PendulumVecEnv",
    "Perturbation",
    "SB3VecEnv",
    "TorchSingleEnv",
    "TorchToNumpy",
    "TorchVectorEnv",
    "batched_settings",
    "from_gym_env",
    "make_vec",
    "register_envs",
]
