"""A learnt terminal value ``V(s)`` for model-predictive control: what lies beyond the horizon.

A planner of horizon ``H`` cannot see rewards more than ``H`` steps away: a MountainCar policy
planning 30 steps ahead from the valley never sees the goal and stands still. :class:`TerminalValue`
learns an ensemble ``V(s)`` from the replayed transitions by n-step TD with an expectile loss and
the planner adds ``V(s_H)`` of each particle's last predicted state to that particle's return.

* n-step targets (``ReplayBuffer.sample_n_step``) carry a sparse reward back ``n`` steps per backup,
  so a goal reached a few times propagates to the start states within one retraining.
* The expectile loss (``expectile > 0.5``, as IQL's value loss, Kostrikov et al. 2022) fits an upper
  expectile of the targets, not their mean: the replay data come from exploratory, often random
  behaviour, and the upper expectile estimates what the *best* behaviour seen from a state earned.
* It is an ensemble (member ``i`` serves particle ``i``), so the value's own epistemic spread enters
  the return std that ``risk_tolerance`` acts on, like the dynamics model's.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from riskrl.bayes import BayesMLP, Trainer, copy_buffers, polyak_update

from .buffers import ReplayBuffer

__all__ = ["TerminalValue"]


class TerminalValue:
    """An ensemble state-value function trained by n-step expectile TD on a replay buffer.

    Args:
        obs_dim: observation size.
        hidden, activation, n_members: the ensemble MLP.
        gamma: discount of the value (beyond the planning horizon).
        n_step: TD backup length (episode-aware, from the buffer's links).
        expectile: in ``[0.5, 1)``; ``0.5`` is plain mean-squared TD, larger values lean towards the
            best returns seen in the data.
        lr, batch_size, steps: Adam learning rate (one :class:`~riskrl.bayes.Trainer` whose Adam state
            persists across fits), batch size and gradient steps per :meth:`fit`.
        tau: Polyak rate of the target network, per gradient step (:func:`~riskrl.bayes.polyak_update`).
        device: where the networks live.
    """

    def __init__(
        self,
        obs_dim: int,
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "silu",
        n_members: int = 5,
        gamma: float = 0.99,
        n_step: int = 10,
        expectile: float = 0.8,
        lr: float = 1e-3,
        batch_size: int = 256,
        steps: int = 500,
        tau: float = 0.02,
        device: str | torch.device = "cpu",
    ) -> None:
        if not 0.5 <= float(expectile) < 1.0:
            raise ValueError(f"value expectile must be in [0.5, 1), got {expectile}")
        if not 0.0 < float(gamma) <= 1.0:
            raise ValueError(f"value gamma must be in (0, 1], got {gamma}")
        if not 0.0 < float(tau) <= 1.0:
            raise ValueError(f"value tau must be in (0, 1], got {tau}")
        for name, value in (("n_step", n_step), ("batch_size", batch_size), ("steps", steps)):
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ValueError(f"value {name} must be an integer >= 1, got {value!r}")
        self.gamma, self.n_step, self.expectile = float(gamma), int(n_step), float(expectile)
        self.batch_size, self.steps, self.tau = int(batch_size), int(steps), float(tau)
        self.n_members = int(n_members)
        self.net = BayesMLP(
            obs_dim,
            1,
            hidden=tuple(hidden),
            family="ensemble",
            activation=activation,
            learn_noise=False,
            n_members=self.n_members,
        ).to(device)
        self.target = copy.deepcopy(self.net)
        self.target.requires_grad_(False)
        self.trainer = Trainer(self.net, lr=lr, batch_size=self.batch_size)  # its Adam persists across fits
        self.last_loss = float("nan")  # mean loss of the last fit

    def particles(self, n: int) -> Any:
        """``n`` value particles (particle ``i`` is member ``i % n_members``): ``obs (n, B, d) -> (n, B)``."""
        values = self.net.particles(n)

        def value(obs: Tensor) -> Tensor:
            return values(obs)[..., 0]

        return value

    def fit(self, buffer: ReplayBuffer, generator: torch.Generator) -> float:
        """``steps`` gradient steps of n-step expectile TD on ``buffer``; returns the mean loss."""
        n = len(buffer)
        if n == 0:
            raise ValueError("cannot fit a terminal value on an empty replay buffer")
        # Inputs are standardised with the data seen so far (targets stay in reward units).
        self.net.x_scaler.fit(buffer.obs[:n])
        copy_buffers(self.target, self.net)  # the target standardises like the net from the first step
        k = self.n_members
        self.trainer.reset_loss()  # summed on the device: no host sync per step
        for _ in range(self.steps):
            batch = buffer.sample_n_step(self.batch_size, self.n_step, self.gamma, generator=generator)
            with torch.no_grad():
                v_next = self.target.particles(k)(batch["next_obs"])[..., 0]  # (K, B)
                target = batch["rewards"] + batch["discounts"] * (1.0 - batch["terminated"]) * v_next
            diff = target - self.net.particles(k)(batch["obs"])[..., 0]
            weight = torch.where(diff > 0, self.expectile, 1.0 - self.expectile)
            self.trainer.step((weight * diff.square()).mean(1).sum())
            polyak_update(self.target, self.net, self.tau)
        self.last_loss = float(self.trainer.mean_loss())
        return self.last_loss

    def state_dict(self) -> dict[str, Any]:
        """The net, the target and the Adam state (checkpoint layout)."""
        return {
            "net": dict(self.net.state_dict()),
            "target": dict(self.target.state_dict()),
            "optimizer": self.trainer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.net.load_state_dict(state["net"])
        self.target.load_state_dict(state["target"])
        self.trainer.load_state_dict(state["optimizer"])
