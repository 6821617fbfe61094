"""A replay buffer that lives on the agent's device and adds whole vectorised steps at once.

With ``n_envs`` given, the buffer also links every transition to the next one of the same env and
episode, so :meth:`ReplayBuffer.sample_n_step` can build n-step returns at sampling time with ``n``
batched gathers (no per-env queues, no Python loop over samples).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """Circular transition storage ``(obs, action, reward, next_obs, terminated)`` on ``device``.

    ``add`` takes a batch of transitions (one per env) and writes them with one indexed copy;
    :meth:`sample_n_step` draws uniformly with the caller's generator, so sampling is reproducible.

    Args:
        capacity: transitions kept (oldest overwritten first).
        obs_dim, action_shape, action_dtype, device: storage layout.
        n_envs: number of env slots feeding the buffer. When given, ``add`` must also get ``done``
            (the episode ended: terminated or truncated) and, for a subset of envs, ``env_index``;
            the buffer then keeps episode links for :meth:`sample_n_step`.
    """

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        action_shape: tuple[int, ...] = (),
        action_dtype: torch.dtype = torch.int64,
        device: str | torch.device = "cpu",
        n_envs: int | None = None,
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
        self.n_envs = None if n_envs is None else int(n_envs)
        if self.n_envs is not None:
            if self.n_envs < 1:
                raise ValueError(f"n_envs must be >= 1, got {n_envs}")
            # next_index[i]: row of the same env's next transition in the same episode (-1: none yet
            # or the episode ended at i). write_id tells a live row from one since overwritten.
            self.next_index = torch.full((self.capacity,), -1, dtype=torch.int64, device=self.device)
            self.write_id = torch.full((self.capacity,), -1, dtype=torch.int64, device=self.device)
            self.last_row = torch.full((self.n_envs,), -1, dtype=torch.int64, device=self.device)
            self.last_write_id = torch.full((self.n_envs,), -1, dtype=torch.int64, device=self.device)
            self.n_written = 0

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: Tensor,
        action: Tensor,
        reward: Tensor,
        next_obs: Tensor,
        terminated: Tensor,
        done: Tensor | None = None,
        env_index: Tensor | None = None,
    ) -> Tensor:
        """Add ``B`` transitions (leading dimension ``B`` on every argument); returns the ``B`` rows
        written.

        With episode links (``n_envs``), ``done (B,)`` marks transitions that ended their episode and
        ``env_index (B,)`` names each row's env slot (default: ``arange(n_envs)``, all envs at once).
        """
        n = obs.shape[0]
        if n > self.capacity:
            raise ValueError(f"cannot add {n} transitions at once to a buffer of capacity {self.capacity}")
        idx = (self.pos + torch.arange(n, device=self.device)) % self.capacity
        if self.n_envs is not None:
            self._link(idx, done, env_index)
        self.obs[idx] = obs.to(self.obs.dtype)
        self.next_obs[idx] = next_obs.to(self.obs.dtype)
        self.actions[idx] = action.to(self.actions.dtype).reshape(self.actions[idx].shape)
        self.rewards[idx] = reward.to(self.rewards.dtype)
        self.terminated[idx] = terminated.to(self.terminated.dtype)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        return idx

    def _link(self, idx: Tensor, done: Tensor | None, env_index: Tensor | None) -> None:
        n = idx.shape[0]
        if done is None:
            raise ValueError("a buffer with episode links (n_envs) needs done= on every add")
        if env_index is None:
            if n != self.n_envs:
                raise ValueError(f"adding {n} transitions to a buffer of {self.n_envs} envs needs env_index=")
            env_index = torch.arange(n, device=self.device)
        env_index = env_index.to(device=self.device, dtype=torch.int64)
        ids = self.n_written + torch.arange(n, device=self.device)
        prev = self.last_row[env_index]
        live = prev >= 0
        live = live & (self.write_id[prev.clamp(min=0)] == self.last_write_id[env_index])
        live = live & ((prev - self.pos) % self.capacity >= n)  # not being overwritten right now
        self.next_index[idx] = -1  # rows being overwritten lose their old link
        self.next_index[prev[live]] = idx[live]
        self.write_id[idx] = ids
        ended = done.to(device=self.device, dtype=torch.bool).reshape(n)
        self.last_row[env_index] = torch.where(ended, torch.full_like(idx, -1), idx)
        self.last_write_id[env_index] = ids
        self.n_written += n

    def _draw(self, batch_size: int, generator: torch.Generator | None) -> Tensor:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        return torch.randint(0, self.size, (batch_size,), device=self.device, generator=generator)

    def sample_n_step(
        self, batch_size: int, n_step: int, gamma: float, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """A uniform batch of ``n_step``-step transitions (needs episode links, ``n_envs``).

        For a drawn transition ``t``, ``rewards`` is ``sum_{k<m} gamma^k r_{t+k}`` over the ``m <= n_step``
        steps that follow in the same episode and are stored already; ``next_obs``/``terminated`` are
        those of step ``t+m-1``, and ``discounts`` is ``gamma^m``, so the TD target is
        ``rewards + discounts * (1 - terminated) * V(next_obs)``. The sum stops early at episode
        ends (terminated or truncated), so a truncated episode still bootstraps.
        """
        if self.n_envs is None:
            raise ValueError("sample_n_step needs a buffer built with n_envs (episode links)")
        if int(n_step) < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        first = self._draw(batch_size, generator)
        rewards = self.rewards[first].clone()
        discounts = torch.full_like(rewards, float(gamma))
        cur = first
        for _ in range(int(n_step) - 1):
            nxt = self.next_index[cur]
            ok = nxt >= 0  # no early exit: a host sync per step would cost more on a GPU
            nxt = torch.where(ok, nxt, cur)
            rewards = rewards + torch.where(ok, discounts * self.rewards[nxt], torch.zeros_like(rewards))
            discounts = torch.where(ok, discounts * gamma, discounts)
            cur = nxt
        batch = self._take(first)
        batch["rewards"] = rewards
        batch["next_obs"] = self.next_obs[cur]
        batch["terminated"] = self.terminated[cur]
        batch["discounts"] = discounts
        return batch

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
        state: dict[str, Any] = {
            "pos": self.pos,
            "size": n,
            "obs": self.obs[:n],
            "next_obs": self.next_obs[:n],
            "actions": self.actions[:n],
            "rewards": self.rewards[:n],
            "terminated": self.terminated[:n],
        }
        if self.n_envs is not None:
            state.update(
                next_index=self.next_index[:n],
                write_id=self.write_id[:n],
                last_row=self.last_row,
                last_write_id=self.last_write_id,
                n_written=str(self.n_written),
            )
        return state

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
        if self.n_envs is not None:
            links = ("next_index", "write_id", "last_row", "last_write_id", "n_written")
            if all(state.get(k) is not None for k in links) and state["last_row"].shape[0] == self.n_envs:
                self.next_index[:n] = state["next_index"].to(self.device)
                self.write_id[:n] = state["write_id"].to(self.device)
                self.last_row.copy_(state["last_row"].to(self.device))
                self.last_write_id.copy_(state["last_write_id"].to(self.device))
                self.n_written = int(state["n_written"])
            else:  # saved without links or for another number of envs: every episode starts anew
                self.next_index.fill_(-1)
                self.last_row.fill_(-1)
                self.n_written = n
