"""Turning batched env steps into true transitions, under either gymnasium autoreset mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor

__all__ = ["add_valid", "terminal_next_obs", "uses_same_step_autoreset"]


def uses_same_step_autoreset(env: Any) -> bool:
    """True for SAME_STEP autoreset, False for NEXT_STEP (the default); ValueError for other modes.

    In NEXT_STEP mode the step after a done only resets that env and is not a transition; in
    SAME_STEP mode the returned obs is already the reset one and ``info["final_obs"]`` holds the
    terminal observations.
    """
    mode = getattr(env, "metadata", {}).get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
    mode = gym.vector.AutoresetMode(mode) if isinstance(mode, str) else mode
    if mode not in (gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP):
        raise ValueError(f"riskrl agents need an env with NEXT_STEP or SAME_STEP autoreset, got {mode}")
    return mode == gym.vector.AutoresetMode.SAME_STEP


def terminal_next_obs(next_obs: Tensor, done: Tensor, info: dict[str, Any]) -> Tensor:
    """``next_obs`` with the terminal observations of SAME_STEP autoreset put back where an episode ended.

    ``info["final_obs"]`` is a tensor for riskrl's envs and a numpy object array for gymnasium's own.
    """
    final = info.get("final_obs")
    if final is None:
        return next_obs
    mask = torch.as_tensor(info.get("_final_obs", done), device=next_obs.device).to(torch.bool)
    if isinstance(final, Tensor):  # riskrl's envs: masked on the device, no host sync
        return torch.where(mask.unsqueeze(-1), final.to(next_obs), next_obs)
    if not bool(done.any()):
        return next_obs
    rows = [
        torch.as_tensor(f, dtype=next_obs.dtype, device=next_obs.device)
        if m and f is not None
        else next_obs[i]
        for i, (f, m) in enumerate(zip(final, mask.tolist()))
    ]
    return torch.stack(rows)


def add_valid(
    add: Callable[..., None],
    valid: Tensor | None,
    obs: Tensor,
    actions: Tensor,
    rewards: Tensor,
    next_obs: Tensor,
    terminated: Tensor,
    done: Tensor,
) -> None:
    """Store the transitions of the envs in ``valid`` through
    ``add(obs, actions, rewards, next_obs, terminated, done, env_index)``: every env at once
    (``env_index=None``) when all are valid, else the valid rows with their env indices.

    ``valid=None`` means every env is valid (SAME_STEP autoreset): no host sync. A mask needs one
    (how many rows to store is decided on the host)."""
    if valid is None or bool(valid.all()):
        add(obs, actions, rewards, next_obs, terminated, done, None)
    elif bool(valid.any()):
        envs = valid.nonzero().squeeze(1)
        add(obs[envs], actions[envs], rewards[envs], next_obs[envs], terminated[envs], done[envs], envs)
