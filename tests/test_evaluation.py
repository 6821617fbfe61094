"""evaluate(): exact episode counts, agreement with a plain gymnasium loop, all policy kinds."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from riskrl import evaluate
from riskrl.agents import BayesDQN
from riskrl.envs import make_vec


def lean_policy(obs: torch.Tensor) -> torch.Tensor:
    """Push the cart toward the side the pole leans to (a decent but imperfect CartPole policy)."""
    return (obs[..., 2] > 0).long()


def _gymnasium_returns(n: int, seed: int) -> np.ndarray:
    env = gym.make("CartPole-v1")
    out = []
    for i in range(n):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(int(obs[2] > 0))
            total += r
            done = term or trunc
        out.append(total)
    return np.array(out)


def test_matches_plain_gymnasium_loop_within_sampling_error() -> None:
    n = 400
    ours = evaluate(lean_policy, "CartPole-v1", n_episodes=n, seed=0)
    ref = _gymnasium_returns(n, seed=1)
    assert ours.n_episodes == n and ours.returns.shape == (n,) and ours.lengths.shape == (n,)
    np.testing.assert_array_equal(ours.returns, ours.lengths)  # CartPole: +1 per step
    se = math.sqrt(ours.returns.var() / n + ref.var() / n)
    assert abs(ours.mean - ref.mean()) < 4 * se, (ours.mean, ref.mean(), se)
    assert 20 < ours.mean < 100  # the heuristic is clearly better than random (~22) but not perfect


@pytest.mark.parametrize("num_envs", [1, 7, 64])
def test_exactly_n_episodes_each_once_and_deterministic(num_envs: int) -> None:
    env = make_vec("CartPole-v1", num_envs=num_envs)
    a = evaluate(lean_policy, env, n_episodes=50, seed=3)
    b = evaluate(lean_policy, make_vec("CartPole-v1", num_envs=num_envs), n_episodes=50, seed=3)
    assert a.n_episodes == 50
    np.testing.assert_array_equal(a.returns, b.returns)
    assert np.all(a.lengths >= 8)  # a CartPole episode cannot end sooner; no half episodes counted


def test_same_step_autoreset_env_gives_the_same_episodes() -> None:
    from gymnasium.vector import AutoresetMode

    nxt = evaluate(lean_policy, make_vec("CartPole-v1", num_envs=8), n_episodes=40, seed=5)
    same = evaluate(
        lean_policy,
        make_vec("CartPole-v1", num_envs=8, autoreset_mode=AutoresetMode.SAME_STEP),
        n_episodes=40,
        seed=5,
    )
    # Slot i's quota of episodes is stored contiguously; every slot's first episode starts from the
    # same seeded reset in both modes (later resets draw from the generator at different times).
    first = np.arange(8) * 5
    np.testing.assert_array_equal(nxt.returns[first], same.returns[first])


def test_perturbation_changes_results_and_failure_threshold_default() -> None:
    nominal = evaluate(lean_policy, "CartPole-v1", n_episodes=200, seed=0)
    weak = evaluate(lean_policy, "CartPole-v1", n_episodes=200, seed=0, perturb={"force_mag": 2.0})
    strong = evaluate(lean_policy, "CartPole-v1", n_episodes=200, seed=0, perturb={"force_mag": 30.0})
    short = evaluate(lean_policy, "CartPole-v1", n_episodes=200, seed=0, perturb={"length": 0.1})
    # This bang-bang policy overshoots with full force: a weaker motor helps it, a stronger one hurts,
    # and a short pole (faster dynamics) falls sooner.
    assert strong.mean < nominal.mean / 2 < nominal.mean * 2 < weak.mean
    assert short.mean < nominal.mean / 2
    assert nominal.failure_threshold == 475.0  # CartPole-v1's reward_threshold
    assert nominal.failure_rate == pytest.approx(np.mean(nominal.returns < 475.0))
    assert math.isnan(nominal.mean_epistemic_std)


def test_gymnasium_fallback_env_and_sb3_model() -> None:
    from stable_baselines3 import PPO

    gen = torch.Generator().manual_seed(0)
    lake = evaluate(
        lambda obs: torch.randint(0, 4, (obs.shape[0],), generator=gen), "FrozenLake-v1", n_episodes=30
    )
    assert lake.n_episodes == 30 and set(np.unique(lake.returns)) <= {0.0, 1.0}
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, device="cpu", n_steps=64, batch_size=64)
    out = evaluate(model, "CartPole-v1", n_episodes=10, seed=0)
    assert out.n_episodes == 10 and np.all(out.returns >= 8)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, 10**9])
def test_bad_n_episodes(bad: object) -> None:
    with pytest.raises(ValueError, match="n_episodes"):
        evaluate(lean_policy, "CartPole-v1", n_episodes=bad)  # type: ignore[arg-type]


def test_bad_policy_and_alpha() -> None:
    with pytest.raises(ValueError, match="policy"):
        evaluate(42, "CartPole-v1", n_episodes=2)
    with pytest.raises(ValueError, match="alpha"):
        evaluate(lean_policy, "CartPole-v1", n_episodes=2, alpha=0.0)


def test_robustness_curve_and_plot(tmp_path) -> None:
    from riskrl import robustness_curve
    from riskrl.plotting import plot_robustness

    curve = robustness_curve(
        lean_policy, "CartPole-v1", "force_mag", [2.0, 10.0, 30.0], n_episodes=60, seed=0
    )
    assert [x for x, _ in curve] == [2.0, 10.0, 30.0]
    assert all(res.n_episodes == 60 for _, res in curve)
    nominal = evaluate(lean_policy, "CartPole-v1", n_episodes=60, seed=0)
    assert curve[1][1].returns.tolist() == nominal.returns.tolist()  # force_mag 10 is the default
    assert len({res.mean for _, res in curve}) == 3
    path = plot_robustness({"lean": curve}, "force_mag", path=tmp_path / "rob.png")
    assert path.stat().st_size > 1000


def test_mean_epistemic_std_is_the_chosen_actions_std_over_episode_steps() -> None:
    """The reported mean epistemic std equals the mean, over every evaluated step, of the std of the
    action the agent took (replayed by hand on the same seeded env)."""
    agent = BayesDQN("CartPole-v1", seed=3, hidden=(16, 16), n_members=3)
    res = evaluate(agent, make_vec("CartPole-v1", num_envs=1), n_episodes=1, seed=11, bootstrap=False)
    env = make_vec("CartPole-v1", num_envs=1)
    obs, _ = env.reset(seed=11)
    stds, ret, done = [], 0.0, False
    while not done:
        action, _mean, std = agent.predict_with_uncertainty(obs)
        stds.append(float(std[0, int(action[0])]))
        obs, reward, terminated, truncated, _ = env.step(action)
        ret += float(reward[0])
        done = bool(terminated[0] | truncated[0])
    assert res.returns[0] == ret
    assert res.mean_epistemic_std == pytest.approx(np.mean(stds), rel=1e-6)
    assert res.mean_epistemic_std > 0
