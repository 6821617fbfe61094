"""A replay buffer that lives on the agent's device and adds whole vectorised steps at once."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """Circular transition storage ``(obs, action, reward, next_obs, terminated)`` on ``device``.

    ``add`` takes a batch of transitions (one per env) and writes them with one indexed copy;
    ``sample`` draws uniformly with the caller's generator, so sampling is reproducible.
    """

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        action_shape: tuple[int, ...] = (),
        action_dtype: torch.dtype = torch.int64,
        device: str | torch.device = "cpu",
    ) -> None:
        if int(capacity) < 1:
            raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.obs = torch.zeros(self.capacity, obs_dim, device=self.device)
        self.next_obs = torch.zeros(self.capacity, obs_dim, device=self.device)
        self.actions = torch.zeros(self.capacity, *action_shape, dtype=action_dtype, device=self.device)
        self.rewards = torch.zeros(self.capacity, device=self.device)
        self.terminated = torch.zeros(self.capacity, device=self.device)
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, terminated: Tensor) -> None:
        """Add ``B`` transitions (leading dimension ``B`` on every argument)."""
        n = obs.shape[0]
        if n > self.capacity:
            raise ValueError(f"cannot add {n} transitions at once to a buffer of capacity {self.capacity}")
        idx = (self.pos + torch.arange(n, device=self.device)) % self.capacity
        self.obs[idx] = obs.to(self.obs.dtype)
        self.next_obs[idx] = next_obs.to(self.obs.dtype)
        self.actions[idx] = action.to(self.actions.dtype).reshape(self.actions[idx].shape)
        self.rewards[idx] = reward.to(self.rewards.dtype)
        self.terminated[idx] = terminated.to(self.terminated.dtype)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """A uniformly drawn batch (with replacement) as a dict of tensors."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = torch.randint(0, self.size, (batch_size,), device=self.device, generator=generator)
        return self._take(idx)

    def all(self) -> dict[str, Tensor]:
        """Every stored transition (in storage order)."""
        return self._take(torch.arange(self.size, device=self.device))

    def _take(self, idx: Tensor) -> dict[str, Tensor]:
        return {
            "obs": self.obs[idx],
            "actions": self.actions[idx],
            "rewards": self.rewards[idx],
            "next_obs": self.next_obs[idx],
            "terminated": self.terminated[idx],
        }

    def state_dict(self) -> dict[str, Any]:
        """Only the filled part is saved."""
        n = self.size
        return {
            "pos": self.pos,
            "size": n,
            "obs": self.obs[:n],
            "next_obs": self.next_obs[:n],
            "actions": self.actions[:n],
            "rewards": self.rewards[:n],
            "terminated": self.terminated[:n],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (into a buffer of at least the same capacity)."""
        n = int(state["size"])
        if n > self.capacity:
            raise ValueError(
                f"saved buffer holds {n} transitions, more than this buffer's capacity {self.capacity}"
            )
        for key in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, key)[:n] = state[key].to(self.device)
        self.size = n
        self.pos = int(state["pos"])
