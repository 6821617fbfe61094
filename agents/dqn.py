"""``BayesDQN``: a DQN whose Q-network is a Bayesian MLP, acting on ``mean - risk_tolerance * std``.

The default posterior is a deep ensemble with randomized prior functions (Osband et al. 2018,
"Randomized Prior Functions for Deep RL"): ``K`` Q-networks, each the sum of a trainable MLP and a
fixed random prior MLP, trained on the same replay data against *their own* target networks. All
members are evaluated by one batched ``particles`` call, so the per-action mean and epistemic std of
Q are one ``(K, B, n_actions)`` tensor away.

* Acting (``predict``): ``argmax_a mean_a - risk_tolerance * std_a`` over posterior particles.
* Exploring (``learn``): Thompson sampling (Bootstrapped DQN: each env follows one particle for a
  whole episode, or a fresh one each step) or optimism (``exploration="ucb"``: act on
  ``mean - train_risk_tolerance * std`` with a negative ``train_risk_tolerance``), plus an optional
  epsilon schedule on top.
* Learning: uniform replay on the agent's device, Double-DQN targets computed per particle (each
  member's online net picks the next action, its target net scores it), Huber loss, target nets
  updated by Polyak averaging (``tau=1`` with an interval gives hard updates).

``family="bbb"`` and ``"mc_dropout"`` work through the same particles interface (a frozen draw of
``n_particles`` weight samples or dropout masks); see ``experiments/results/bench_agents.md``.

All randomness after construction flows from ``self.rng``; a checkpoint holds the replay buffer,
optimiser, target network and exploration state, so a resumed CPU run is bit-identical.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import Tensor

from riskrl.bayes import FAMILIES, BayesMLP, Particles, Trainer, exact_members, polyak_update
from riskrl.checkpoint import CheckpointError, JsonSpec, Opt, TensorSpec
from riskrl.envs.autoreset import AutoresetMask
from riskrl.risk import lcb, validate_risk_tolerance

from . import schema
from .base import Agent, finite_float, hidden_widths, require_ints
from .buffers import ReplayBuffer
from .heads import SharedTorsoEnsemble
from .transitions import add_valid

__all__ = ["BayesDQN", "BayesDQNConfig"]

_EXPLORATION = ("thompson", "ucb")
_RESAMPLE = ("episode", "step")
_LOSSES = ("huber", "mse")
# Offsets that derive fixed, independent seeds for deterministic posterior draws from ``seed``.
_EVAL_SEED_OFFSET = 0x5EED_0001
# The TD loss is logged every this many gradient steps (each log reads it on the host: a sync).
_LOG_LOSS_EVERY = 100


@dataclasses.dataclass
class BayesDQNConfig:
    """Hyperparameters of :class:`BayesDQN` (defaults tuned on CartPole-v1, 25k env steps).

    Network: ``hidden`` widths, ``family`` of the Bayesian Q-network, ``n_members`` ensemble size,
    ``prior_scale`` randomized-prior scale (ensemble), ``shared_torso`` (ensemble only: the members
    share their hidden layers and differ in their heads and random prior heads, as in Bootstrapped
    DQN: :class:`riskrl.agents.heads.SharedTorsoEnsemble`, about ``n_members`` times cheaper per update), ``n_particles`` posterior draws per batch for
    ``bbb``/``mc_dropout`` (an ensemble always uses its ``n_members``), ``kl_weight`` scales the
    bbb/mc_dropout KL term (divided by the replay size), ``dropout`` for ``mc_dropout``.

    Learning: ``learning_rate`` (Adam), ``buffer_size``, ``learning_starts`` env steps of uniform
    random actions before training, ``batch_size``, ``gamma``, ``n_step`` (n-step TD targets built from the replay buffer's episode
    links; ``1`` = one-step DQN), ``train_freq`` (vectorised env steps
    between training rounds), ``gradient_steps`` per round, ``tau`` and ``target_update_interval``
    (gradient steps) for the target nets, ``utd_ratio`` (update-to-data ratio: gradient steps per
    env step summed over the envs; when set it replaces ``train_freq``/``gradient_steps`` and the
    agent runs the steps due after every vectorised step, so ``num_envs=8, utd_ratio=0.25`` trains
    twice per vector step), ``double_q``, ``loss`` (``"huber"`` or ``"mse"``),
    ``max_grad_norm`` (``0`` disables clipping), ``bootstrap_p`` (each member sees each sampled
    transition with this probability; ``1`` = shared batches).

    Exploration: ``exploration`` ``"thompson"`` or ``"ucb"``; ``thompson_resample`` ``"episode"`` or
    ``"step"``; ``train_risk_tolerance`` (the risk knob used while exploring with ``"ucb"``,
    negative = optimistic); epsilon-greedy on top, decaying linearly from ``epsilon_start`` to
    ``epsilon_end`` over ``epsilon_decay_steps`` env steps after ``learning_starts``.

    Speed: ``compile=True`` runs the TD loss (forward passes and targets; backward and Adam stay
    eager) and the acting forward through ``torch.compile``. It needs an exact-member posterior
    (``family="ensemble"``), costs several seconds of compilation per new input shape, and gives the
    same actions as the eager path up to float rounding. On CPU it does not pay at CartPole sizes
    (``experiments/results/compile.md``); it is meant for GPUs, where kernel launches dominate.

    Offline (:meth:`BayesDQN.learn_offline`): ``beta >= 0`` (default ``1.0``) makes the TD targets
    pessimistic, ``r + gamma * max_a' [mean_k Q_k(s', a') - beta * std_k Q_k(s', a')]`` across the
    target members, shared by all members; ``0`` is the members' mean. ``cql_alpha`` (default
    ``1.0``; ``0`` turns it off) adds CQL's conservative penalty (Kumar et al., 2020) to every
    member's loss, ``cql_alpha * (logsumexp_a Q_k(s, a) - Q_k(s, a_data))``, which pushes Q down on
    the actions the dataset does not take. Online training ignores both. The default comes from the
    committed offline grid (``experiments/results/offline*.md``; README "Learning from a dataset"):
    with it BayesDQN scores 500 on CartPole's expert and medium data (9-354 without it) and about
    -100 instead of -250 to -500 on Acrobot's expert and 10k replay data; it costs CartPole's
    replay data, where ``cql_alpha=0`` does better.
    """

    num_envs: int = 1
    # (128, 128): with (64, 64) nets, 2 of 5 CartPole runs collapsed after reaching 500; wider nets
    # (or a smaller prior_scale) mostly stop that, likely because a small net spends its capacity
    # offsetting the random prior net. (128, 128) reached 500 on 5/5 seeds within 25k steps in
    # session 2's trials (experiments/results/archive/bench_agents_session2.md) at about a third of
    # (256, 256)'s update cost; time-to-threshold: experiments/results/wallclock.md.
    hidden: tuple[int, ...] = (128, 128)
    family: str = "ensemble"
    n_members: int = 5
    prior_scale: float = 3.0
    shared_torso: bool = False
    n_particles: int = 10
    kl_weight: float = 1.0
    dropout: float = 0.1
    activation: str = "relu"
    learning_rate: float = 1e-3
    buffer_size: int = 100_000
    learning_starts: int = 1_000
    batch_size: int = 64
    gamma: float = 0.98
    n_step: int = 1
    train_freq: int = 1
    gradient_steps: int = 1
    utd_ratio: float | None = None
    tau: float = 0.01
    target_update_interval: int = 1
    double_q: bool = True
    loss: str = "huber"
    max_grad_norm: float = 10.0
    bootstrap_p: float = 1.0
    exploration: str = "thompson"
    thompson_resample: str = "episode"
    train_risk_tolerance: float = -1.0
    epsilon_start: float = 0.0
    epsilon_end: float = 0.0
    epsilon_decay_steps: int = 10_000
    # Offline learning (learn_offline): every member's TD target is the pessimistic
    # ``mean - beta * std`` of the target Q across members (PBRL / SAC-N style), at the next action
    # that maximises it. 1.0: see experiments/results/offline*.md. Online learn() ignores beta.
    beta: float = 1.0
    # Offline learning: CQL's conservative penalty weight (0: off); see the class docstring.
    cql_alpha: float = 1.0
    compile: bool = False

    def __post_init__(self) -> None:
        self.hidden = hidden_widths(self.hidden)
        for name, allowed in (
            ("family", FAMILIES),
            ("exploration", _EXPLORATION),
            ("thompson_resample", _RESAMPLE),
            ("loss", _LOSSES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        positive = (
            "num_envs",
            "n_members",
            "n_particles",
            "buffer_size",
            "batch_size",
            "n_step",
            "train_freq",
            "target_update_interval",
        )
        require_ints(self, positive, 1)
        require_ints(self, ("learning_starts", "gradient_steps", "epsilon_decay_steps"), 0)
        if not isinstance(self.compile, bool):
            raise TypeError(f"compile must be a bool, got {self.compile!r}")
        if self.compile and self.family != "ensemble":
            raise ValueError(
                f"compile=True needs family='ensemble' (a fixed set of members), got {self.family!r}"
            )
        if self.shared_torso and self.family != "ensemble":
            raise ValueError(f"shared_torso needs family='ensemble', got {self.family!r}")
        if self.utd_ratio is not None:
            self.utd_ratio = finite_float("utd_ratio", self.utd_ratio)
            if self.utd_ratio <= 0:
                raise ValueError(f"utd_ratio must be > 0 (or None), got {self.utd_ratio}")
        for name in ("prior_scale", "kl_weight", "learning_rate", "max_grad_norm"):
            setattr(self, name, finite_float(name, getattr(self, name)))
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.kl_weight < 0 or self.max_grad_norm < 0:
            raise ValueError("kl_weight and max_grad_norm must be >= 0")
        for name, lo_open in (("gamma", False), ("tau", True), ("bootstrap_p", True)):
            value = finite_float(name, getattr(self, name))
            if not (0.0 < value <= 1.0 if lo_open else 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be in {'(0, 1]' if lo_open else '[0, 1]'}, got {value}")
            setattr(self, name, value)
        for name in ("epsilon_start", "epsilon_end", "dropout"):
            value = finite_float(name, getattr(self, name))
            if not 0.0 <= value <= 1.0 or (name == "dropout" and value >= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {value}")
            setattr(self, name, value)
        self.train_risk_tolerance = validate_risk_tolerance(self.train_risk_tolerance)
        self.beta = finite_float("beta", self.beta)
        if self.beta < 0:
            raise ValueError(f"beta (offline pessimism) must be >= 0, got {self.beta}")
        self.cql_alpha = finite_float("cql_alpha", self.cql_alpha)
        if self.cql_alpha < 0:
            raise ValueError(f"cql_alpha (offline conservative penalty) must be >= 0, got {self.cql_alpha}")


def td_target(rewards: Tensor, discounts: Tensor, terminated: Tensor, q_next: Tensor) -> Tensor:
    """(n-step) TD targets ``r + discount * (1 - terminated) * Q(s', a')`` per particle.

    ``rewards``, ``discounts`` (gamma^k for a k-step return) and ``terminated`` are ``(B,)``;
    ``q_next`` is ``(n, B)``; returns ``(n, B)``. A terminated transition bootstraps nothing.
    """
    return rewards + discounts * (1.0 - terminated) * q_next


def build_q_net(cfg: BayesDQNConfig, obs_dim: int, n_actions: int) -> BayesMLP | SharedTorsoEnsemble:
    """The Q-network posterior ``cfg`` describes (a :class:`BayesMLP`, or a shared-torso ensemble)."""
    if cfg.shared_torso:
        return SharedTorsoEnsemble(
            obs_dim,
            n_actions,
            hidden=cfg.hidden,
            n_members=cfg.n_members,
            prior_scale=cfg.prior_scale,
            activation=cfg.activation,
        )
    return BayesMLP(
        obs_dim,
        n_actions,
        hidden=cfg.hidden,
        family=cfg.family,
        activation=cfg.activation,
        learn_noise=False,
        n_members=cfg.n_members,
        prior_scale=cfg.prior_scale,  # only a family with prior networks (the ensemble) uses it
        dropout=cfg.dropout,
    )


def _pessimistic_target(q_next: Tensor, q_select: Tensor, beta: float) -> Tensor:
    """Per-member pessimistic next values ``(K, B)``: member ``k``'s target Q at the next action
    minus ``beta`` times the members' std there (their mean is ``mean - beta * std``, PBRL-style).

    The next action maximises ``mean - beta * std`` of ``q_select (K, B, A)`` (the online nets for
    Double DQN); ``q_next (K, B, A)`` are the target nets' values.
    """
    k, b, _ = q_next.shape
    select = q_select.mean(0) - beta * q_select.std(0, correction=0)
    action = select.argmax(-1).view(1, b, 1).expand(k, b, 1)
    q_a = q_next.gather(2, action).squeeze(-1)
    return q_a - beta * q_a.std(0, correction=0)


class BayesDQN(Agent):
    """Deep Q-learning with a Bayesian Q-network; acts on ``mean - risk_tolerance * std`` of Q.

    Example::

        agent = BayesDQN("CartPole-v1", seed=0).learn(25_000)
        action, _ = agent.predict(obs)                       # risk-neutral greedy action
        agent.risk_tolerance = 1.0                           # now prefers well-known actions
        action, mean, std = agent.predict_with_uncertainty(obs)   # mean/std: (B, n_actions)

    Args:
        env: a gymnasium id or a riskrl batched env with a ``Discrete`` action space.
        risk_tolerance: deployment risk knob (``> 0`` averse, ``0`` neutral, ``< 0`` optimistic).
        seed, device: see :class:`riskrl.agents.Agent`.
        **hyperparams: fields of :class:`BayesDQNConfig`.
    """

    config_class: ClassVar[type] = BayesDQNConfig
    action_space_kinds: ClassVar[tuple[type[gym.Space], ...]] = (gym.spaces.Discrete,)
    config: BayesDQNConfig

    # ------------------------------------------------------------------ setup

    def _setup(self) -> None:
        cfg = self.config
        self.n_actions = int(self.action_space.n)
        self.action_start = int(self.action_space.start)
        self.q_net = build_q_net(cfg, self.obs_dim, self.n_actions).to(self.device)
        self.target_net = copy.deepcopy(self.q_net)
        self.target_net.requires_grad_(False)
        self.trainer = Trainer(
            self.q_net,
            lr=cfg.learning_rate,
            max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm > 0 else None,
        )
        n_env = int(self.env.num_envs)
        self.buffer = ReplayBuffer(cfg.buffer_size, self.obs_dim, device=self.device, n_envs=n_env)
        self._n_particles = self.q_net.exact_members or cfg.n_particles
        # Exploration state: one particle index per env, resampled at its episode ends.
        self._thompson_idx = torch.randint(
            0, self._n_particles, (n_env,), device=self.device, generator=self.rng
        )
        # Seed of the frozen posterior draw explored with (bbb / mc_dropout; redrawn at episode ends).
        self._pool_seed = self._draw_seed()
        self._autoreset = AutoresetMask(self.env, n_env, self.device)
        self._n_calls = 0
        self._n_updates = 0
        self._grad_credit = 0.0  # utd_ratio: gradient steps due but not yet run (fractional)
        # compile=True: the same computations through torch.compile (exact members: no random draw
        # inside, so the compiled graphs need no generator and consume no randomness).
        self._td_errors_fn = torch.compile(self._td_errors) if cfg.compile else self._td_errors
        self._q_members_fn = torch.compile(self._q_members) if cfg.compile else None

    # ------------------------------------------------------------------ posterior helpers

    def _draw_generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(int(seed) % (2**63))

    def _q_particles(self, obs: Tensor, seed: int | None = None) -> Tensor:
        """Per-particle Q values ``(n, B, n_actions)`` from one batched call (no grad).

        ``seed`` fixes the posterior draw for sampled families; the default gives the same draw on
        every call (``predict`` is deterministic and never touches ``self.rng``).
        """
        if self._q_members_fn is not None:  # compile=True: exact members, the draw needs no seed
            return self._q_members_fn(obs)
        return self._seeded_particles(seed)(obs)

    def _seeded_particles(self, seed: int | None = None) -> Particles:
        """The posterior draw behind :meth:`_q_particles` (default seed: the evaluation draw)."""
        seed = self.seed + _EVAL_SEED_OFFSET if seed is None else seed
        return self.q_net.particles(self._n_particles, generator=self._draw_generator(seed))

    def _q_members(self, obs: Tensor) -> Tensor:
        """Every member's Q values ``(K, B, n_actions)`` (exact-member posteriors; compiled when
        ``compile=True``)."""
        return self.q_net.particles(self._n_particles)(obs)

    def _scores(self, obs: Tensor, risk_tolerance: float) -> tuple[Tensor, Tensor, Tensor]:
        return self._scores_of(self._q_particles(obs), risk_tolerance)

    @staticmethod
    def _scores_of(q: Tensor, risk_tolerance: float) -> tuple[Tensor, Tensor, Tensor]:
        """``(score, mean, std)`` over the particle axis of ``q`` ``(n, B, n_actions)``."""
        mean = q.mean(0)
        std = q.std(0, correction=0) if q.shape[0] > 1 else torch.zeros_like(mean)
        return lcb(mean, std, risk_tolerance, check_std=False), mean, std

    # ------------------------------------------------------------------ acting

    def _act(self, obs: Tensor, deterministic: bool) -> Tensor:
        if deterministic:
            score, _, _ = self._scores(obs, self.risk_tolerance)
            return score.argmax(-1) + self.action_start
        # A posterior sample per observation (Thompson sampling).
        q = self._q_particles(obs, seed=self._draw_seed())
        idx = torch.randint(0, q.shape[0], (obs.shape[0],), device=self.device, generator=self.rng)
        return q[idx, torch.arange(obs.shape[0], device=self.device)].argmax(-1) + self.action_start

    def _uncertainty(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        score, mean, std = self._scores(obs, self.risk_tolerance)
        return score.argmax(-1) + self.action_start, mean, std

    def _pure_uncertainty(self) -> Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]:
        # the posterior draw every _uncertainty call makes (same seed, same draw), frozen once
        if self._q_members_fn is not None:
            particles = self.q_net.particles(self._n_particles)
        else:
            particles = self._seeded_particles()
        risk_tolerance, start = self.risk_tolerance, self.action_start

        def uncertainty(obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            score, mean, std = self._scores_of(particles(obs), risk_tolerance)
            return score.argmax(-1) + start, mean, std

        return uncertainty

    def epsilon(self, timesteps: int | None = None) -> float:
        """The exploration epsilon at ``timesteps`` (default: now)."""
        cfg = self.config
        t = self.num_timesteps if timesteps is None else timesteps
        if cfg.epsilon_decay_steps == 0:
            return cfg.epsilon_end
        frac = min(max(t - cfg.learning_starts, 0) / cfg.epsilon_decay_steps, 1.0)
        return cfg.epsilon_start + frac * (cfg.epsilon_end - cfg.epsilon_start)

    def _explore_actions(self, obs: Tensor) -> Tensor:
        cfg = self.config
        n_env = obs.shape[0]
        if self.num_timesteps < cfg.learning_starts:
            return torch.randint(0, self.n_actions, (n_env,), device=self.device, generator=self.rng)
        if cfg.exploration == "ucb":
            score, _, _ = self._scores(obs, cfg.train_risk_tolerance)
            actions = score.argmax(-1)
        else:
            if cfg.thompson_resample == "step":
                self._resample(torch.ones(n_env, dtype=torch.bool, device=self.device))
            q = self._q_particles(obs, seed=self._pool_seed)
            actions = q[self._thompson_idx, torch.arange(n_env, device=self.device)].argmax(-1)
        eps = self.epsilon()
        if eps > 0.0:
            explore = torch.rand(n_env, device=self.device, generator=self.rng) < eps
            random = torch.randint(0, self.n_actions, (n_env,), device=self.device, generator=self.rng)
            actions = torch.where(explore, random, actions)
        return actions

    def _resample(self, mask: Tensor) -> None:
        """New Thompson particles for the envs in ``mask``.

        Sampled families (bbb, mc_dropout) also get a fresh posterior draw, but only when every env
        starts anew: envs still mid-episode must keep following the draw they started with.
        """
        fresh = torch.randint(0, self._n_particles, mask.shape, device=self.device, generator=self.rng)
        self._thompson_idx = torch.where(mask, fresh, self._thompson_idx)
        if self.q_net.exact_members is None and bool(mask.all()):
            self._pool_seed = self._draw_seed()

    # ------------------------------------------------------------------ collecting and training

    def _collect_step(self, obs: Tensor) -> tuple[Tensor, dict[str, Any]]:
        cfg = self.config
        with torch.no_grad():
            actions = self._explore_actions(obs)
        next_obs, reward, terminated, truncated, info = self.env.step(actions + self.action_start)
        terminated = torch.as_tensor(terminated, device=self.device)
        truncated = torch.as_tensor(truncated, device=self.device)
        reward = torch.as_tensor(reward, device=self.device, dtype=torch.float32)
        done = terminated | truncated
        real_next = self._autoreset.real_next_obs(next_obs, done, info)
        add_valid(self.buffer.add, self._autoreset.valid(), obs, actions, reward, real_next, terminated, done)
        self._autoreset.update(done)
        if cfg.thompson_resample == "episode":
            self._resample(done)  # masked, so no host sync to ask whether any episode ended
        self._n_calls += 1
        for _ in range(self._gradient_steps_due()):
            self._train_step()
        return next_obs, info

    def _gradient_steps_due(self) -> int:
        """Gradient steps to run after this vectorised step (``train_freq``/``gradient_steps`` or ``utd_ratio``)."""
        cfg = self.config
        n_env = int(self.env.num_envs)
        if self.num_timesteps + n_env < cfg.learning_starts or len(self.buffer) == 0:
            return 0
        if cfg.utd_ratio is None:
            return cfg.gradient_steps if self._n_calls % cfg.train_freq == 0 else 0
        self._grad_credit += cfg.utd_ratio * n_env
        due = int(self._grad_credit)
        self._grad_credit -= due
        return due

    def _train_step(self, beta: float | None = None, cql_alpha: float = 0.0) -> None:
        """One gradient step; ``beta`` set: pessimistic targets (:meth:`_pessimistic_target`);
        ``cql_alpha > 0``: CQL's conservative penalty added to every member's loss."""
        cfg = self.config
        batch = self.buffer.sample_n_step(cfg.batch_size, cfg.n_step, cfg.gamma, generator=self.rng)
        per = self._td_errors_fn(
            batch["obs"],
            batch["actions"],
            batch["rewards"],
            batch["discounts"],
            batch["terminated"],
            batch["next_obs"],
            beta,
            cql_alpha,
        )
        if cfg.bootstrap_p < 1.0:
            mask = (torch.rand(per.shape, device=self.device, generator=self.rng) < cfg.bootstrap_p).to(per)
            per = per * mask / cfg.bootstrap_p
        # an ensemble sums its members' regressions (KL 0); a sampled posterior averages its draws
        kl = cfg.kl_weight * self.q_net.kl_divergence() / max(len(self.buffer), 1)
        loss = self.q_net.reduce_loss(per) + kl
        self.trainer.step(loss)
        self._n_updates += 1
        if self._n_updates % cfg.target_update_interval == 0:
            self._update_target()
        if self._logger is not None and self._n_updates % _LOG_LOSS_EVERY == 0:
            self.log_scalar("train/loss", float(loss.detach()))

    def _td_errors(
        self,
        obs: Tensor,
        actions: Tensor,
        rewards: Tensor,
        discounts: Tensor,
        terminated: Tensor,
        next_obs: Tensor,
        beta: float | None,
        cql_alpha: float = 0.0,
    ) -> Tensor:
        """Per-particle, per-transition TD losses ``(n, B)`` of one batch (Double-DQN targets per
        particle; ``beta`` set: pessimistic targets; ``cql_alpha > 0``: plus ``cql_alpha *
        (logsumexp_a Q(s, a) - Q(s, a_taken))`` per particle). Compiled when ``compile=True``."""
        cfg = self.config
        b = obs.shape[0]
        n = self._n_particles
        gen = None if self.q_net.exact_members else self.rng  # exact members draw nothing
        obs_both = torch.cat([obs, next_obs], 0)
        q_both = self.q_net.particles(n, generator=gen)(obs_both)  # (n, 2B, A)
        q_taken = q_both[:, :b].gather(2, actions.view(1, b, 1).expand(n, b, 1)).squeeze(-1)
        with torch.no_grad():
            q_next_target = self.target_net.particles(n, generator=gen)(next_obs)
            if cfg.double_q:
                next_actions = q_both[:, b:].detach().argmax(-1, keepdim=True)
            else:
                next_actions = q_next_target.argmax(-1, keepdim=True)
            q_next = q_next_target.gather(2, next_actions).squeeze(-1)  # (n, B)
            if beta is not None:  # offline: pessimistic targets (mean over members: mean - beta * std)
                q_select = q_both[:, b:].detach() if cfg.double_q else q_next_target
                q_next = _pessimistic_target(q_next_target, q_select, beta)
            target = td_target(rewards, discounts, terminated, q_next)
        if cfg.loss == "huber":
            per = F.smooth_l1_loss(q_taken, target, reduction="none")
        else:
            per = F.mse_loss(q_taken, target, reduction="none")
        if cql_alpha:
            per = per + cql_alpha * (torch.logsumexp(q_both[:, :b], -1) - q_taken)
        return per

    # ------------------------------------------------------------------ learning from a dataset

    def _dataset_actions(self, actions: Tensor) -> Tensor:
        return actions - self.action_start  # the buffer stores 0-based action indices

    def _offline_step(self) -> None:
        self._train_step(beta=self.config.beta, cql_alpha=self.config.cql_alpha)

    def _update_target(self) -> None:
        polyak_update(self.target_net, self.q_net, self.config.tau)  # buffers (standardisers) copied

    # ------------------------------------------------------------------ persistence

    def _policy_state(self) -> dict[str, Any]:
        return {"q_net": self.q_net.state_dict()}

    def _load_policy_state(self, state: dict[str, Any]) -> None:
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["q_net"])

    def _training_state(self) -> dict[str, Any]:
        return {
            "target_net": self.target_net.state_dict(),
            "optimizer": self.trainer.state_dict(),  # the Adam state dict
            "buffer": self.buffer.state_dict(),
            "thompson_idx": self._thompson_idx,
            "pool_seed": str(self._pool_seed),
            "skip": self._autoreset.pending,
            "n_calls": self._n_calls,
            "n_updates": self._n_updates,
            "grad_credit": self._grad_credit,
        }

    def _load_training_state(self, state: dict[str, Any]) -> None:
        self.target_net.load_state_dict(state["target_net"])
        self.trainer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self._pool_seed = int(state["pool_seed"])
        if state["skip"].shape[0] == self.env.num_envs:
            self._thompson_idx = state["thompson_idx"].to(self.device)
            self._autoreset.pending = state["skip"].to(device=self.device, dtype=torch.bool)
        # else: resumed on an env with another num_envs; keep the fresh per-env state from _setup.
        self._n_calls = int(state["n_calls"])
        self._n_updates = int(state["n_updates"])
        credit = state.get("grad_credit")  # absent (or None) in checkpoints made before utd_ratio
        self._grad_credit = 0.0 if credit is None else float(credit)

    # ------------------------------------------------------------------ checkpoint schema (Agent.load)

    @classmethod
    def _checkpoint_limits(cls) -> dict[str, tuple[float, float]]:
        """Documented limits of config fields in a checkpoint (beyond ``schema.CONFIG_LIMITS``)."""
        return {
            "learning_starts": (0, 10**9),
            "n_step": (1, 1000),
            "train_freq": (1, 10**6),
            "gradient_steps": (0, 10_000),
            "target_update_interval": (1, 10**7),
            "epsilon_decay_steps": (0, 10**10),
        }

    @classmethod
    def _checkpoint_spec(
        cls, config: BayesDQNConfig, obs_dim: int, action_space: dict[str, Any], num_envs: int
    ) -> tuple[Any, Any, int]:
        """Specs of the policy and training state for ``config``; call under ``torch.device("meta")``."""
        n_actions = int(action_space["n"])
        q = build_q_net(config, obs_dim, n_actions)
        params = list(q.parameters())
        net = schema.module_spec(q)
        cap = config.buffer_size
        training = {
            "target_net": net,
            "optimizer": schema.adam_spec(params, Trainer(q, lr=config.learning_rate).optimizer),
            "buffer": schema.buffer_spec(cap, obs_dim, (), torch.int64, linked=True),
            "thompson_idx": TensorSpec((torch.int64,), (num_envs,)),
            "pool_seed": JsonSpec("int_str", -(2**63), 2**64),
            "skip": TensorSpec((torch.bool,), (num_envs,)),
            "n_calls": JsonSpec("int", 0, 2**62),
            "n_updates": JsonSpec("int", 0, 2**62),
            "grad_credit": Opt(JsonSpec("float", 0.0, 1e9)),
        }
        row = 4 * (2 * obs_dim + 2) + 8 * 3
        construct = 4 * schema.module_bytes(q) + cap * row + 64 * num_envs
        return {"q_net": net}, training, construct

    @classmethod
    def _check_checkpoint_state(
        cls, config: BayesDQNConfig, meta: dict[str, Any], state: dict[str, Any]
    ) -> None:
        """Buffer positions and links, stored actions and Thompson indices are in range."""
        training = state.get("training")
        if training is None:
            return
        n_actions = int(meta["action_space"]["n"])
        schema.check_buffer_values(
            training["buffer"], "state.training.buffer", config.buffer_size, (0, n_actions)
        )
        n_particles = exact_members(config.family, config.n_members) or config.n_particles
        idx = training["thompson_idx"]
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n_particles):
            raise CheckpointError(f"state.training.thompson_idx must be in [0, {n_particles})")
