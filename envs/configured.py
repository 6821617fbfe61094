"""Batched envs for configured gymnasium env instances: the settings are honoured, never dropped.

``from_gym_env(env, num_envs)`` answers "train on THAT env": a gymnasium classic-control env (or a
``riskrl/...`` single env) whose only wrappers are ``gymnasium.make``'s standard ones is rebuilt as
riskrl's torch-batched env with the same time limit (``TimeLimit``'s ``max_episode_steps``) and physical
parameters (``gymnasium.make("Pendulum-v1", g=2.0)``, or attributes changed after ``make``). Anything the
batched env cannot reproduce (another wrapper such as ``TransformReward``, an attribute without a
counterpart such as CartPole's ``sutton_barto_reward``, another env) runs the instance itself through
:meth:`GymnasiumVecAdapter.from_env` (one env); with ``num_envs > 1`` that is impossible and a
``ValueError`` says why.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.envs.registration import load_env_creator
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit

from .base import TorchVectorEnv
from .gym_adapter import GymnasiumVecAdapter
from .make import ENV_IDS, NAMESPACE
from .single import TorchSingleEnv

__all__ = ["batched_settings", "from_gym_env"]

#: wrappers that gymnasium.make adds and that change nothing the batched env does not do itself
_STANDARD_WRAPPERS = (TimeLimit, OrderEnforcing, PassiveEnvChecker)
#: attributes of gymnasium's reference envs that do not affect the dynamics, rewards or terminations
_IGNORED = {
    "render_mode",
    "screen",
    "screen_width",
    "screen_height",
    "screen_dim",
    "SCREEN_DIM",
    "clock",
    "isopen",
    "surf",
    "state",
    "last_u",
    "steps_beyond_terminated",
    "_np_random",
    "_np_random_seed",
    "spec",
    "metadata",
    "domain_fig",
}
_NO_LIMIT = 2**31 - 1


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):
        return a is b


def batched_settings(env: gymnasium.Env) -> tuple[type[TorchVectorEnv], dict[str, Any]] | str:
    """``(batched class, constructor kwargs)`` that reproduce ``env``, or the reason why none does."""
    max_steps: int | None = None
    e: Any = env
    while isinstance(e, gymnasium.Wrapper):
        if not isinstance(e, _STANDARD_WRAPPERS):
            return f"it is wrapped in {type(e).__name__}"
        if isinstance(e, TimeLimit) and max_steps is None:
            max_steps = int(e._max_episode_steps)
        e = e.env
    base = env.unwrapped
    kwargs: dict[str, Any] = {"max_episode_steps": max_steps or _NO_LIMIT}
    if isinstance(base, TorchSingleEnv):
        venv = base.vec_env
        for group in (venv.params, venv.noise):
            kwargs.update({k: float(v[0]) for k, v in group.items()})
        kwargs["dtype"] = venv.dtype
        if hasattr(venv, "goal_velocity"):
            kwargs["goal_velocity"] = venv.goal_velocity
        return type(venv), kwargs

    spec = base.spec or env.spec
    env_id = spec.id.removeprefix(NAMESPACE + "/") if spec is not None else None
    cls = ENV_IDS.get(env_id or "")
    if cls is None:
        return f"{env_id or type(base).__name__} is not one of riskrl's batched envs ({sorted(ENV_IDS)})"
    ref_class = load_env_creator(gymnasium.spec(env_id).entry_point)
    if type(base) is not ref_class:
        return f"its class {type(base).__name__} is not gymnasium's {ref_class.__name__}"
    # mapped parameters: read from the env (instance or class attribute), compared with riskrl's defaults
    for name, attr in cls.gym_attributes.items():
        value = float(getattr(base, attr))
        if value != cls.param_defaults[name]:
            kwargs[name] = value
    # every other setting must be gymnasium's default (or one riskrl's constructor takes)
    ref = ref_class()
    for attr, value in vars(base).items():
        if attr in _IGNORED or attr in cls.gym_attributes.values():
            continue
        if not hasattr(ref, attr) and attr.startswith("_"):
            continue
        default = getattr(ref, attr, None)
        if isinstance(value, gymnasium.Space) or _same(value, default):
            continue
        if attr == "goal_velocity" and "goal_velocity" in cls.__init__.__code__.co_varnames:
            kwargs["goal_velocity"] = float(value)
        elif attr in ("total_mass", "polemass_length", "low", "high"):
            continue  # derived from other attributes: checked below
        else:
            return (
                f"its attribute {attr}={value!r} (default {default!r}) has no counterpart in {cls.__name__}"
            )
    # gymnasium derives these once in __init__; stale values would change its physics, not ours
    if cls.env_id == "CartPole-v1":
        if not (
            math.isclose(base.total_mass, base.masspole + base.masscart, rel_tol=1e-12)
            and math.isclose(base.polemass_length, base.masspole * base.length, rel_tol=1e-12)
        ):
            return "its total_mass / polemass_length are not derived from its masses and length"
    return cls, kwargs


def from_gym_env(
    env: gymnasium.Env,
    num_envs: int = 1,
    device: str | torch.device = "cpu",
    **kwargs: Any,
) -> TorchVectorEnv | GymnasiumVecAdapter:
    """A batched env that behaves as the gymnasium env instance ``env``, settings and wrappers included.

    Args:
        env: a gymnasium ``Env`` (e.g. ``gymnasium.make("CartPole-v1", max_episode_steps=50)``).
        num_envs: batch size of the returned env.
        device: torch device.
        **kwargs: ``autoreset_mode``, ``episode_statistics`` (and batched-env options such as ``compile``).

    Returns riskrl's torch-batched env with ``env``'s time limit and physical parameters when it can
    reproduce ``env`` exactly (see :func:`batched_settings`), otherwise a one-env
    :class:`GymnasiumVecAdapter` over ``env`` itself.

    Raises:
        ValueError: ``num_envs > 1`` and ``env`` cannot be reproduced by a batched env.
    """
    if not isinstance(env, gymnasium.Env):
        raise TypeError(f"env must be a gymnasium.Env, got {type(env)}")
    found = batched_settings(env)
    if not isinstance(found, str):
        cls, ctor = found
        return cls(num_envs=num_envs, device=device, **{**ctor, **kwargs})
    if int(num_envs) != 1:
        raise ValueError(
            f"cannot train {num_envs} copies of the given env: {found}, which riskrl's batched envs cannot "
            "reproduce, and an env instance is a single env. Use num_envs=1 (the instance itself is "
            "stepped, wrappers included) or pass an env id / a riskrl batched env"
        )
    adapter_kwargs = {k: v for k, v in kwargs.items() if k in ("autoreset_mode", "episode_statistics")}
    return GymnasiumVecAdapter.from_env(env, device=device, **adapter_kwargs)
