"""Turning batched env steps into true transitions, under either gymnasium autoreset mode."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

__all__ = ["add_valid"]


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
