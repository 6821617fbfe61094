"""BayesDQN: the risk-adjusted action rule, learning on CartPole, save/load and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import riskrl
from riskrl.agents import BayesDQN
from riskrl.agents.dqn import BayesDQNConfig

OBS_DIM = 4  # CartPole-v1


class FixedPosterior(torch.nn.Module):
    """Test double for the Q-network: ``n`` posterior particles with fixed Q values per action.

    It implements the one method the agent uses to act, ``particles(n, generator)``, returning a
    callable ``x (B, d) -> (n, B, n_actions)`` that ignores the observation.
    """

    def __init__(self, q: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("q", q.float())

    def particles(self, n: int, generator: torch.Generator | None = None):
        q = self.q

        def p(x: torch.Tensor) -> torch.Tensor:
            return q[:, None, :].expand(q.shape[0], x.shape[0], q.shape[1])

        return p


def _stub_agent(q: torch.Tensor, risk_tolerance: float = 0.0) -> BayesDQN:
    agent = BayesDQN("CartPole-v1", risk_tolerance=risk_tolerance, seed=0)
    agent.q_net = FixedPosterior(q)
    return agent


# Two particles: action 0 has Q in {6, 14} (mean 10, std 4), action 1 has Q in {7, 9} (mean 8, std 1).
TWO_ACTIONS = torch.tensor([[6.0, 7.0], [14.0, 9.0]])
BREAK_EVEN = (10.0 - 8.0) / (4.0 - 1.0)


@pytest.mark.parametrize("k", [-1.0, 0.0, 0.5, 2.0])
def test_predict_is_argmax_of_lower_confidence_bound(k: float) -> None:
    agent = _stub_agent(TWO_ACTIONS, risk_tolerance=k)
    obs = np.zeros((3, OBS_DIM), dtype=np.float32)
    action, state = agent.predict(obs)
    assert state is None
    expected = 0 if 10.0 - k * 4.0 > 8.0 - k * 1.0 else 1
    assert action.tolist() == [expected] * 3
    act, mean, std = agent.predict_with_uncertainty(obs)
    np.testing.assert_allclose(mean, [[10.0, 8.0]] * 3)
    np.testing.assert_allclose(std, [[4.0, 1.0]] * 3)
    assert act.tolist() == action.tolist()


def test_choice_flips_at_break_even_risk_tolerance() -> None:
    agent = _stub_agent(TWO_ACTIONS)
    obs = torch.zeros(OBS_DIM)
    agent.risk_tolerance = BREAK_EVEN - 1e-3
    assert int(agent.predict(obs)[0]) == 0  # the higher-mean, riskier action
    agent.risk_tolerance = BREAK_EVEN + 1e-3
    assert int(agent.predict(obs)[0]) == 1  # the safer action


@pytest.mark.parametrize("k", [-1.0, 0.0, 0.5, 2.0])
def test_predict_matches_lcb_on_random_posteriors(k: float) -> None:
    g = torch.Generator().manual_seed(1)
    q = torch.randn(8, 2, generator=g) * torch.tensor([1.0, 3.0]) + torch.tensor([0.5, 0.0])
    agent = _stub_agent(q, risk_tolerance=k)
    expected = int((q.mean(0) - k * q.std(0, correction=0)).argmax())
    assert int(agent.predict(torch.zeros(OBS_DIM))[0]) == expected


def test_real_network_uncertainty_shapes_and_consistency() -> None:
    agent = BayesDQN("CartPole-v1", seed=3, n_members=4)
    obs = torch.randn(7, OBS_DIM)
    action, mean, std = agent.predict_with_uncertainty(obs)
    assert action.shape == (7,) and mean.shape == (7, 2) and std.shape == (7, 2)
    assert (std > 0).all()  # randomized priors make members disagree before training
    q = agent.q_net.particles(4)(obs)
    torch.testing.assert_close(mean, q.mean(0))
    torch.testing.assert_close(std, q.std(0, correction=0))
    assert torch.equal(action, (mean - 0.0 * std).argmax(-1))
    assert torch.equal(agent.predict(obs)[0], agent.predict(obs)[0])  # deterministic


# ------------------------------------------------------------------ learning


@pytest.mark.slow
def test_learns_cartpole_far_above_random() -> None:
    agent = BayesDQN("CartPole-v1", seed=0)
    agent.learn(5_000)
    result = riskrl.evaluate(agent, "CartPole-v1", n_episodes=20, seed=123)
    assert result.mean > 100, f"mean return {result.mean:.1f} after 5k steps (random is about 22)"


# ------------------------------------------------------------------ save / load


def test_save_load_round_trip_and_risk_tolerance_after_load(tmp_path) -> None:
    agent = BayesDQN("CartPole-v1", seed=0, n_members=4, learning_starts=200, batch_size=32)
    agent.learn(400)
    path = agent.save(tmp_path / "dqn.riskrl")
    loaded = BayesDQN.load(path)
    assert loaded.num_timesteps == agent.num_timesteps
    assert dataclasses_equal(loaded.config, agent.config)
    obs = torch.randn(256, OBS_DIM, generator=torch.Generator().manual_seed(0)) * 0.5
    for k in (0.0, 1.0, -1.0):
        agent.risk_tolerance = loaded.risk_tolerance = k
        assert torch.equal(agent.predict(obs)[0], loaded.predict(obs)[0])
        for a, b in zip(agent.predict_with_uncertainty(obs), loaded.predict_with_uncertainty(obs)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(loaded.buffer) == len(agent.buffer)
    torch.testing.assert_close(loaded.buffer.all()["obs"], agent.buffer.all()["obs"])
    # risk_tolerance can be set on load and changed afterwards; it changes the stubbed choice
    averse = BayesDQN.load(path, risk_tolerance=2.0)
    assert averse.risk_tolerance == 2.0
    averse.q_net = FixedPosterior(TWO_ACTIONS)
    assert int(averse.predict(torch.zeros(OBS_DIM))[0]) == 1
    averse.risk_tolerance = 0.0
    assert int(averse.predict(torch.zeros(OBS_DIM))[0]) == 0
    # policy-only checkpoints load too
    small = agent.save(tmp_path / "policy.riskrl", include_training_state=False)
    policy_only = BayesDQN.load(small)
    assert torch.equal(policy_only.predict(obs)[0], agent.predict(obs)[0])


def dataclasses_equal(a: BayesDQNConfig, b: BayesDQNConfig) -> bool:
    import dataclasses

    return dataclasses.asdict(a) == dataclasses.asdict(b)


def test_numpy_in_numpy_out_single_and_batched() -> None:
    agent = BayesDQN("CartPole-v1", seed=0, n_members=3)
    a, _ = agent.predict(np.zeros(OBS_DIM, dtype=np.float32))
    assert isinstance(a, np.ndarray) and a.shape == ()
    a, _ = agent.predict(np.zeros((5, OBS_DIM)))
    assert isinstance(a, np.ndarray) and a.shape == (5,)
    assert agent.predict(np.zeros((5, OBS_DIM)), deterministic=False)[0].shape == (5,)


# ------------------------------------------------------------------ errors


def test_refuses_continuous_action_spaces() -> None:
    with pytest.raises(ValueError, match="Discrete"):
        BayesDQN("Pendulum-v1", seed=0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "high", None])
def test_non_finite_risk_tolerance(bad) -> None:
    with pytest.raises(ValueError, match="risk_tolerance"):
        BayesDQN("CartPole-v1", risk_tolerance=bad, seed=0)
    agent = BayesDQN("CartPole-v1", seed=0, n_members=2)
    with pytest.raises(ValueError, match="risk_tolerance"):
        agent.risk_tolerance = bad
    assert agent.risk_tolerance == 0.0


@pytest.mark.parametrize(
    "obs",
    [np.zeros(3), np.zeros((2, 5)), np.zeros((2, 2, OBS_DIM)), np.array([0.0, np.nan, 0.0, 0.0])],
    ids=["short", "wide", "3d", "nan"],
)
def test_bad_observations(obs) -> None:
    agent = BayesDQN("CartPole-v1", seed=0, n_members=2)
    with pytest.raises(ValueError, match="observations"):
        agent.predict(obs)
    with pytest.raises(ValueError, match="observations"):
        agent.predict_with_uncertainty(obs)


@pytest.mark.parametrize(
    "hp",
    [
        {"family": "gp"},
        {"exploration": "boltzmann"},
        {"n_members": 0},
        {"gamma": 1.5},
        {"tau": 0.0},
        {"learning_rate": float("nan")},
        {"train_risk_tolerance": float("inf")},
        {"no_such_option": 1},
    ],
)
def test_bad_hyperparameters(hp) -> None:
    with pytest.raises(ValueError):
        BayesDQN("CartPole-v1", seed=0, **hp)


@pytest.mark.parametrize("family", ["bbb", "mc_dropout"])
def test_other_posterior_families_run(family: str) -> None:
    agent = BayesDQN("CartPole-v1", seed=0, family=family, n_particles=4, learning_starts=100, batch_size=16)
    agent.learn(200)
    obs = torch.randn(5, OBS_DIM)
    action, _, std = agent.predict_with_uncertainty(obs)
    assert action.shape == (5,) and (std > 0).all()
    assert torch.equal(agent.predict(obs)[0], agent.predict(obs)[0])  # fixed draw for acting


@pytest.mark.parametrize("autoreset", ["SAME_STEP", "NEXT_STEP"])
def test_n_step_targets_follow_each_env_episode(autoreset: str) -> None:
    """CartPole pays 1 per step, so an m-step return is (1 - gamma^m) / (1 - gamma): every sampled
    n-step reward must agree with its discount, episodes must cut the sum short (m < n at their
    ends), and most samples are full n-step sums, in both autoreset modes (NEXT_STEP's reset
    steps are not transitions and must not be linked into an episode)."""
    import gymnasium as gym

    from riskrl.envs import make_vec

    gamma, n = 0.9, 4
    venv = make_vec("CartPole-v1", num_envs=3, autoreset_mode=getattr(gym.vector.AutoresetMode, autoreset))
    agent = BayesDQN(venv, seed=0, gamma=gamma, n_step=n, learning_starts=400, hidden=(16,))
    agent.learn(600)
    batch = agent.buffer.sample_n_step(4000, n, gamma, generator=torch.Generator().manual_seed(0))
    m = torch.round(torch.log(batch["discounts"]) / math.log(gamma))
    torch.testing.assert_close(batch["rewards"], (1 - gamma**m) / (1 - gamma))
    assert set(m.unique().tolist()) <= {1.0, 2.0, 3.0, 4.0}
    assert (m == n).float().mean() > 0.6  # random-policy episodes last about 20 steps
    # a shortened sum ends at its episode's end, or at the newest stored step of that env: at most
    # n - 1 start rows per env (3 envs) are short without a termination
    short = m < n
    assert bool(batch["terminated"][short].any())
    open_ended = batch["obs"][short & (batch["terminated"] == 0)]
    assert 0 < open_ended.unique(dim=0).shape[0] <= 3 * (n - 1)


# ---------------------------------------------------------------------------------- several envs, UTD


@pytest.mark.parametrize("autoreset", ["SAME_STEP", "NEXT_STEP"])
def test_several_envs_store_what_stepping_each_env_alone_gives(autoreset: str) -> None:
    """The batched add (all envs at once, masks for NEXT_STEP reset steps, SAME_STEP final obs) stores
    exactly the transitions a plain per-env loop over the same env steps builds, in step-major order."""
    import gymnasium as gym

    from riskrl.envs import make_vec

    mode = getattr(gym.vector.AutoresetMode, autoreset)
    n_env, n_vec_steps = 3, 70  # random-policy CartPole episodes last about 20 steps: many resets

    venv = make_vec("CartPole-v1", num_envs=n_env, autoreset_mode=mode)
    taken: list[torch.Tensor] = []
    env_step = venv.step

    def recording_step(actions: torch.Tensor) -> tuple:
        taken.append(torch.as_tensor(actions).clone())
        return env_step(actions)

    venv.step = recording_step  # type: ignore[method-assign]
    agent = BayesDQN(venv, seed=4, num_envs=n_env, learning_starts=10**6, hidden=(8,))
    agent.learn(n_env * n_vec_steps)
    assert len(taken) == n_vec_steps

    # Reference: the same env and seed, the same actions, transitions built one env at a time.
    ref = make_vec("CartPole-v1", num_envs=n_env, autoreset_mode=mode)
    obs, _ = ref.reset(seed=4)
    expected: list[tuple] = []
    skip = [False] * n_env
    for actions in taken:
        next_obs, reward, terminated, truncated, info = ref.step(actions)
        for i in range(n_env):
            done = bool(terminated[i]) or bool(truncated[i])
            if mode == gym.vector.AutoresetMode.NEXT_STEP:
                if not skip[i]:
                    expected.append(
                        (obs[i], int(actions[i]), float(reward[i]), next_obs[i], float(terminated[i]))
                    )
                skip[i] = done
            else:
                nxt = info["final_obs"][i] if done else next_obs[i]
                expected.append((obs[i], int(actions[i]), float(reward[i]), nxt, float(terminated[i])))
        obs = next_obs
    stored = agent.buffer.all()
    assert len(agent.buffer) == len(expected) and len(expected) > n_vec_steps * n_env - 20
    if mode == gym.vector.AutoresetMode.NEXT_STEP:
        assert len(expected) < n_vec_steps * n_env  # some reset steps were left out
    assert bool(stored["terminated"].any())
    torch.testing.assert_close(stored["obs"], torch.stack([e[0] for e in expected]), rtol=0, atol=0)
    assert stored["actions"].tolist() == [e[1] for e in expected]
    assert stored["rewards"].tolist() == [e[2] for e in expected]
    torch.testing.assert_close(stored["next_obs"], torch.stack([e[3] for e in expected]), rtol=0, atol=0)
    assert stored["terminated"].tolist() == [e[4] for e in expected]


@pytest.mark.parametrize("n_env, utd", [(1, 0.25), (4, 0.25), (4, 0.5), (3, 0.4), (2, 1.5)])
def test_utd_ratio_sets_gradient_steps_per_env_step(n_env: int, utd: float) -> None:
    learning_starts, total = 60, 160
    agent = BayesDQN(
        "CartPole-v1",
        seed=0,
        num_envs=n_env,
        utd_ratio=utd,
        learning_starts=learning_starts,
        hidden=(8,),
        batch_size=8,
    )
    agent.learn(total)
    vec_steps = -(-total // n_env)
    training_vec_steps = sum(1 for k in range(1, vec_steps + 1) if k * n_env >= learning_starts)
    assert agent._n_updates == math.floor(utd * n_env * training_vec_steps + 1e-9) > 0


def test_several_envs_with_utd_ratio_resume_bit_identically(tmp_path) -> None:
    kw = dict(num_envs=4, utd_ratio=0.75, learning_starts=40, hidden=(16,), batch_size=16, n_step=2)
    straight = BayesDQN("CartPole-v1", seed=7, **kw).learn(200)
    first = BayesDQN("CartPole-v1", seed=7, **kw).learn(100)
    path = first.save(tmp_path / "half.riskrl")
    resumed = BayesDQN.load(path).learn_until(200)
    assert resumed._n_updates == straight._n_updates > 0
    for key, value in straight.q_net.state_dict().items():
        torch.testing.assert_close(value, resumed.q_net.state_dict()[key], rtol=0, atol=0)
    a, b = straight.buffer.all(), resumed.buffer.all()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    obs = torch.randn(6, OBS_DIM)
    assert torch.equal(straight.predict(obs)[0], resumed.predict(obs)[0])


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_utd_ratio(bad: float) -> None:
    with pytest.raises(ValueError, match="utd_ratio"):
        BayesDQN("CartPole-v1", seed=0, utd_ratio=bad)


# ---------------------------------------------------------------------------------- shared torso


def test_shared_torso_answers_particles_and_predict_and_std_grows_away_from_data() -> None:
    from riskrl.agents.heads import SharedTorsoEnsemble

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(123)
    x = torch.rand(200, 1, generator=g) * 5
    y = 3 * x + 0.5 * torch.randn(200, 1, generator=g)
    model = SharedTorsoEnsemble(1, 1, hidden=(32, 32), n_members=5, prior_scale=1.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(500):
        loss = (model.particles(5)(x) - y).square().mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    grid = torch.linspace(0.25, 4.75, 30)[:, None]
    inside, far = model.predict(grid), model.predict(torch.linspace(8, 10, 30)[:, None])
    assert far.epistemic_std.mean() >= 3 * inside.epistemic_std.mean()
    assert (inside.mean - 3 * grid).square().mean().sqrt() < 0.3
    assert torch.equal(inside.aleatoric_std, torch.zeros_like(inside.aleatoric_std))
    # particle i is head i % K; (n, B, d) inputs give each particle its own rows
    p7 = model.particles(7)(grid)
    assert p7.shape == (7, 30, 1) and torch.equal(p7[5], p7[0]) and not torch.equal(p7[1], p7[0])
    per_particle = model.particles(2)(torch.stack([grid, grid + 1]))
    torch.testing.assert_close(per_particle[1], model.particles(2)(grid + 1)[1])
    with pytest.raises(ValueError, match="shape"):
        model.particles(2)(torch.zeros(3, 2))


def test_shared_torso_dqn_learns_acts_and_round_trips(tmp_path) -> None:
    agent = BayesDQN(
        "CartPole-v1", seed=0, shared_torso=True, hidden=(32, 32), learning_starts=100, batch_size=16
    )
    agent.learn(300)
    obs = torch.randn(5, OBS_DIM)
    action, mean, std = agent.predict_with_uncertainty(obs)
    assert action.shape == (5,) and mean.shape == std.shape == (5, 2) and bool((std > 0).all())
    loaded = BayesDQN.load(agent.save(tmp_path / "heads.riskrl"))
    assert torch.equal(loaded.predict(obs)[0], action)
    with pytest.raises(ValueError, match="shared_torso"):
        BayesDQN("CartPole-v1", seed=0, shared_torso=True, family="bbb")
