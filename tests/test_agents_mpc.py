"""BayesMPC: the risk-adjusted plan choice, learning on Pendulum, save/load and input errors."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch

import riskrl
from riskrl.agents import BayesMPC, schema
from riskrl.agents.mpc import BayesMPCConfig
from riskrl.agents.planning import CEMPlanner

# ---------------------------------------------------------------------------------- test doubles


class ToyEnv:
    """A minimal batched env with a 3-action Discrete space; reward = change of obs[0]."""

    metadata: ClassVar[dict] = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, n_actions: int = 3) -> None:
        self.num_envs = num_envs
        self.device = torch.device("cpu")
        self.single_observation_space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
        self.single_action_space = gym.spaces.Discrete(n_actions)

    def reward_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return next_obs[..., 0] - obs[..., 0]

    def termination_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(next_obs.shape[:-1], dtype=torch.bool)

    def reset(self, seed: int | None = None):
        return torch.zeros(self.num_envs, 2), {}

    def step(self, actions: torch.Tensor):
        n = self.num_envs
        return (
            torch.zeros(n, 2),
            torch.zeros(n),
            torch.zeros(n, dtype=torch.bool),
            torch.zeros(n, dtype=torch.bool),
            {},
        )


class FixedPosterior(torch.nn.Module):
    """Dynamics test double: particle ``p`` moves obs[0] by ``table[p % P, action]`` (no noise)."""

    def __init__(self, table: torch.Tensor, n_actions: int) -> None:
        super().__init__()
        self.register_buffer("table", table.float())
        self.n_actions = n_actions

    def particles(self, n: int, generator: torch.Generator | None = None):
        table = self.table
        k = self.n_actions

        class P:
            def mean_and_std(self, x: torch.Tensor):
                action = x[..., -k:].argmax(-1)  # (n, N) from the one-hot action features
                rows = torch.arange(n)[:, None] % table.shape[0]
                delta = torch.zeros(*x.shape[:-1], x.shape[-1] - k)
                delta[..., 0] = table[rows, action]
                return delta, torch.zeros_like(delta)

        return P()


# Two particles; returns per action: a0 {1, 1} (mean 1, std 0), a1 {1, 3} (mean 2, std 1),
# a2 {-4, 4} (mean 0, std 4). Scores: a0 = 1, a1 = 2 - k, a2 = -4k; a1 vs a0 break even at k = 1,
# a2 vs a1 at k = -2/3.
TABLE = torch.tensor([[1.0, 1.0, -4.0], [1.0, 3.0, 4.0]])
MEANS, STDS = [1.0, 2.0, 0.0], [0.0, 1.0, 4.0]


def _expected(k: float) -> int:
    return int(np.argmax([m - k * s for m, s in zip(MEANS, STDS)]))


def _stub_agent(risk_tolerance: float = 0.0) -> BayesMPC:
    agent = BayesMPC(
        ToyEnv(),
        risk_tolerance=risk_tolerance,
        seed=0,
        horizon=1,
        population=64,
        n_elites=4,
        cem_iterations=2,
        n_particles=2,
        sample_aleatoric=False,
    )
    agent.model = FixedPosterior(TABLE, 3)
    return agent


@pytest.mark.parametrize("k", [-1.0, 0.0, 0.5, 2.0])
def test_plan_is_argmax_of_lower_confidence_bound(k: float) -> None:
    agent = _stub_agent(risk_tolerance=k)
    obs = np.zeros((4, 2), dtype=np.float32)
    action, state = agent.predict(obs)
    assert state is None
    assert action.tolist() == [_expected(k)] * 4
    act, mean, std = agent.predict_with_uncertainty(obs)
    assert act.tolist() == action.tolist()
    np.testing.assert_allclose(mean, [MEANS[_expected(k)]] * 4, atol=1e-6)
    np.testing.assert_allclose(std, [STDS[_expected(k)]] * 4, atol=1e-6)


@pytest.mark.parametrize(("k", "expected"), [(0.99, 1), (1.01, 0), (-0.6, 1), (-0.7, 2)])
def test_plan_switches_at_break_even(k: float, expected: int) -> None:
    agent = _stub_agent()
    agent.risk_tolerance = k  # changeable at any time
    assert int(agent.predict(np.zeros(2, dtype=np.float32))[0]) == expected == _expected(k)


def test_disagreement_weight_adds_state_disagreement_to_the_risk_term() -> None:
    """D per action (std over particles of the predicted delta, averaged over 2 dims): 0, 0.5, 2.
    At k = -0.5 plain optimism picks a1 (2.5 vs 2.0); with w = 1 a2 wins (3.0 vs 2.75)."""
    agent = _stub_agent(risk_tolerance=-0.5)
    obs = np.zeros((2, 2), dtype=np.float32)
    assert agent.predict(obs)[0].tolist() == [1, 1]
    agent.config.disagreement_weight = 1.0
    action, _mean, std = agent.predict_with_uncertainty(obs)
    assert action.tolist() == [2, 2]
    np.testing.assert_allclose(std, [4.0, 4.0], atol=1e-6)  # still the return std
    agent.risk_tolerance = 0.0  # neutral plans ignore it
    assert agent.predict(obs)[0].tolist() == [1, 1]
    with pytest.raises(ValueError, match="disagreement_weight"):
        BayesMPCConfig(disagreement_weight=-1.0)


def test_termination_masks_later_rewards() -> None:
    """A plan that terminates at step 1 gets only its first reward."""

    class Terminating(ToyEnv):
        def termination_fn(self, obs, action, next_obs):
            return action == 2  # action 2 ends the episode

    agent = BayesMPC(Terminating(), seed=0, horizon=3, n_particles=2, sample_aleatoric=False)
    agent.model = FixedPosterior(TABLE, 3)
    actions = torch.tensor([[[2, 1, 1], [1, 1, 1], [2, 2, 2]]])  # (B=1, C=3, H=3)
    returns = agent.predicted_returns(torch.zeros(1, 2), actions, torch.Generator().manual_seed(0))
    torch.testing.assert_close(returns, torch.tensor([[[-4.0, 3.0, -4.0]], [[4.0, 9.0, 4.0]]]))


def test_cem_planner_finds_continuous_optimum() -> None:
    """Box CEM: the best sequence approaches the maximiser of a known concave return."""
    planner = CEMPlanner(
        gym.spaces.Box(-2.0, 2.0, (1,)), horizon=4, population=100, n_elites=10, iterations=5
    )
    target = torch.tensor([0.5, -1.0, 1.5, 0.0])

    def evaluate(actions: torch.Tensor) -> torch.Tensor:  # (B, C, H, 1) -> (P=1, B, C)
        return -(actions[..., 0] - target).square().sum(-1)[None]

    g = torch.Generator().manual_seed(0)
    result = planner.plan(evaluate, planner.initial(2), 0.0, g)
    assert result.actions.shape == (2, 4, 1)
    torch.testing.assert_close(result.actions[..., 0], target.expand(2, 4), atol=0.15, rtol=0)
    assert bool((result.actions.abs() <= 2.0).all())


def test_cem_include_mean_rescores_the_warm_start() -> None:
    """Box CEM with include_mean: a warm start at the optimum is returned exactly; elites carry over."""
    planner = CEMPlanner(
        gym.spaces.Box(-2.0, 2.0, (1,)),
        horizon=4,
        population=50,
        n_elites=5,
        iterations=2,
        keep_elites=3,
        include_mean=True,
    )
    target = torch.tensor([0.5, -1.0, 1.5, 0.0])

    def evaluate(actions: torch.Tensor) -> torch.Tensor:
        return -(actions[..., 0] - target).square().sum(-1)[None]

    warm = target.expand(2, 4).unsqueeze(-1).clone()
    result = planner.plan(evaluate, warm, 0.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(result.actions, warm, rtol=0, atol=0)
    assert planner.keep_elites == 3
    assert (
        CEMPlanner(gym.spaces.Box(-1.0, 1.0, (1,)), population=8, n_elites=4, keep_elites=9).keep_elites == 4
    )


def test_cem_scores_given_candidates_and_per_step_initial_spreads() -> None:
    """Candidates (e.g. the previous plan) are scored in the first iteration: one at the optimum is
    returned exactly even when the search starts far away with a tiny spread (a tensor init_std per
    observation and step); Discrete candidates are action values from the space's start."""
    box = CEMPlanner(gym.spaces.Box(-2.0, 2.0, (1,)), horizon=4, population=16, n_elites=4, iterations=1)
    target = torch.tensor([0.5, -1.0, 1.5, 0.0])

    def evaluate(actions: torch.Tensor) -> torch.Tensor:
        return -(actions[..., 0] - target).square().sum(-1)[None]

    start = torch.full((2, 4, 1), -2.0)
    tiny = torch.full((2, 4, 1), 1e-3)
    given = target.expand(2, 1, 4).unsqueeze(-1)
    g = torch.Generator().manual_seed(0)
    found = box.plan(evaluate, start, 0.0, g, init_std=tiny, candidates=given)
    torch.testing.assert_close(found.actions, given[:, 0], rtol=0, atol=0)
    alone = box.plan(evaluate, start, 0.0, g, init_std=tiny)
    assert float((alone.actions + 2.0).abs().max()) < 0.01  # the tiny spread kept the search at -2
    with pytest.raises(ValueError, match="init_std"):
        box.plan(evaluate, start, 0.0, g, init_std=-1.0)
    discrete = CEMPlanner(gym.spaces.Discrete(3, start=-1), horizon=3, population=8, n_elites=2, iterations=1)
    best = torch.tensor([1, -1, 0])

    def matches(actions: torch.Tensor) -> torch.Tensor:
        return (actions == best).float().sum(-1)[None]

    sure = torch.nn.functional.one_hot(torch.zeros(2, 3, dtype=torch.long), 3).float()  # always action -1
    found = discrete.plan(matches, sure, 0.0, g, candidates=best.expand(2, 1, 3))
    assert torch.equal(found.actions, best.expand(2, 3))


