"""BayesMPC: model-predictive control with a Bayesian dynamics model and a risk knob (PETS + risk).

The agent learns a Bayesian neural network of the state change ``next_obs - obs`` given
``(obs, action)`` (by default a heteroscedastic ensemble, Chua et al. 2018) and acts by planning:
the cross-entropy method (:class:`riskrl.agents.planning.CEMPlanner`) searches action sequences of
length ``horizon``; each candidate is rolled out through ``n_particles`` frozen posterior draws
(``model.particles(P)``: PETS' TS-inf, the same draw held over the whole horizon), rewards and
terminations come from the environment's own batched torch functions ``env.reward_fn`` and
``env.termination_fn`` (rewards after a predicted termination are masked), and a candidate's score
is ``mean - risk_tolerance * std`` of its predicted returns across particles
(:func:`riskrl.risk.lcb`). The first action of the best sequence is executed; the sampling
distribution is shifted by one step to warm-start the next plan.

``risk_tolerance > 0`` prefers plans whose outcome the model is sure of (safe under model error),
``< 0`` is optimistic (prefers plans that lead where the model is unsure: exploration), ``0`` plans
on the posterior mean return.

All rollouts are one tensor program: states are ``(P, B * C, obs_dim)`` for ``B`` observations,
``C`` candidates and ``P`` particles; the Python loops run over horizon steps and CEM iterations only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from riskrl.bayes import FAMILIES, BayesMLP, Trainer
from riskrl.checkpoint import CheckpointError, JsonSpec, Opt, TensorSpec
from riskrl.envs.autoreset import AutoresetMask

from . import schema
from .base import Agent, hidden_widths, require_ints, restore_generator
from .behavior import BehaviorPolicy, sharpen_spread
from .buffers import ReplayBuffer
from .planning import CEMPlanner, PlanResult
from .transitions import add_valid
from .value import TerminalValue

__all__ = ["BayesMPC", "BayesMPCConfig"]

# Offset that derives the planning generator's seed from the agent's seed (a separate stream, so
# evaluating during training does not change the training run).
_PLAN_SEED_OFFSET = 7919


@dataclass
class BayesMPCConfig:
    """Hyperparameters of :class:`BayesMPC` (defaults sized for classic control on one CPU thread).

    Dynamics model:
        family: ``"ensemble"`` (default, PETS' probabilistic ensemble), ``"bbb"`` or ``"mc_dropout"``.
        n_members, hidden, activation, heteroscedastic: the :class:`riskrl.bayes.BayesMLP`. Small
            widths keep planning cheap: every CEM iteration runs ``horizon`` forward passes of
            ``n_particles * population`` rows.
        learning_rate, weight_decay, batch_size: Adam on the family's loss (one optimiser for the whole
            run: retraining continues from the current weights, as in PETS).
        train_epochs, max_grad_steps: per retraining, epochs over all data, capped at this many steps.
        bootstrap: ensemble members weight each transition by a fixed Poisson(1) count (online
            bootstrap), so members disagree where data is scarce.
    Data:
        learning_starts: uniformly random actions for this many env steps before the first model.
        retrain_interval: retrain every this many env steps (summed over envs) after ``learning_starts``.
            (Not ``train_freq``: BayesDQN's ``train_freq`` counts vectorised steps, as SB3's does.)
        buffer_size, num_envs: transition storage and envs used when the agent builds its own env.
    Planner (CEM):
        horizon, population, n_elites, cem_iterations, cem_alpha, init_std, min_std, keep_elites,
            include_mean: see
            :class:`riskrl.agents.planning.CEMPlanner`.
        n_particles: posterior draws per candidate (ensemble: particle ``i`` is member ``i % K``). The
            default, one particle per ensemble member, keeps planning cheap (cost is linear in
            ``n_particles * population * horizon * cem_iterations``); more particles only add
            aleatoric samples to an ensemble, or more weight draws to ``bbb``.
        sample_aleatoric: add the heteroscedastic head's noise to each predicted step (PETS). The
            spread of predicted returns across particles, which the risk term and
            ``predict_with_uncertainty`` report, then holds the model's aleatoric noise as well as
            its epistemic disagreement; set ``False`` for a purely epistemic std.
        discount: per-step discount of predicted rewards (PETS uses 1).
        disagreement_weight: ``w >= 0``; the plan score becomes
            ``mean - risk_tolerance * (std + w * D)`` where ``D`` is the epistemic disagreement of the
            candidate's rollout: the std across particles of the predicted state-change means (in the
            model's standardised target units, averaged over state dims), summed over the horizon.
            The return std alone is zero wherever the particles agree on the reward (e.g. a sparse
            goal none of them reaches), so optimism (``risk_tolerance < 0``) has nothing to seek
            there; ``D`` rewards visiting states the model is unsure of (an ensemble-disagreement
            exploration bonus, as in MAX / Plan2Explore). ``0`` (default) is plain PETS + risk.
    Terminal value (what lies beyond the horizon, see :class:`riskrl.agents.value.TerminalValue`):
        terminal_value: learn an ensemble ``V(s)`` from the replay data (n-step expectile TD, refit
            after every model retraining) and add ``discount^H * V(s_H)`` of each particle's last
            predicted state to its return. Off by default; it lets a short horizon solve tasks whose
            reward lies further away (MountainCar's goal).
        value_gamma, value_n_step, value_expectile, value_steps: its discount, TD backup length,
            expectile (``0.5`` = mean TD) and gradient steps per refit.
    Behaviour prior (offline; see :class:`riskrl.agents.behavior.BehaviorPolicy`):
        behavior_prior: ``learn_offline`` also fits a behaviour-cloning policy to the dataset's
            actions (one step on the same minibatch as every model step), and once it is fitted each
            plan starts from the sequence that policy follows through the model's mean prediction
            (instead of the previous plan, which stays one candidate), searching around it (MBOP,
            Argenson & Dulac-Arnold 2021). A model fitted to an expert's actions cannot separate
            the actions' effect from the states they were taken in; plans far from those actions
            exploit the error, and the ensemble's disagreement (so ``risk_tolerance``) does not see
            it. On Pendulum's expert data this takes BayesMPC from about -1500 to about -200 (seed 0;
            on random data it costs about 10 points, -165 against -155; the README's offline table
            has the benchmark). Online training never fits it; after ``learn_offline`` a later
            ``learn`` plans around it too. Set ``False`` (any time) to plan without it. The
            search's initial spread is the cloned policy's own (Box: its std, per state, in place
            of ``init_std``; Discrete: its action probabilities): narrow where the data's actions
            follow from the state, as wide as without a prior where they look random.
        behavior_std_power: Box only: the search's initial spread is the clone's std narrowed by
            its own confidence, ``std * min(1, std / 0.577) ** (power - 1)`` (0.577: a uniform's std
            in half-range units; :func:`riskrl.agents.behavior.sharpen_spread`). ``1`` uses the
            clone's std as it is; above 1, spreads as wide as a uniform's (random data) are kept and
            narrow ones (an expert's) shrink further.
        behavior_min_std: a floor on that spread (Box: the std as a fraction of the half-range;
            Discrete: the share of uniform probability mixed into the cloned probabilities), so the
            search can always leave the behaviour.
    """

    # Former names (same meaning and units), still accepted with a DeprecationWarning; checkpoints
    # saved under them load silently.
    RENAMED: ClassVar[dict[str, str]] = {
        "model_family": "family",
        "model_lr": "learning_rate",
        "train_freq": "retrain_interval",
    }

    family: str = "ensemble"
    n_members: int = 5
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "silu"
    heteroscedastic: bool = True
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 64
    train_epochs: int = 20
    max_grad_steps: int = 1000
    bootstrap: bool = True
    learning_starts: int = 200
    retrain_interval: int = 200
    buffer_size: int = 100_000
    num_envs: int = 1
    # H=20 with 3 CEM iterations: 0.6x the planning cost of H=25 x 4 for 2.5 return points with the
    # exact dynamics on Pendulum (-163 vs -161, 3 seeds x 20 episodes); H=15 leaves hanging-down
    # starts stuck (-209). Time-to-threshold: experiments/results/wallclock.md.
    horizon: int = 20
    population: int = 200
    n_elites: int = 20
    cem_iterations: int = 3
    cem_alpha: float = 0.1
    init_std: float = 0.5
    min_std: float = 0.02
    keep_elites: int = 5
    include_mean: bool = True
    n_particles: int = 5
    sample_aleatoric: bool = True
    discount: float = 1.0
    disagreement_weight: float = 0.0
    terminal_value: bool = False
    value_gamma: float = 0.99
    value_n_step: int = 10
    value_expectile: float = 0.8
    value_steps: int = 500
    behavior_prior: bool = True
    behavior_min_std: float = 0.05
    behavior_std_power: float = 1.0

    def __post_init__(self) -> None:
        self.hidden = hidden_widths(self.hidden)
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        positive = (
            "n_members",
            "batch_size",
            "max_grad_steps",
            "retrain_interval",
            "buffer_size",
            "num_envs",
            "horizon",
            "population",
            "n_elites",
            "cem_iterations",
            "n_particles",
            "value_n_step",
            "value_steps",
        )
        require_ints(self, positive, 1)
        require_ints(self, ("learning_starts", "train_epochs"), 0)
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not (math.isfinite(self.disagreement_weight) and self.disagreement_weight >= 0):
            raise ValueError(f"disagreement_weight must be finite and >= 0, got {self.disagreement_weight}")
        if not 0.0 < self.value_gamma <= 1.0:
            raise ValueError(f"value_gamma must be in (0, 1], got {self.value_gamma}")
        if not 0.5 <= self.value_expectile < 1.0:
            raise ValueError(f"value_expectile must be in [0.5, 1), got {self.value_expectile}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if not isinstance(self.behavior_prior, bool):
            raise ValueError(f"behavior_prior must be True or False, got {self.behavior_prior!r}")
        if not (math.isfinite(self.behavior_min_std) and 0.0 <= self.behavior_min_std <= 1.0):
            raise ValueError(f"behavior_min_std must be in [0, 1], got {self.behavior_min_std}")
        if not (math.isfinite(self.behavior_std_power) and self.behavior_std_power >= 1.0):
            raise ValueError(f"behavior_std_power must be finite and >= 1, got {self.behavior_std_power}")


def build_planner(cfg: BayesMPCConfig, action_space: gym.Space, device: Any) -> CEMPlanner:
    """The CEM planner a config describes (``device="meta"`` allocates nothing: only its checks run)."""
    return CEMPlanner(
        action_space,
        horizon=cfg.horizon,
        population=cfg.population,
        n_elites=cfg.n_elites,
        iterations=cfg.cem_iterations,
        alpha=cfg.cem_alpha,
        init_std=cfg.init_std,
        min_std=cfg.min_std,
        keep_elites=cfg.keep_elites,
        include_mean=cfg.include_mean,
        device=device,
    )


def build_model(cfg: BayesMPCConfig, obs_dim: int, act_features: int) -> BayesMLP:
    """The dynamics model (obs + action features -> change of obs) a config describes, on the CPU."""
    return BayesMLP(
        obs_dim + act_features,
        obs_dim,
        hidden=cfg.hidden,
        family=cfg.family,
        heteroscedastic=cfg.heteroscedastic,
        activation=cfg.activation,
        n_members=cfg.n_members,
    )


def build_value(cfg: BayesMPCConfig, obs_dim: int, device: Any) -> TerminalValue:
    """The terminal value ``V(s)`` a config describes."""
    return TerminalValue(
        obs_dim,
        hidden=cfg.hidden,
        activation=cfg.activation,
        n_members=cfg.n_members,
        gamma=cfg.value_gamma,
        n_step=cfg.value_n_step,
        expectile=cfg.value_expectile,
        steps=cfg.value_steps,
        device=device,
    )


class BayesMPC(Agent):
    """PETS-style model-predictive control with a risk-adjusted plan score.

    Args:
        env: a gymnasium id or a riskrl batched env; it must expose batched torch
            ``reward_fn(obs, action, next_obs)`` (and ``termination_fn``) to plan with.
        risk_tolerance: ``score = mean - risk_tolerance * std`` of a plan's predicted return across
            particles: ``> 0`` averse, ``0`` neutral, ``< 0`` optimistic; changeable at any time.
        seed, device: see :class:`riskrl.agents.Agent`.
        **hyperparams: fields of :class:`BayesMPCConfig`.

    Actions are planned, so ``predict(obs, deterministic=...)`` returns the first action of the best
    plan either way; planning randomness comes from a generator seeded by ``seed`` (separate from the
    training generator, so evaluating during training does not change the training run). The
    planner warm-starts from its previous call while the batch size stays the same.
    """

    config_class = BayesMPCConfig
    config: BayesMPCConfig

    # ------------------------------------------------------------------ setup

    def _setup(self) -> None:
        cfg = self.config
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        if self.discrete:
            self.act_dim = 1
            self.act_features = int(self.action_space.n)
            self.act_start = int(self.action_space.start)
        else:
            if len(self.action_space.shape) != 1:
                raise ValueError(f"BayesMPC needs a flat Box action space, got {self.action_space}")
            self.act_dim = self.act_features = int(self.action_space.shape[0])
        self.reward_fn, self.termination_fn = self._model_functions()
        self.planner = build_planner(cfg, self.action_space, self.device)
        self.model = build_model(cfg, self.obs_dim, self.act_features).to(self.device)
        # one Adam for the model's whole life; the agent's generator shuffles and drives bbb/mc_dropout
        # sampling (never torch's global RNG)
        self.trainer = Trainer(
            self.model,
            lr=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            batch_size=cfg.batch_size,
            generator=self.rng,
        )
        self.buffer = ReplayBuffer(
            cfg.buffer_size,
            self.obs_dim,
            action_shape=() if self.discrete else (self.act_dim,),
            action_dtype=torch.int64 if self.discrete else torch.float32,
            device=self.device,
            n_envs=int(self.env.num_envs),
        )
        self.value: TerminalValue | None = None
        if cfg.terminal_value:
            self.value = build_value(cfg, self.obs_dim, self.device)
        n_boot = self.model.n_members  # bootstrap weights per member (1 unless an ensemble)
        self.boot_weights = torch.ones(cfg.buffer_size, n_boot, device=self.device)
        self.plan_rng = torch.Generator(device=self.device).manual_seed(self.seed + _PLAN_SEED_OFFSET)
        self.trained = False
        self.steps_since_train = 0
        self.model_updates = 0
        self._train_dist: Tensor | None = None  # warm start of the training-time planner
        self._eval_dist: Tensor | None = None  # warm start of predict()
        self._autoreset = AutoresetMask(self.env, int(self.env.num_envs), self.device)
        # built last, so the other modules' initial weights do not depend on it; fitted offline only
        self.behavior = BehaviorPolicy(self.obs_dim, self.action_space, cfg.hidden, cfg.activation).to(
            self.device
        )
        self.behavior_fitted = False
        self._behavior_optimizer: torch.optim.Optimizer | None = None

    def _model_functions(self) -> tuple[Any, Any]:
        """The env's batched ``reward_fn`` / ``termination_fn``, probed once on a ``(2, 1, ...)`` batch."""
        name = self.env_id or type(self.env).__name__
        hint = (
            f"BayesMPC plans with the environment's batched torch reward function, but {name} has none "
            "(riskrl's torch-batched envs from riskrl.envs.make_vec provide one; wrapped gymnasium envs do not)"
        )
        reward_fn = getattr(self.env, "reward_fn", None)
        term_fn = getattr(self.env, "termination_fn", None)
        if not callable(reward_fn):
            raise ValueError(hint)
        obs = torch.zeros(2, 1, self.obs_dim, device=self.device)
        if self.discrete:
            act = torch.full((2, 1), self.act_start, dtype=torch.int64, device=self.device)
        else:
            low = torch.as_tensor(self.action_space.low, dtype=torch.float32, device=self.device)
            act = low.expand(2, 1, self.act_dim)
        try:
            reward = reward_fn(obs, act, obs)
            done = term_fn(obs, act, obs) if callable(term_fn) else None
        except NotImplementedError as err:
            raise ValueError(f"{hint}: {err}") from None
        for what, out in (("reward_fn", reward), ("termination_fn", done)):
            if out is not None and tuple(out.shape) != (2, 1):
                raise ValueError(
                    f"{name}.{what} must map (..., obs_dim) batches to (...), got shape {tuple(out.shape)} "
                    "for a (2, 1, obs_dim) input"
                )
        return reward_fn, term_fn if callable(term_fn) else None

    # ------------------------------------------------------------------ model rollouts

    def _action_features(self, actions: Tensor) -> Tensor:
        if self.discrete:
            return torch.nn.functional.one_hot(actions.long() - self.act_start, self.act_features).float()
        return actions.float()

    @torch.no_grad()
    def predicted_returns(self, obs: Tensor, actions: Tensor, generator: torch.Generator) -> Tensor:
        """Predicted returns ``(P, B, C)`` of action sequences ``(B, C, H[, act_dim])`` from ``obs (B, obs_dim)``.

        One frozen posterior draw of ``P`` particles is used for every candidate and every step.
        """
        return self._rollout(obs, actions, generator, disagreement=False)[0]

    @torch.no_grad()
    def _rollout(
        self, obs: Tensor, actions: Tensor, generator: torch.Generator, disagreement: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Returns ``(P, B, C)`` and, if asked, the summed state disagreement ``(B, C)``."""
        cfg = self.config
        b, c, h = actions.shape[:3]
        p = cfg.n_particles
        particles = self.model.particles(p, generator=generator)
        state = obs.to(torch.float32).repeat_interleave(c, dim=0).expand(p, b * c, self.obs_dim)
        alive = torch.ones(p, b * c, dtype=torch.bool, device=obs.device)
        total = torch.zeros(p, b * c, device=obs.device)
        discount = 1.0
        spread = torch.zeros(b * c, device=obs.device) if disagreement else None
        scaler = getattr(self.model, "y_scaler", None)
        y_std = scaler.std if scaler is not None else torch.ones(self.obs_dim, device=obs.device)
        feats = self._action_features(actions).reshape(b * c, h, -1)
        raw = actions.reshape(b * c, h, *actions.shape[3:])
        for t in range(h):
            feat_t = feats[:, t].expand(p, b * c, feats.shape[-1])
            mean, std = particles.mean_and_std(torch.cat([state, feat_t], dim=-1))
            if spread is not None and p > 1:
                spread = spread + (mean / y_std).std(0, correction=0).mean(-1)
            if cfg.sample_aleatoric:
                noise = torch.randn(mean.shape, generator=generator, device=mean.device)
                mean = mean + std * noise
            next_state = state + mean
            act_t = raw[:, t].expand(p, *raw[:, t].shape)
            reward = self.reward_fn(state, act_t, next_state).to(total.dtype)
            total = total + discount * torch.where(alive, reward, torch.zeros_like(reward))
            if self.termination_fn is not None:
                alive = alive & ~self.termination_fn(state, act_t, next_state).to(torch.bool)
            discount *= cfg.discount
            state = next_state
        if self.value is not None:
            beyond = self.value.particles(p)(state)
            total = total + discount * torch.where(alive, beyond, torch.zeros_like(beyond))
        return total.reshape(p, b, c), None if spread is None else spread.reshape(b, c)

    @torch.no_grad()
    def behavior_plan(self, obs: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """The planner's starting distribution from the behaviour policy, for ``obs (B, obs_dim)``.

        The policy's most likely action is followed through the dynamics model's mean prediction
        (averaged over ``P`` particles, no aleatoric noise) for ``horizon`` steps. Box: its means
        ``(B, H, act_dim)`` and stds (fractions of the half-range, at least ``behavior_min_std``);
        Discrete: its action probabilities ``(B, H, n)`` mixed with ``behavior_min_std`` of uniform
        probability, and ``None``.
        """
        cfg = self.config
        p = cfg.n_particles
        particles = self.model.particles(p, generator=generator)
        state = obs.to(torch.float32)
        floor = cfg.behavior_min_std
        steps, stds = [], []
        for _ in range(cfg.horizon):
            if self.discrete:
                probs = self.behavior.probs(state)
                steps.append((1 - floor) * probs + floor / self.act_features)
                feat = self._action_features(probs.argmax(-1) + self.act_start)
            else:
                feat, std = self.behavior.distribution(state)
                steps.append(feat)
                stds.append(sharpen_spread(std, cfg.behavior_std_power).clamp(min=floor))
            x = torch.cat([state, feat], dim=-1).expand(
                p, *state.shape[:-1], state.shape[-1] + feat.shape[-1]
            )
            mean, _ = particles.mean_and_std(x)
            state = state + mean.mean(0)
        return torch.stack(steps, dim=1), torch.stack(stds, dim=1) if stds else None

    def _plan(self, obs: Tensor, dist: Tensor | None, generator: torch.Generator) -> PlanResult:
        init_std: Tensor | None = None
        previous: Tensor | None = None
        if self.config.behavior_prior and self.behavior_fitted:
            if dist is not None and dist.shape[0] == obs.shape[0]:  # the last plan stays a candidate
                shifted = self.planner.shift(dist)
                previous = (shifted.argmax(-1) + self.act_start if self.discrete else shifted).unsqueeze(1)
            dist, init_std = self.behavior_plan(obs, generator)
        elif dist is None or dist.shape[0] != obs.shape[0]:
            dist = self.planner.initial(obs.shape[0])
        else:
            dist = self.planner.shift(dist)
        w = self.config.disagreement_weight

        def evaluate(acts: Tensor) -> Tensor | tuple[Tensor, Tensor]:
            if w == 0:
                return self.predicted_returns(obs, acts, generator)
            returns, spread = self._rollout(obs, acts, generator, disagreement=True)
            assert spread is not None
            return returns, w * spread

        return self.planner.plan(
            evaluate, dist, self.risk_tolerance, generator, init_std=init_std, candidates=previous
        )

    def plan(self, obs: Any) -> PlanResult:
        """Plan for a batch of observations with the evaluation generator (full :class:`PlanResult`)."""
        t, _, _ = self._obs_tensor(obs)
        return self._plan_eval(t)

    def _plan_eval(self, obs: Tensor) -> PlanResult:
        with torch.no_grad():
            result = self._plan(obs, self._eval_dist, self.plan_rng)
        self._eval_dist = result.dist
        return result

    # ------------------------------------------------------------------ acting

    def _first_action(self, result: PlanResult) -> Tensor:
        return result.actions[:, 0]

    def _act(self, obs: Tensor, deterministic: bool) -> Tensor:
        return self._first_action(self._plan_eval(obs))

    def _uncertainty(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The chosen first action and the mean and std across particles of its plan's predicted
        return (epistemic; with ``sample_aleatoric`` also the model's aleatoric noise)."""
        result = self._plan_eval(obs)
        return self._first_action(result), result.mean, result.std

    def _random_actions(self, n: int) -> Tensor:
        if self.discrete:
            idx = torch.randint(0, self.act_features, (n,), generator=self.rng, device=self.device)
            return idx + self.act_start
        low, high = self.planner.low, self.planner.high
        return low + (high - low) * torch.rand((n, self.act_dim), generator=self.rng, device=self.device)

    # ------------------------------------------------------------------ learning

    def _collect_step(self, obs: Tensor) -> tuple[Tensor, dict[str, Any]]:
        cfg = self.config
        n = self.env.num_envs
        obs = obs.to(self.device, torch.float32)
        if not self.trained:
            action = self._random_actions(n)
        else:
            with torch.no_grad():
                result = self._plan(obs, self._train_dist, self.rng)
            self._train_dist = result.dist
            action = self._first_action(result)
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        next_obs = torch.as_tensor(next_obs, device=self.device, dtype=torch.float32)
        terminated = torch.as_tensor(terminated, device=self.device).to(torch.bool)
        truncated = torch.as_tensor(truncated, device=self.device).to(torch.bool)
        reward = torch.as_tensor(reward, device=self.device, dtype=torch.float32)
        done = terminated | truncated
        real_next = self._autoreset.real_next_obs(next_obs, done, info)
        add_valid(self._add, self._autoreset.valid(), obs, action, reward, real_next, terminated, done)
        self._autoreset.update(done)
        if self._train_dist is not None:  # envs that ended restart from the uninformed plan (no host sync)
            fresh = self.planner.initial(n)
            self._train_dist = torch.where(done.view(-1, 1, 1), fresh, self._train_dist)
        self.steps_since_train += n
        timesteps = self.num_timesteps + n
        if timesteps >= cfg.learning_starts and len(self.buffer) > 0:
            if not self.trained or self.steps_since_train >= cfg.retrain_interval:
                self.train_model()
        return next_obs, info

    def _add(self, *transition: Tensor | None) -> None:
        """Store ``transition`` (the arguments of :meth:`ReplayBuffer.add`); with the bootstrap, every
        ensemble member draws a Poisson(1) count for each new row."""
        rows = self.buffer.add(*transition)
        if self.config.bootstrap and self.boot_weights.shape[1] > 1:
            rate = torch.ones(rows.shape[0], self.boot_weights.shape[1], device=self.device)
            self.boot_weights[rows] = torch.poisson(rate, generator=self.rng)

    def train_model(self) -> float:
        """Retrain the dynamics model on every stored transition; returns the last epoch's mean loss."""
        cfg = self.config
        data = self.buffer.all()
        x = torch.cat([data["obs"], self._action_features(data["actions"])], dim=-1)
        y = data["next_obs"] - data["obs"]
        n = x.shape[0]
        self.model.fit_standardizers(x, y)
        weights = self.boot_weights[:n] if self.boot_weights.shape[1] > 1 else None
        self.model.train()
        epochs = self.trainer.train(
            x, y, cfg.train_epochs, member_weights=weights, max_steps=cfg.max_grad_steps
        )
        epoch_losses = list(epochs)  # device scalars: one host sync below
        loss_value = float(epoch_losses[-1]) if epoch_losses else float("nan")
        self.model.eval()
        if self.value is not None:
            self.log_scalar("train/value_loss", self.value.fit(self.buffer, self.rng))
        self.trained = True
        self.steps_since_train = 0
        self.model_updates += 1
        self.log_scalar("train/model_loss", loss_value)
        return loss_value

    # ------------------------------------------------------------------ learning from a dataset

    def _offline_begin(self) -> None:
        """Draw the members' bootstrap weights for the dataset rows; fit the standardisers to it."""
        data = self.buffer.all()
        n = data["obs"].shape[0]
        if self.config.bootstrap and self.boot_weights.shape[1] > 1:
            rate = torch.ones(n, self.boot_weights.shape[1], device=self.device)
            self.boot_weights[:n] = torch.poisson(rate, generator=self.rng)
        else:
            self.boot_weights[:n] = 1.0
        self._offline_x = torch.cat([data["obs"], self._action_features(data["actions"])], dim=-1)
        self._offline_y = data["next_obs"] - data["obs"]
        self.trainer.reset_position()
        self.trainer.reset_loss()
        self.model.fit_standardizers(self._offline_x, self._offline_y)
        self.model.train()
        self._behavior_optimizer = None
        if self.config.behavior_prior:
            self._offline_obs, self._offline_actions = data["obs"], data["actions"]
            self.behavior.obs_scaler.fit(data["obs"])
            self._behavior_optimizer = torch.optim.Adam(
                self.behavior.parameters(), lr=self.config.learning_rate
            )

    def _offline_step(self) -> None:
        """One model gradient step on the next full minibatch of a per-epoch permutation of the dataset
        (the rows left over when the batch size does not divide the dataset wait for a later epoch)."""
        x, y = self._offline_x, self._offline_y
        n = x.shape[0]
        weights = self.boot_weights[:n] if self.boot_weights.shape[1] > 1 else None
        idx = self.trainer.next_batch(n, drop_last=True)
        self.trainer.batch_step(x, y, idx, n, weights)
        if self._behavior_optimizer is not None:  # the behaviour policy learns from the same rows
            loss = self.behavior.loss(self._offline_obs[idx], self._offline_actions[idx])
            self._behavior_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._behavior_optimizer.step()

    def _offline_end(self) -> None:
        """The model is trained; the terminal value (if enabled) is fitted to the dataset."""
        self.model.eval()
        if self.value is not None:
            self.log_scalar("train/value_loss", self.value.fit(self.buffer, self.rng))
        loss = self.trainer.last_loss  # the last step's
        self.log_scalar("train/model_loss", float(loss) if loss is not None else float("nan"))
        self.trained = True
        self.steps_since_train = 0
        self.model_updates += 1
        if self._behavior_optimizer is not None:
            self.behavior_fitted = True
        self._offline_x = self._offline_y = None  # type: ignore[assignment]
        self._offline_obs = self._offline_actions = None  # type: ignore[assignment]
        self._behavior_optimizer = None
        self.trainer.reset_position()

    # ------------------------------------------------------------------ persistence

    def _policy_state(self) -> dict[str, Any]:
        return {
            "model": dict(self.model.state_dict()),
            "value": None if self.value is None else self.value.state_dict(),
            "behavior": dict(self.behavior.state_dict()) if self.behavior_fitted else None,
            "trained": self.trained,
            "plan_rng": self.plan_rng.get_state(),
            "eval_dist": self._eval_dist,
        }

    def _load_policy_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.model.eval()
        if self.value is not None:
            if state.get("value") is None:
                raise ValueError("this checkpoint has no terminal value; load it with terminal_value=False")
            self.value.load_state_dict(state["value"])
        behavior = state.get("behavior")  # absent in checkpoints saved before the behaviour prior
        if behavior is not None:
            self.behavior.load_state_dict(behavior)
        self.behavior_fitted = behavior is not None
        self.trained = bool(state["trained"])
        restore_generator(self.plan_rng, state["plan_rng"], fallback_seed=self.seed + _PLAN_SEED_OFFSET)
        self._eval_dist = state["eval_dist"]

    def _training_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.trainer.state_dict(),  # the Adam state dict
            "buffer": self.buffer.state_dict(),
            "boot_weights": self.boot_weights[: len(self.buffer)],
            "steps_since_train": self.steps_since_train,
            "model_updates": self.model_updates,
            "train_dist": self._train_dist,
            "pending_reset": self._autoreset.pending,
        }

    def _load_training_state(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state["optimizer"])  # pack_state keeps int keys and tuples
        self.buffer.load_state_dict(state["buffer"])
        n = len(self.buffer)
        self.boot_weights[:n] = state["boot_weights"]
        self.steps_since_train = int(state["steps_since_train"])
        self.model_updates = int(state["model_updates"])
        self._train_dist = state["train_dist"]
        if state["pending_reset"] is not None:  # None in checkpoints saved before the first step
            self._autoreset.pending = state["pending_reset"].to(device=self.device, dtype=torch.bool)

    # ------------------------------------------------------------------ checkpoint schema (Agent.load)

    @classmethod
    def _checkpoint_limits(cls) -> dict[str, tuple[float, float]]:
        """Documented limits of config fields in a checkpoint (beyond ``schema.CONFIG_LIMITS``)."""
        return {
            "horizon": (1, 1000),
            "population": (1, 100_000),
            "n_elites": (1, 100_000),
            "keep_elites": (0, 100_000),
            "cem_iterations": (1, 100),
            "train_epochs": (0, 100_000),
            "max_grad_steps": (1, 10**7),
            "learning_starts": (0, 10**9),
            "retrain_interval": (1, 10**9),
            "value_n_step": (1, 1000),
            "value_steps": (1, 10**6),
        }

    @classmethod
    def _checkpoint_spec(
        cls, config: BayesMPCConfig, obs_dim: int, action_space: dict[str, Any], num_envs: int
    ) -> tuple[Any, Any, int]:
        """Specs of the policy and training state for ``config``; call under ``torch.device("meta")``."""
        discrete = action_space["type"] == "Discrete"
        act_features = int(action_space["n"]) if discrete else int(action_space["shape"][0])
        if discrete:
            space: gym.Space = gym.spaces.Discrete(act_features, start=int(action_space["start"]))
        else:
            space = gym.spaces.Box(
                np.asarray(action_space["low"], np.float32), np.asarray(action_space["high"], np.float32)
            )
        build_planner(config, space, "meta")  # the planner's own checks (n_elites <= population, ...)
        model = build_model(config, obs_dim, act_features)
        behavior = BehaviorPolicy(obs_dim, space, config.hidden, config.activation)
        trainer = Trainer(model, lr=config.learning_rate, weight_decay=config.weight_decay)
        value_spec: Any = None
        value_bytes = 0
        if config.terminal_value:
            value = build_value(config, obs_dim, "meta")
            value_spec = {
                "net": schema.module_spec(value.net),
                "target": schema.module_spec(value.target),
                "optimizer": schema.adam_spec(value.trainer.params, value.trainer.optimizer),
            }
            value_bytes = 4 * schema.module_bytes(value.net)
        h = config.horizon
        policy = {
            "model": schema.module_spec(model),
            "value": value_spec,
            "behavior": Opt(schema.module_spec(behavior)),
            "trained": JsonSpec("bool"),
            "plan_rng": schema.rng_spec(),
            "eval_dist": Opt(TensorSpec(schema.F32, ((1, 4096), h, act_features))),
        }
        cap = config.buffer_size
        n_boot = model.n_members
        action_shape = () if discrete else (act_features,)
        training = {
            "optimizer": schema.adam_spec(trainer.params, trainer.optimizer),
            "buffer": schema.buffer_spec(
                cap, obs_dim, action_shape, torch.int64 if discrete else torch.float32, linked=True
            ),
            "boot_weights": TensorSpec(schema.F32, ((0, cap), n_boot)),
            "steps_since_train": JsonSpec("int", 0, 2**62),
            "model_updates": JsonSpec("int", 0, 2**62),
            "train_dist": Opt(TensorSpec(schema.F32, (num_envs, h, act_features))),
            "pending_reset": Opt(TensorSpec((torch.bool,), (num_envs,))),
        }
        row = 4 * (2 * obs_dim + 2 + n_boot) + 8 * 2 + (8 if discrete else 4 * act_features)
        width = max([obs_dim + act_features, *config.hidden])
        planning = 4 * 4 * config.n_particles * config.population * width  # one rollout step, batch 1
        modules = 3 * schema.module_bytes(model) + schema.module_bytes(behavior) + value_bytes
        construct = modules + cap * row + planning
        return policy, training, construct

    @classmethod
    def _check_checkpoint_state(
        cls, config: BayesMPCConfig, meta: dict[str, Any], state: dict[str, Any]
    ) -> None:
        """Buffer positions, links and actions, planner distributions and RNG states are valid."""
        schema.check_generator_state(state["policy"]["plan_rng"], "state.policy.plan_rng")
        space = meta["action_space"]
        for key, dist in (("state.policy.eval_dist", state["policy"]["eval_dist"]),):
            if dist is not None and not bool(torch.isfinite(dist).all()):
                raise CheckpointError(f"{key} holds NaN or inf")
        training = state.get("training")
        if training is None:
            return
        discrete = space["type"] == "Discrete"
        start = int(space.get("start", 0))
        action_range = (start, start + int(space["n"])) if discrete else None
        schema.check_buffer_values(
            training["buffer"], "state.training.buffer", config.buffer_size, action_range
        )
        n = int(training["buffer"]["size"])
        if training["boot_weights"].shape[0] != n:
            raise CheckpointError(
                f"state.training.boot_weights has {training['boot_weights'].shape[0]} rows, size is {n}"
            )
        dist = training["train_dist"]
        if dist is not None and not bool(torch.isfinite(dist).all()):
            raise CheckpointError("state.training.train_dist holds NaN or inf")
