"""Batched evaluation of any policy: riskrl agents, stable-baselines3 models, plain callables.

All episodes run at once on a batched environment. Each env slot has a fixed quota of episodes
(``(n_episodes + i) // num_envs`` for slot ``i``), so exactly ``n_episodes`` complete episodes are
counted, each once, and short episodes are not over-represented (the bias of "stop after the first
n finished episodes"). Results are deterministic under ``seed`` for deterministic policies.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch
from scipy import stats
from torch import Tensor

from riskrl.devices import resolve_device
from riskrl.envs import make_vec
from riskrl.envs.autoreset import AutoresetMask
from riskrl.risk import cvar as _cvar

__all__ = ["EvalResult", "bootstrap_ci", "evaluate"]

PolicyLike = Any  # riskrl Agent | stable_baselines3 BaseAlgorithm | Callable[[Tensor], Tensor]

#: envs run in parallel when ``evaluate`` builds the env itself: ``min(n_episodes, DEFAULT_MAX_ENVS)``
DEFAULT_MAX_ENVS = 1024
# Step cap per episode slot for envs that declare no ``max_episode_steps`` (a safety net only).
_FALLBACK_HORIZON = 10_000


@runtime_checkable
class UncertainPolicy(Protocol):
    """What :func:`evaluate` uses of a policy that reports its epistemic uncertainty (riskrl agents).

    ``predict_with_uncertainty(obs)`` returns ``(action, mean, std)`` with ``std`` per action
    ``(B, n_actions)`` or per env ``(B,)``; ``predict(obs, deterministic=False)`` returns
    ``(action, state)`` for stochastic evaluation. evaluate never imports the agents.
    """

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> Any: ...

    def predict_with_uncertainty(self, obs: Any) -> tuple[Any, Any, Any]: ...


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Per-episode returns and lengths plus the summary statistics computed from them.

    ``cvar`` is the mean return of the worst ``alpha`` fraction of episodes; ``failure_rate`` is the
    share of episodes whose return is below ``failure_threshold`` (NaN when no threshold is known);
    ``mean_epistemic_std`` is the mean over all evaluated steps of the std the policy reported for
    its chosen action (NaN for policies without uncertainty); ``ci`` holds 95% bootstrap
    confidence intervals ``(low, high)`` of mean, IQM and CVaR.
    """

    returns: np.ndarray
    lengths: np.ndarray
    alpha: float = 0.1
    failure_threshold: float | None = None
    mean_epistemic_std: float = math.nan
    ci: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    @property
    def n_episodes(self) -> int:
        """Number of complete episodes evaluated."""
        return int(self.returns.size)

    @property
    def mean(self) -> float:
        """Mean episode return."""
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        """Standard deviation of episode returns (across episodes, not epistemic)."""
        return float(np.std(self.returns))

    @property
    def iqm(self) -> float:
        """Interquartile mean: the mean of the middle 50% of returns (robust to outliers)."""
        return float(stats.trim_mean(self.returns, 0.25))

    @property
    def cvar(self) -> float:
        """Mean return of the worst ``alpha`` fraction of episodes (see :func:`riskrl.cvar`)."""
        return float(_cvar(torch.as_tensor(self.returns, dtype=torch.float64), self.alpha))

    @property
    def worst(self) -> float:
        """The lowest episode return."""
        return float(np.min(self.returns))

    @property
    def failure_rate(self) -> float:
        """Share of episodes with return below ``failure_threshold`` (NaN without a threshold)."""
        if self.failure_threshold is None:
            return math.nan
        return float(np.mean(self.returns < self.failure_threshold))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (lists instead of arrays, NaN kept as NaN)."""
        return {
            "n_episodes": self.n_episodes,
            "mean": self.mean,
            "std": self.std,
            "iqm": self.iqm,
            "cvar": self.cvar,
            "alpha": self.alpha,
            "worst": self.worst,
            "failure_rate": self.failure_rate,
            "failure_threshold": self.failure_threshold,
            "mean_epistemic_std": self.mean_epistemic_std,
            "mean_length": float(np.mean(self.lengths)),
            "ci": {k: list(v) for k, v in self.ci.items()},
            "returns": self.returns.tolist(),
            "lengths": self.lengths.tolist(),
        }

    def __str__(self) -> str:
        return (
            f"EvalResult(n={self.n_episodes}, mean={self.mean:.2f} ± {self.std:.2f}, iqm={self.iqm:.2f}, "
            f"cvar{self.alpha:g}={self.cvar:.2f}, worst={self.worst:.2f}, failure_rate={self.failure_rate:.3f})"
        )


def bootstrap_ci(
    returns: np.ndarray, alpha: float, seed: int | None, n_resamples: int = 2000
) -> dict[str, tuple[float, float]]:
    """95% percentile-bootstrap intervals of mean, IQM and CVaR (degenerate for < 2 episodes)."""
    if returns.size < 2 or np.all(returns == returns[0]):
        v = float(returns[0])
        return {"mean": (v, v), "iqm": (v, v), "cvar": (v, v)}
    rng = np.random.default_rng(seed)

    def cvar_np(x: np.ndarray, axis: int = -1) -> np.ndarray:
        return _cvar(torch.from_numpy(np.asarray(x, dtype=np.float64)), alpha, dim=axis).numpy()

    out = {}
    for name, fn in (
        ("mean", np.mean),
        ("iqm", lambda x, axis=-1: stats.trim_mean(x, 0.25, axis=axis)),
        ("cvar", cvar_np),
    ):
        res = stats.bootstrap(
            (returns,), fn, n_resamples=n_resamples, method="percentile", vectorized=True, rng=rng
        )
        out[name] = (float(res.confidence_interval.low), float(res.confidence_interval.high))
    return out


_POLICY_INPUTS = ("auto", "torch", "numpy")


def _callable_policy(policy: Callable[[Any], Any], policy_input: str) -> Callable[[Tensor], Any]:
    """``obs tensor -> (actions tensor, None)`` for a plain callable taking torch tensors or numpy arrays.

    ``"torch"`` / ``"numpy"`` declare what the callable takes. ``"auto"`` calls it with the torch
    tensor first; if that raises, with the same observations as a numpy array, and whichever worked
    is used for the rest of the evaluation. Outputs may be tensors (detached from any autograd graph), numpy arrays or lists.
    """
    if policy_input not in _POLICY_INPUTS:
        raise ValueError(f"policy_input must be one of {_POLICY_INPUTS}, got {policy_input!r}")
    mode = [policy_input]

    def act(obs: Tensor) -> tuple[Tensor, None]:
        if mode[0] == "numpy":
            out = policy(obs.detach().cpu().numpy())
        elif mode[0] == "torch":
            out = policy(obs)
        else:
            try:
                out = policy(obs)
                mode[0] = "torch"
            except Exception as torch_err:
                try:
                    out = policy(obs.detach().cpu().numpy())
                except Exception as numpy_err:
                    raise TypeError(
                        f"the policy callable failed on a torch tensor ({torch_err!r}) and on a numpy array "
                        f"({numpy_err!r}); it gets observations of shape (B, obs_dim) and must return B actions"
                    ) from torch_err
                mode[0] = "numpy"
        if isinstance(out, Tensor):
            out = out.detach()  # e.g. an nn.Module policy called outside no_grad: actions need no graph
        else:
            out = np.asarray(out)
        return torch.as_tensor(out, device=obs.device), None

    return act


def _policy_fn(
    policy: PolicyLike, deterministic: bool, policy_input: str = "auto"
) -> tuple[Callable[[Tensor], tuple[Tensor, Tensor | None]], bool]:
    """Normalise any policy into ``obs (B, d) tensor -> (actions tensor, chosen-action std or None)``."""
    if isinstance(policy, UncertainPolicy):
        if deterministic:

            def act(obs: Tensor) -> tuple[Tensor, Tensor | None]:
                action, _mean, std = policy.predict_with_uncertainty(obs)
                if std.dim() == 2:  # per-action std (value-based agents): take the chosen action's
                    std = std.gather(1, action.long().reshape(-1, 1)).squeeze(1)
                return action, std

            return act, True
        return (lambda obs: (policy.predict(obs, deterministic=False)[0], None)), False
    if hasattr(policy, "predict") and hasattr(policy, "policy"):  # stable-baselines3 algorithm

        def act_sb3(obs: Tensor) -> tuple[Tensor, Tensor | None]:
            action, _ = policy.predict(obs.detach().cpu().numpy(), deterministic=deterministic)
            return torch.as_tensor(action, device=obs.device), None

        return act_sb3, False
    if callable(policy):
        return _callable_policy(policy, policy_input), False
    raise ValueError(
        f"policy must be a riskrl Agent, a stable-baselines3 model or a callable obs -> actions; got {type(policy)}"
    )


def _default_failure_threshold(env: Any) -> float | None:
    spec = getattr(env, "spec", None)
    threshold = getattr(spec, "reward_threshold", None)
    if threshold is None:
        env_id = getattr(spec, "id", None) or getattr(env, "env_id", None)
        if env_id:
            try:
                threshold = gym.spec(str(env_id).removeprefix("riskrl/")).reward_threshold
            except gym.error.Error:
                threshold = None
    return None if threshold is None else float(threshold)


def evaluate(
    policy: PolicyLike,
    env: Any,
    n_episodes: int = 100,
    *,
    seed: int | None = 0,
    num_envs: int | None = None,
    device: str | torch.device = "cpu",
    perturb: Mapping[str, Any] | None = None,
    deterministic: bool = True,
    policy_input: str = "auto",
    alpha: float = 0.1,
    failure_threshold: float | None = None,
    max_steps: int | None = None,
    bootstrap: bool = True,
    start_states: Tensor | None = None,
    fuse: int = 0,
) -> EvalResult:
    """Run exactly ``n_episodes`` episodes of ``policy`` on ``env``, all in flight at once.

    Args:
        policy: a riskrl agent, a stable-baselines3 model, or a callable ``obs (B, d) -> actions (B, ...)``
            taking a torch tensor or a numpy array: e.g. ``lambda obs: (obs[:, 2] > 0).astype(np.int64)``
            (numpy) or ``lambda obs: (obs[:, 2] > 0).long()`` (torch). Actions may be returned as tensors,
            arrays or lists.
        policy_input: what a callable policy is given: ``"auto"`` (a torch tensor, or a numpy array
            if the callable fails on the tensor at the first step), ``"torch"`` or ``"numpy"``.
        env: a gymnasium id (built with :func:`riskrl.envs.make_vec`) or a riskrl batched env.
        n_episodes: number of complete episodes to count.
        seed: seeds the environment's resets.
        num_envs: parallel envs when ``env`` is an id (default ``min(n_episodes, DEFAULT_MAX_ENVS)`` = 1024).
        perturb: physical-parameter changes passed to ``env.perturb`` after the seeded reset (e.g.
            ``{"length": 1.0}`` or ``{"length": (0.5, 1.5)}`` sampled per env). A given env object
            keeps the perturbation afterwards.
        alpha: the CVaR tail fraction.
        failure_threshold: an episode with a lower return counts as a failure; default is the
            env spec's ``reward_threshold`` when it has one.
        max_steps: safety cap on vectorised steps (default: enough for every quota at the env's
            time limit).
        bootstrap: compute the bootstrap confidence intervals (``ci``).
        start_states: exact states ``(num_envs, state_dim)`` injected after the seeded reset (riskrl
            batched envs only; the first observation carries no observation noise). Later episodes
            start from the env's own resets. :func:`riskrl.robustness_grid` uses it to start every
            cell from the same states.
        fuse: ``k > 0`` runs ``k`` steps of policy + env per compiled program (``env.rollout(...,
            fuse=k)``; riskrl batched envs, and policies that are pure torch functions: a callable on
            torch tensors, or a riskrl agent with ``deterministic=True``). The compile (~10 s per call)
            pays only for long evaluations of small and medium batches; returns equal the call-by-call
            ones up to float rounding. ``0`` (default): call by call.
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, (int, np.integer)) or n_episodes < 1:
        raise ValueError(f"n_episodes must be a positive integer, got {n_episodes!r}")
    if n_episodes > 10_000_000:
        raise ValueError(f"n_episodes={n_episodes} is unreasonably large (max 10,000,000)")
    if not (0.0 < float(alpha) <= 1.0):
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if isinstance(fuse, bool) or not isinstance(fuse, (int, np.integer)) or fuse < 0:
        raise ValueError(f"fuse must be a non-negative integer (steps per compiled program), got {fuse!r}")
    if isinstance(env, str):
        device = resolve_device(device)
        if num_envs is None:
            num_envs = min(int(n_episodes), DEFAULT_MAX_ENVS)
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        env = make_vec(env, num_envs=int(num_envs), device=device)
    elif num_envs is not None and num_envs != env.num_envs:
        raise ValueError(f"num_envs={num_envs} conflicts with the given env's num_envs={env.num_envs}")
    if failure_threshold is None:
        failure_threshold = _default_failure_threshold(env)

    act, reports_std = _policy_fn(policy, deterministic, policy_input)
    n_env = int(env.num_envs)
    dev = torch.device(getattr(env, "device", device))
    slots = torch.arange(n_env, device=dev)
    quota = (int(n_episodes) + slots) // n_env  # exactly n_episodes in total
    max_quota = int(quota.max())
    autoreset = AutoresetMask(env, n_env, dev)
    if max_steps is None:
        horizon = getattr(env, "max_episode_steps", None) or _FALLBACK_HORIZON
        max_steps = (max_quota + 1) * (int(horizon) + 1) + 10

    obs, _ = env.reset(seed=seed)
    if perturb:
        # Perturb after seeding, so sampled (low, high) parameters are reproducible; then reset with
        # the same seed, so episodes start exactly where the unperturbed evaluation's do.
        env.perturb(**dict(perturb))
        obs, _ = env.reset(seed=seed)
    if start_states is not None:
        env.state = start_states  # exact starts (e.g. the same ones in every cell of a grid)
        obs = env.get_obs()
    book = _EpisodeBook(quota, max_quota, autoreset)
    if fuse:
        _run_fused(book, policy, env, obs, int(fuse), deterministic, int(max_steps), perturb)
    else:
        for _ in range(int(max_steps)):
            action, std = act(obs)
            obs, reward, terminated, truncated, _info = env.step(action)
            # one step is a one-step chunk of the fused path's bookkeeping (exactly the same sums)
            book.add(
                *(torch.as_tensor(x, device=dev).unsqueeze(0) for x in (reward, terminated, truncated)),
                std.unsqueeze(0) if reports_std and std is not None else None,
            )
            finished, broken = torch.stack(
                (book.finished(), _nonfinite(obs, reward, dev))
            ).tolist()  # one host sync per step
            if broken:
                raise ValueError(_nonfinite_message(env, perturb))
            if finished:
                break
        else:
            raise RuntimeError(
                f"evaluation did not finish {n_episodes} episodes within max_steps={max_steps}"
            )
    returns, lengths = book.returns, book.lengths

    mask = torch.arange(max_quota, device=dev).unsqueeze(0) < quota.unsqueeze(1)
    ret_np = returns[mask].cpu().numpy()
    len_np = lengths[mask].cpu().numpy()
    mean_std = float(book.std_sum / book.std_count) if int(book.std_count) > 0 else math.nan
    ci = bootstrap_ci(ret_np, float(alpha), seed) if bootstrap else {}
    return EvalResult(
        returns=ret_np,
        lengths=len_np,
        alpha=float(alpha),
        failure_threshold=failure_threshold,
        mean_epistemic_std=mean_std,
        ci=ci,
    )