def _pendulum_step(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Gymnasium Pendulum-v1's true dynamics on (cos, sin, thdot) observations."""
    th = torch.atan2(x[..., 1], x[..., 0])
    thdot = (x[..., 2] + (15.0 * torch.sin(th) + 3.0 * u[..., 0].clamp(-2, 2)) * 0.05).clamp(-8, 8)
    th = th + thdot * 0.05
    return torch.stack([torch.cos(th), torch.sin(th), thdot], -1)


class TruePendulum(torch.nn.Module):
    """Dynamics test double: the exact Pendulum-v1 state change, no uncertainty."""

    def particles(self, n: int, generator: torch.Generator | None = None):
        class P:
            def mean_and_std(self, x: torch.Tensor):
                delta = _pendulum_step(x[..., :3], x[..., 3:]) - x[..., :3]
                return delta, torch.zeros_like(delta)

        return P()


def test_default_planner_swings_up_from_hanging_down() -> None:
    """With exact dynamics the default planner swings up from every start, including one where a
    15-step horizon stays stuck at the max-torque equilibrium (theta = pi + 0.2: about -1500)."""
    agent = BayesMPC("Pendulum-v1", seed=0, n_particles=1)
    agent.model, agent.trained = TruePendulum(), True
    th = torch.tensor([math.pi, math.pi - 0.3, math.pi + 0.2, 2.5])
    x = torch.stack([th.cos(), th.sin(), torch.tensor([0.0, 0.0, 0.5, -1.0])], -1)
    ret = torch.zeros(4)
    for _ in range(200):
        u = torch.as_tensor(agent.predict(x.numpy())[0])
        ret += agent.reward_fn(x, u, x)
        x = _pendulum_step(x, u)
    assert bool((torch.atan2(x[:, 1], x[:, 0]).abs() < 0.1).all()), x
    assert bool((ret > -400).all()), ret


# ---------------------------------------------------------------------------------- learning


FAST = dict(
    learning_starts=200,
    retrain_interval=200,
    horizon=15,
    population=150,
    n_elites=15,
    cem_iterations=3,
    n_particles=5,
)


def test_learns_pendulum_quickly() -> None:
    agent = BayesMPC("Pendulum-v1", seed=0, **FAST)
    agent.learn(400)  # one random episode + one planned episode
    # the step after the truncation only resets the env (NEXT_STEP autoreset): not a transition
    assert agent.model_updates == 2 and len(agent.buffer) == 399
    result = riskrl.evaluate(agent, "Pendulum-v1", n_episodes=3, seed=123, bootstrap=False)
    # random actions score about -1200; a solved swing-up about -150
    assert result.mean > -500, result.returns
    assert np.isfinite(result.mean_epistemic_std)


def test_bbb_dynamics_model_fits_a_fixed_buffer() -> None:
    """bbb: retraining on a fixed buffer lowers the model's predictive error on it."""
    agent = BayesMPC(
        "Pendulum-v1",
        seed=1,
        family="bbb",
        learning_starts=50,
        retrain_interval=50,
        train_epochs=2,
        horizon=5,
        population=20,
        n_elites=4,
        n_particles=4,
    )
    agent.learn(80)
    assert agent.model_updates == 1
    data = agent.buffer.all()
    x = torch.cat([data["obs"], data["actions"]], -1)
    y = data["next_obs"] - data["obs"]

    def error() -> float:
        pred = agent.model.predict(x, n_samples=16, generator=torch.Generator().manual_seed(0))
        return float((pred.mean - y).square().mean())

    before = error()
    agent.config.train_epochs = 30
    assert math.isfinite(agent.train_model())
    assert agent.model_updates == 2 and error() < 0.5 * before, (before, error())


class ShiftEnv(ToyEnv):
    """``Discrete(3, start=-1)``: action ``a`` moves obs[0] by ``0.2 a``; the reward prefers obs[0] = 1."""

    def __init__(self, num_envs: int = 4) -> None:
        super().__init__(num_envs)
        self.single_action_space = gym.spaces.Discrete(3, start=-1)
        self.state = torch.zeros(num_envs, 2)

    def reward_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return -(next_obs[..., 0] - 1.0).abs()

    def reset(self, seed: int | None = None):
        g = torch.Generator().manual_seed(0 if seed is None else seed)
        self.state = torch.zeros(self.num_envs, 2)
        self.state[:, 0] = torch.rand(self.num_envs, generator=g) * 4 - 2
        return self.state.clone(), {}

    def step(self, actions: torch.Tensor):
        n = self.num_envs
        self.state[:, 0] += 0.2 * torch.as_tensor(actions).reshape(n).float()
        reward = self.reward_fn(self.state, actions, self.state)
        no = torch.zeros(n, dtype=torch.bool)
        return self.state.clone(), reward, no, no, {}


def test_discrete_plan_picks_the_action_the_reward_prefers() -> None:
    """A model learnt from random play in ShiftEnv plans, from obs[0] = 0, 2 and 1, the actions that
    move towards 1 (+1, -1) or stay there (0), in the env's own action encoding (start=-1)."""
    agent = BayesMPC(
        ShiftEnv(),
        seed=0,
        hidden=(32, 32),
        learning_starts=200,
        retrain_interval=10**6,
        train_epochs=60,
        horizon=1,
        population=16,
        n_elites=4,
        n_particles=5,
        sample_aleatoric=False,
    )
    agent.learn(200)
    assert agent.model_updates == 1
    obs = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    action, mean, _std = agent.predict_with_uncertainty(obs)
    assert action.dtype == np.int64 and action.tolist() == [1, -1, 0]
    np.testing.assert_allclose(mean, [-0.8, -0.8, 0.0], atol=0.05)


# ---------------------------------------------------------------------------------- persistence


def test_save_load_predicts_identically(tmp_path) -> None:
    agent = BayesMPC(
        "Pendulum-v1",
        seed=3,
        learning_starts=50,
        retrain_interval=50,
        train_epochs=3,
        horizon=6,
        population=32,
        n_elites=4,
        n_particles=5,
    )
    agent.learn(100)
    path = agent.save(tmp_path / "mpc.riskrl")
    obs = np.random.default_rng(0).uniform(-1, 1, (4, 3)).astype(np.float32)
    loaded = BayesMPC.load(path)
    for _ in range(2):  # the warm start and planning generator are restored too
        np.testing.assert_array_equal(agent.predict(obs)[0], loaded.predict(obs)[0])
    averse = BayesMPC.load(path, risk_tolerance=1.5)
    assert averse.risk_tolerance == 1.5
    assert averse.predict(obs)[0].shape == (4, 1)
    policy_only = agent.save(tmp_path / "policy.riskrl", include_training_state=False)
    np.testing.assert_array_equal(agent.predict(obs)[0], BayesMPC.load(policy_only).predict(obs)[0])


def test_resume_is_bit_identical(tmp_path) -> None:
    kw = dict(
        learning_starts=40,
        retrain_interval=30,
        train_epochs=2,
        horizon=5,
        population=24,
        n_elites=4,
        n_particles=5,
    )
    straight = BayesMPC("Pendulum-v1", seed=5, **kw).learn(120)
    first = BayesMPC("Pendulum-v1", seed=5, **kw).learn(70)
    path = first.save(tmp_path / "half.riskrl")
    resumed = BayesMPC.load(path).learn_until(120)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(straight.buffer.all()["obs"], resumed.buffer.all()["obs"], rtol=0, atol=0)


# ---------------------------------------------------------------------------------- errors


def test_errors() -> None:
    agent = _stub_agent()
    with pytest.raises(ValueError, match="shape"):
        agent.predict(np.zeros((2, 5), dtype=np.float32))
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            agent.risk_tolerance = bad
        with pytest.raises(ValueError, match="finite"):
            BayesMPC(ToyEnv(), risk_tolerance=bad)
    with pytest.raises(ValueError, match="reward function"):
        BayesMPC(_NoRewardEnv())
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        BayesMPC(ToyEnv(), horizonn=3)
    with pytest.raises(ValueError, match="n_elites"):
        BayesMPC(ToyEnv(), population=10, n_elites=20)
    with pytest.raises(ValueError, match="family must be one of"):
        BayesMPCConfig(family="gp")


def test_former_config_names_still_work_with_a_deprecation_warning() -> None:
    """``model_family``/``model_lr``/``train_freq`` became ``family``/``learning_rate``/``retrain_interval``
    (the names BayesDQN uses; MPC's interval counts env steps, DQN's train_freq vector steps)."""
    with pytest.warns(DeprecationWarning, match="'train_freq' is now called 'retrain_interval'"):
        agent = BayesMPC(ToyEnv(), model_family="bbb", model_lr=3e-3, train_freq=77)
    assert (agent.config.family, agent.config.learning_rate, agent.config.retrain_interval) == (
        "bbb",
        3e-3,
        77,
    )
    assert agent.trainer.optimizer.param_groups[0]["lr"] == 3e-3
    with pytest.raises(ValueError, match="former name of 'learning_rate'"):
        BayesMPC(ToyEnv(), model_lr=1e-3, learning_rate=1e-3)
    # a checkpoint written under the former names loads under the new ones, silently
    saved = {**dataclasses.asdict(BayesMPCConfig(hidden=(8,))), "model_family": "mc_dropout"}
    del saved["family"]
    saved["hidden"] = [8]  # JSON has lists
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = schema.check_config(BayesMPCConfig, saved, BayesMPC._checkpoint_limits())
    assert cfg.family == "mc_dropout" and cfg.hidden == (8,)


class _NoRewardEnv(ToyEnv):
    reward_fn = None  # type: ignore[assignment]


def test_gymnasium_fallback_env_is_refused() -> None:
    from riskrl.envs import GymnasiumVecAdapter

    with pytest.raises(ValueError, match="reward function"):
        BayesMPC(GymnasiumVecAdapter("Pendulum-v1"))


# ---------------------------------------------------------------------------------- generators


TINY = dict(
    learning_starts=30,
    retrain_interval=30,
    train_epochs=2,
    horizon=3,
    population=8,
    n_elites=2,
    cem_iterations=1,
    n_particles=2,
    hidden=[16],
)


@pytest.mark.parametrize("family", ["bbb", "mc_dropout"])
def test_model_training_never_draws_from_torch_global_rng(family: str) -> None:
    """bbb / mc_dropout sample weights and masks in training: from the agent's generator only, so
    the run is the same whatever torch's global seed is and leaves the global RNG untouched."""
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        agent = BayesMPC("Pendulum-v1", seed=0, family=family, **TINY)
        before = torch.get_rng_state()
        agent.learn(70)
        assert agent.model_updates == 2
        assert torch.equal(torch.get_rng_state(), before)
        states.append(agent.model.state_dict())
    for key, value in states[0].items():
        torch.testing.assert_close(value, states[1][key], rtol=0, atol=0)


def test_planning_generator_from_another_device_is_reseeded_with_a_warning() -> None:
    agent = BayesMPC("Pendulum-v1", seed=3, **TINY)
    state = agent._policy_state()
    state["plan_rng"] = torch.zeros(16, dtype=torch.uint8)  # the shape of a CUDA generator's state
    with pytest.warns(RuntimeWarning, match="another device"):
        agent._load_policy_state(state)
    fresh = BayesMPC("Pendulum-v1", seed=3, **TINY)  # reseeded exactly as a new agent's stream
    assert torch.equal(agent.plan_rng.get_state(), fresh.plan_rng.get_state())


# ---------------------------------------------------------------------------------- gpu_check, CPU half


def test_gpu_check_cpu_half_and_parity_code_paths(tmp_path) -> None:
    """experiments/gpu_check.py in CI size: the CPU half end to end, and its CPU-vs-device parity
    checks run with the CPU as the 'device' (no GPU here), where every difference must be zero."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    assert spec is not None and spec.loader is not None
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    result = gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path / "gq")])
    assert result["passed"] and (tmp_path / "gq.json").exists() and (tmp_path / "gq.md").exists()
    assert {r["num_envs"] for r in result["env_throughput"]} == {64, 256}
    assert all(r["env_steps_per_second"] > 0 for r in result["agent_throughput"])
    cpu = torch.device("cpu")
    assert max(gpu_check.env_parity(cpu, 8, 30).values()) == 0.0
    assert gpu_check.evaluate_parity(cpu, 10)["relative_difference"] == 0.0
    assert max(gpu_check.agent_parity(cpu, 60).values()) == 0.0
