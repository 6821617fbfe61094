"""Which steps of a batched env are real transitions, under either gymnasium autoreset mode.

gymnasium's vector envs restart finished episodes in one of two ways:

* ``NEXT_STEP`` (the default): the step *after* a done only resets that env (its action is ignored,
  reward 0, no termination); that step is not part of any episode.
* ``SAME_STEP``: the step that ends an episode already returns the reset observation, and
  ``info["final_obs"]`` holds the terminal one; every step is a transition.

:class:`AutoresetMask` is the one place that bookkeeping lives; training (BayesDQN, BayesMPC),
:func:`riskrl.evaluate` and :func:`riskrl.data.collect` all use it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import Tensor

__all__ = ["AutoresetMask", "terminal_next_obs", "uses_same_step_autoreset"]


def uses_same_step_autoreset(env: Any) -> bool:
    """True for SAME_STEP autoreset, False for NEXT_STEP (the default); ValueError for other modes."""
    mode = getattr(env, "metadata", {}).get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
    mode = gym.vector.AutoresetMode(mode) if isinstance(mode, str) else mode
    if mode not in (gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP):
        raise ValueError(f"riskrl needs an env with NEXT_STEP or SAME_STEP autoreset, got {mode}")
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


class AutoresetMask:
    """Tracks, per env of a batched env, whether its latest step was a real transition.

    Call :meth:`update` with each step's ``done = terminated | truncated``; read :meth:`valid` (or
    :attr:`live`) for the step just taken. All on the env's device, no host synchronisation.

    Args:
        env: the batched env (its ``metadata["autoreset_mode"]`` decides the mode).
        num_envs: its number of envs.
        device: where the mask lives.
    """

    def __init__(self, env: Any, num_envs: int, device: str | torch.device) -> None:
        self.same_step = uses_same_step_autoreset(env)
        # NEXT_STEP: envs whose previous step ended an episode, so their next step is only a reset.
        self.pending = torch.zeros(int(num_envs), dtype=torch.bool, device=device)

    @property
    def live(self) -> Tensor:
        """``(num_envs,)`` bool: True where the step just taken belongs to an episode."""
        return ~self.pending

    def valid(self) -> Tensor | None:
        """Like :attr:`live`, but ``None`` under SAME_STEP autoreset (every step is a transition),
        so callers can skip the masking altogether."""
        return None if self.same_step else ~self.pending

    def update(self, done: Tensor) -> None:
        """Record the step's ``done``: under NEXT_STEP the next step of those envs is a reset step."""
        if not self.same_step:
            self.pending = done & ~self.pending

    def real_next_obs(self, next_obs: Tensor, done: Tensor, info: dict[str, Any]) -> Tensor:
        """The transitions' next observations: under SAME_STEP the terminal ones where episodes ended."""
        return terminal_next_obs(next_obs, done, info) if self.same_step else next_obs