def _run_fused(
    book: _EpisodeBook,
    policy: PolicyLike,
    env: Any,
    obs: Tensor,
    fuse: int,
    deterministic: bool,
    max_steps: int,
    perturb: Mapping[str, Any] | None,
) -> None:
    """:func:`evaluate`'s loop with ``fuse`` steps per compiled program, counted into ``book``."""
    step_policy = _fusable_policy(policy, env, deterministic)
    for _ in range(-(-max_steps // fuse)):
        ro = env.rollout(step_policy, fuse, obs=obs, fuse=fuse)
        obs = ro.obs[-1]
        book.add(ro.rewards, ro.terminated, ro.truncated, ro.policy_extra)
        finished, broken = torch.stack(
            (book.finished(), _nonfinite(ro.obs, ro.rewards, book.quota.device))
        ).tolist()  # one host sync per program run
        if broken:
            raise ValueError(_nonfinite_message(env, perturb))
        if finished:
            return
    raise RuntimeError(
        f"evaluation did not finish {int(book.quota.sum())} episodes within max_steps={max_steps}"
    )


def _fusable_policy(policy: PolicyLike, env: Any, deterministic: bool) -> Callable[[Tensor], Any]:
    """``policy`` as a pure torch function for ``env.rollout(..., fuse=k)``: obs -> actions, or
    (actions, chosen-action std) for riskrl agents; a clear error for what cannot be fused."""
    from riskrl.envs.base import TorchVectorEnv

    if not isinstance(env, TorchVectorEnv):
        raise ValueError(f"evaluate(fuse=...) needs a riskrl batched env, got {type(env).__name__}")
    if isinstance(policy, UncertainPolicy):
        if not deterministic:
            raise ValueError("evaluate(fuse=...) needs deterministic=True for a riskrl agent")
        pure = policy._pure_uncertainty() if hasattr(policy, "_pure_uncertainty") else None
        if pure is None:
            raise ValueError(
                f"evaluate(fuse=...) cannot compile {type(policy).__name__}'s policy (not a pure tensor "
                "function, e.g. a sampling planner); use fuse=0"
            )
        agent_dev = policy.device

        def act(obs: Tensor) -> tuple[Tensor, Tensor]:
            action, _mean, std = pure(obs.to(device=agent_dev, dtype=torch.float32))
            if std.dim() == 2:
                std = std.gather(1, action.long().reshape(-1, 1)).squeeze(1)
            return action, std

        return act
    if hasattr(policy, "predict") and hasattr(policy, "policy"):
        raise ValueError("evaluate(fuse=...) cannot compile a stable-baselines3 model (numpy policy)")
    if not callable(policy):
        raise ValueError(f"policy must be a riskrl Agent or a callable obs -> actions; got {type(policy)}")
    return policy


class _EpisodeBook:
    """Episode bookkeeping of :func:`evaluate` over chunks of steps (``(T, N)`` tensors; a call-by-call
    step is a chunk of one): each env slot counts its first ``quota`` complete episodes, and the chosen
    actions' epistemic std is averaged over the steps of the episodes counted."""

    def __init__(self, quota: Tensor, max_quota: int, autoreset: AutoresetMask) -> None:
        n, dev = quota.shape[0], quota.device
        self.quota, self.autoreset, self.dev = quota, autoreset, dev
        self.returns = torch.zeros(n, max_quota, dtype=torch.float64, device=dev)
        self.lengths = torch.zeros(n, max_quota, dtype=torch.int64, device=dev)
        self.count = torch.zeros(n, dtype=torch.int64, device=dev)
        self.ep_return = torch.zeros(n, dtype=torch.float64, device=dev)
        self.ep_length = torch.zeros(n, dtype=torch.int64, device=dev)
        self.std_sum = torch.zeros((), dtype=torch.float64, device=dev)
        self.std_count = torch.zeros((), dtype=torch.int64, device=dev)

    def finished(self) -> Tensor:
        """Whether every slot has its quota (a 0-dim tensor: no host sync)."""
        return (self.count >= self.quota).all()

    def add(self, rewards: Tensor, terminated: Tensor, truncated: Tensor, std: Tensor | None) -> None:
        """Count a chunk of ``T`` steps: rewards and flags ``(T, N)``, the chosen actions' std or None."""
        t_len = rewards.shape[0]
        flags = terminated | truncated
        if self.autoreset.same_step:
            live, done = torch.ones_like(flags), flags
        else:  # the step after a done is only a reset (flags are False there): live[t] = not done[t-1]
            live = torch.cat((~self.autoreset.pending.unsqueeze(0), ~flags[:-1]))
            done = flags & live
            self.autoreset.pending = done[-1]
        if t_len == 1:  # call by call: the running sums directly (the same numbers, a third of the ops)
            self._add_step(rewards[0], live[0], done[0], None if std is None else std[0])
        else:
            self._add_chunk(rewards, live, done, std)

    def _count_std(self, active: Tensor, std: Tensor | None) -> None:
        if std is not None:
            self.std_sum += torch.where(active, std.to(device=self.dev, dtype=torch.float64), 0.0).sum()
            self.std_count += active.sum()

    def _add_step(self, reward: Tensor, live: Tensor, done: Tensor, std: Tensor | None) -> None:
        open_slot = self.count < self.quota
        self._count_std(live & open_slot, std)
        ep_return = self.ep_return + torch.where(live, reward.to(torch.float64), 0.0)
        ep_length = self.ep_length + live.to(torch.int64)
        record = done & open_slot
        slot = record.nonzero(as_tuple=True)[0]
        self.returns[slot, self.count[slot]] = ep_return[slot]
        self.lengths[slot, self.count[slot]] = ep_length[slot]
        self.count += record.to(torch.int64)
        self.ep_return = torch.where(done, 0.0, ep_return)
        self.ep_length = torch.where(done, 0, ep_length)

    def _add_chunk(self, rewards: Tensor, live: Tensor, done: Tensor, std: Tensor | None) -> None:
        t_len, n = rewards.shape
        # episode index each done fills, and whether it is within the slot's quota
        k = self.count + done.to(torch.int64).cumsum(0) - 1
        record = done & (k < self.quota)
        before_t = torch.cat((torch.zeros_like(k[:1]), done[:-1].to(torch.int64).cumsum(0)))
        self._count_std(live & ((self.count + before_t) < self.quota), std)
        # running return / length, restarted after every done: cumulative sums minus their value at
        # the last done before t (the carry-in is part of the first episode)
        cum_r = self.ep_return + torch.where(live, rewards.to(torch.float64), 0.0).cumsum(0)
        cum_l = self.ep_length + live.to(torch.int64).cumsum(0)
        t_idx = torch.arange(t_len, device=self.dev).unsqueeze(1).expand(t_len, n)
        last = torch.where(done, t_idx, -1).cummax(0).values
        before = torch.cat((torch.full_like(last[:1], -1), last[:-1]))
        at = before.clamp(min=0)
        ep_r = cum_r - torch.where(before >= 0, cum_r.gather(0, at), 0.0)
        ep_l = cum_l - torch.where(before >= 0, cum_l.gather(0, at), 0)
        t_rec, slot = record.nonzero(as_tuple=True)
        self.returns[slot, k[t_rec, slot]] = ep_r[t_rec, slot]
        self.lengths[slot, k[t_rec, slot]] = ep_l[t_rec, slot]
        self.count += record.to(torch.int64).sum(0)
        end = last[-1]
        self.ep_return = torch.where(
            end >= 0, cum_r[-1] - cum_r.gather(0, end.clamp(min=0)[None])[0], cum_r[-1]
        )
        self.ep_length = torch.where(
            end >= 0, cum_l[-1] - cum_l.gather(0, end.clamp(min=0)[None])[0], cum_l[-1]
        )


def _nonfinite(obs: Any, reward: Any, dev: torch.device) -> Tensor:
    """True (a 0-dim tensor, no host sync) when any observation or reward is NaN or infinite."""
    bad = ~torch.isfinite(torch.as_tensor(reward, device=dev)).all()
    try:
        obs_t = torch.as_tensor(obs, device=dev)
    except (TypeError, ValueError, RuntimeError):  # structured observations: rewards only
        return bad
    if obs_t.is_floating_point():
        bad = bad | ~torch.isfinite(obs_t).all()
    return bad


def _nonfinite_message(env: Any, perturb: Mapping[str, Any] | None) -> str:
    """Name the parameters behind non-finite states: the perturbed ones, else any off their defaults."""
    names = dict(perturb or {})
    if not names:
        params = getattr(env, "params", {}) or {}
        defaults = getattr(env, "param_defaults", {}) or {}
        for k, v in params.items():
            t = torch.as_tensor(v, dtype=torch.float64).cpu()
            if k in defaults and not bool((t == float(defaults[k])).all()):
                names[k] = f"{float(t.min()):g}..{float(t.max()):g}"
    which = ", ".join(f"{k}={v!r}" for k, v in names.items()) or "the env's parameters"
    return (
        f"evaluation refused: the environment reached non-finite states (NaN or inf) with {which}; "
        "these physical parameters give no valid dynamics, so no result is reported"
    )
