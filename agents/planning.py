"""Cross-entropy method (CEM) over action sequences, batched over observations and candidates.

The planner knows nothing about models: it asks a callback for the predicted returns of a batch
of candidate action sequences under ``P`` particles, ``evaluate(actions) -> returns (P, B, C)``,
and scores each candidate by the risk-adjusted ``mean - risk_tolerance * std`` across particles
(:func:`riskrl.risk.lcb`). Every CEM iteration is one call of ``evaluate`` for all ``B``
observations and ``C`` candidates at once; the only Python loop is over iterations.

* Box actions: a diagonal Gaussian per (observation, time step, action dim), samples clipped to the
  action bounds; elites refit mean and std (with momentum ``alpha``).
* Discrete actions: a categorical distribution per (observation, time step); the elites' action
  frequencies refit the probabilities (with momentum ``alpha``). With ``iterations=1`` this is
  plain random shooting.

The planner returns the best candidate it scored (over all iterations), its predicted return mean
and std across particles, and the refitted distribution mean for warm-starting the next step
(shifted by one step with :meth:`CEMPlanner.shift`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from riskrl.risk import lcb

__all__ = ["CEMPlanner", "PlanResult"]


@dataclass(frozen=True)
class PlanResult:
    """What one planning call returns, all batched over ``B`` observations.

    ``actions``: the chosen sequences, ``(B, H, act_dim)`` float (Box) or ``(B, H)`` int64 (Discrete);
    ``mean``/``std``: their predicted return across particles ``(B,)``; ``score``: ``mean - k * std``;
    ``dist``: the final sampling distribution (Box: Gaussian means ``(B, H, act_dim)``; Discrete:
    probabilities ``(B, H, n)``), to warm-start the next call after :meth:`CEMPlanner.shift`.
    """

    actions: Tensor
    mean: Tensor
    std: Tensor
    score: Tensor
    dist: Tensor


class CEMPlanner:
    """CEM over length-``horizon`` action sequences for a Box or Discrete ``action_space``.

    Args:
        horizon: planning horizon ``H``.
        population: candidates ``C`` per observation and iteration.
        n_elites: candidates kept to refit the distribution.
        iterations: CEM iterations per planning call.
        alpha: momentum; new = ``alpha * old + (1 - alpha) * elite estimate``.
        init_std: initial Gaussian std as a fraction of the half-range ``(high - low) / 2`` (Box).
        min_std: std floor (fraction of the half-range) so the search never collapses fully (Box).
        keep_elites: this many elites of an iteration are carried over into the next iteration's
            population (replacing fresh samples), so good sequences are not lost to sampling noise
            (iCEM, Pinneri et al. 2020); at most ``min(n_elites, population - 1)``.
        include_mean: Box only: candidate 0 of every iteration is the distribution mean itself
            (clipped to the bounds); on the first iteration that is the previous plan shifted by
            one step, so the warm start is always re-scored, not only sampled around.
    """

    def __init__(
        self,
        action_space: gym.Space,
        horizon: int = 20,
        population: int = 200,
        n_elites: int = 20,
        iterations: int = 4,
        alpha: float = 0.1,
        init_std: float = 0.5,
        min_std: float = 0.02,
        keep_elites: int = 0,
        include_mean: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        for name, value in (("horizon", horizon), ("population", population), ("iterations", iterations)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 1 <= int(n_elites) <= int(population):
            raise ValueError(f"n_elites must be in [1, population={population}], got {n_elites}")
        if not 0.0 <= float(alpha) < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        self.horizon, self.population = int(horizon), int(population)
        self.n_elites, self.iterations = int(n_elites), int(iterations)
        if int(keep_elites) < 0:
            raise ValueError(f"keep_elites must be >= 0, got {keep_elites}")
        self.alpha, self.init_std, self.min_std = float(alpha), float(init_std), float(min_std)
        self.keep_elites = min(int(keep_elites), self.n_elites, self.population - 1)
        self.include_mean = bool(include_mean)
        self.device = torch.device(device)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.n_actions = int(action_space.n)
            self.start = int(action_space.start)
        elif isinstance(action_space, gym.spaces.Box):
            low = np.asarray(action_space.low, dtype=np.float64).ravel()
            high = np.asarray(action_space.high, dtype=np.float64).ravel()
            if not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise ValueError(f"CEM needs finite Box action bounds, got low={low}, high={high}")
            self.act_dim = int(low.size)
            self.low = torch.as_tensor(low, dtype=torch.float32, device=self.device)
            self.high = torch.as_tensor(high, dtype=torch.float32, device=self.device)
            self.mid = (self.low + self.high) / 2
            self.half = (self.high - self.low) / 2
        else:
            raise ValueError(f"CEM plans over Box or Discrete action spaces, got {action_space}")

    # ------------------------------------------------------------------ distributions

    def initial(self, batch: int) -> Tensor:
        """The uninformed distribution for ``batch`` observations (Box: mid-range means; Discrete: uniform)."""
        if self.discrete:
            return torch.full((batch, self.horizon, self.n_actions), 1.0 / self.n_actions, device=self.device)
        return self.mid.expand(batch, self.horizon, self.act_dim).clone()

    def shift(self, dist: Tensor) -> Tensor:
        """Warm start: drop the executed first step and append an uninformed last step."""
        return torch.cat([dist[:, 1:], self.initial(dist.shape[0])[:, :1]], dim=1)

    def _sample(self, dist: Tensor, std: Tensor | None, generator: torch.Generator) -> Tensor:
        b, h = dist.shape[:2]
        c = self.population
        if self.discrete:
            idx = torch.multinomial(dist.reshape(b * h, -1), c, replacement=True, generator=generator)
            return idx.reshape(b, h, c).transpose(1, 2).contiguous()  # (B, C, H) int64
        assert std is not None
        noise = torch.randn((b, c, h, self.act_dim), generator=generator, device=dist.device)
        samples = dist.unsqueeze(1) + std.unsqueeze(1) * noise
        return torch.maximum(torch.minimum(samples, self.high), self.low)  # (B, C, H, A)

    # ------------------------------------------------------------------ planning

    def plan(
        self,
        evaluate: Callable[[Tensor], Tensor | tuple[Tensor, Tensor]],
        dist: Tensor,
        risk_tolerance: float,
        generator: torch.Generator,
        init_std: float | Tensor | None = None,
        candidates: Tensor | None = None,
    ) -> PlanResult:
        """Run CEM from the (warm-start) distribution ``dist`` for ``B = dist.shape[0]`` observations.

        ``evaluate(actions)`` gets ``(B, C, H, act_dim)`` floats or ``(B, C, H)`` action indices
        (from ``action_space.start``) and returns predicted returns ``(P, B, C)``, or a pair
        ``(returns, extra)`` where ``extra (B, C) >= 0`` is added to the return std in the score only
        (``mean - risk_tolerance * (std + extra)``, e.g. an epistemic state-disagreement term).
        ``init_std`` (Box) replaces the planner's ``init_std`` for this call: a fraction of the
        half-range, a float or a tensor broadcastable to ``dist`` (e.g. a behaviour policy's own
        spread per observation, step and action dimension). ``candidates`` ``(B, k, H[, act_dim])``
        (Discrete: action values, from ``action_space.start``) are scored in the first iteration in
        place of ``k`` samples (after the mean candidate), e.g. the previous plan shifted by one
        step when the search itself starts elsewhere.
        """
        b = dist.shape[0]
        dist = dist.clone()
        first_std: float | Tensor = self.init_std if init_std is None else init_std
        if not isinstance(first_std, Tensor) and not (math.isfinite(first_std) and first_std >= 0):
            raise ValueError(f"init_std must be finite and >= 0, got {init_std}")
        std = None if self.discrete else (first_std * self.half).expand_as(dist).clone()
        min_std = None if self.discrete else self.min_std * self.half
        ar = torch.arange(b, device=dist.device)
        best_score = torch.full((b,), -float("inf"), device=dist.device)
        best_mean = torch.zeros(b, device=dist.device)
        best_std = torch.zeros(b, device=dist.device)
        best_actions: Tensor | None = None
        elites: Tensor | None = None
        for it in range(self.iterations):
            actions = self._sample(dist, std, generator)
            if it == 0 and candidates is not None:
                k = min(candidates.shape[1], self.population - 1)
                given = candidates[:, :k] - self.start if self.discrete else candidates[:, :k]
                actions[:, 1 : 1 + k] = given.to(actions.dtype)
            if elites is not None and self.keep_elites > 0:
                actions[:, -self.keep_elites :] = elites[:, : self.keep_elites]
            if self.include_mean and not self.discrete:
                actions[:, 0] = torch.maximum(torch.minimum(dist, self.high), self.low)
            returns = evaluate(actions + self.start if self.discrete else actions)
            extra = None
            if isinstance(returns, tuple):
                returns, extra = returns
            if returns.dim() != 3 or returns.shape[1:] != (b, self.population):
                raise ValueError(
                    f"evaluate must return (particles, {b}, {self.population}) returns, got {tuple(returns.shape)}"
                )
            mean = returns.mean(0)
            spread = returns.std(0, correction=0) if returns.shape[0] > 1 else torch.zeros_like(mean)
            spread = spread.nan_to_num(nan=0.0)
            score = lcb(mean, spread if extra is None else spread + extra, risk_tolerance, check_std=False)
            score = torch.where(torch.isfinite(score), score, torch.full_like(score, -float("inf")))
            top = torch.topk(score, self.n_elites, dim=1).indices  # (B, E)
            elites = actions[ar[:, None], top]  # (B, E, H[, A])
            # best candidate seen so far
            cand = top[:, 0]
            improved = score[ar, cand] > best_score
            if best_actions is None:
                best_actions = actions[ar, cand].clone()
            else:
                sel = improved.view(-1, *([1] * (best_actions.dim() - 1)))
                best_actions = torch.where(sel, actions[ar, cand], best_actions)
            best_mean = torch.where(improved, mean[ar, cand], best_mean)
            best_std = torch.where(improved, spread[ar, cand], best_std)
            best_score = torch.where(improved, score[ar, cand], best_score)
            # refit the sampling distribution
            if self.discrete:
                freq = torch.nn.functional.one_hot(elites, self.n_actions).float().mean(1)  # (B, H, n)
                dist = self.alpha * dist + (1 - self.alpha) * freq
            else:
                assert std is not None and min_std is not None
                dist = self.alpha * dist + (1 - self.alpha) * elites.mean(1)
                new_std = elites.std(1, correction=0)
                std = torch.maximum(self.alpha * std + (1 - self.alpha) * new_std, min_std)
        assert best_actions is not None
        if self.discrete:
            best_actions = best_actions + self.start
        return PlanResult(best_actions, best_mean, best_std, best_score, dist)
