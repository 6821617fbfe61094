"""Deep exploration, CI-sized: BayesDQN's default (Thompson) exploration solves deep_sea N = 10 on the
torch-batched env, and risk-neutral epsilon-greedy does not within the same budget: neither on the
mean of the same randomized-prior ensemble nor as plain DQN (one network, no prior)."""

from __future__ import annotations

import pytest
import torch

from riskrl.agents import BayesDQN
from riskrl.envs import DeepSeaVecEnv

SIZE, NUM_ENVS, STEPS = 10, 4, 3000  # 3000 steps = 272 episodes in all (10 steps + 1 autoreset each)
CONFIG = {
    "hidden": (32, 32),
    "n_members": 10,
    "gamma": 0.99,
    "learning_starts": 64,
    "batch_size": 64,
    "tau": 1.0,
    "target_update_interval": 4,
    "utd_ratio": 0.5,
    "num_envs": NUM_ENVS,
}


def _train(seed: int, **overrides) -> tuple[BayesDQN, DeepSeaVecEnv]:
    env = DeepSeaVecEnv(num_envs=NUM_ENVS, size=SIZE)
    agent = BayesDQN(env, seed=seed, **{**CONFIG, **overrides})
    agent.learn(STEPS)
    return agent, env


def _greedy_return(agent: BayesDQN) -> float:
    env = DeepSeaVecEnv(num_envs=1, size=SIZE)
    obs, _ = env.reset(seed=0)
    total = 0.0
    for _ in range(SIZE):
        action, _ = agent.predict(obs, deterministic=True)
        obs, reward, *_ = env.step(torch.as_tensor(action).reshape(1))
        total += float(reward)
    return total


def _assert_never_found(agent: BayesDQN, env: DeepSeaVecEnv, episodes: int) -> None:
    """Dithering failed: almost every episode bad, the corner never reached, the greedy policy not there."""
    assert int(env.total_bad_episodes.sum()) / episodes > 0.95
    assert float(env.denoised_return.sum()) == 0.0
    assert _greedy_return(agent) < 0.5


@pytest.mark.slow
def test_thompson_solves_deep_sea_and_epsilon_greedy_does_not() -> None:
    episodes = NUM_ENVS * (STEPS // NUM_ENVS) // (SIZE + 1)
    agent, env = _train(seed=0)  # default exploration: Thompson sampling, one member per episode
    bad = int(env.total_bad_episodes.sum())
    assert bad / episodes < 0.9  # bsuite's criterion: fewer than 90% bad episodes so far
    assert float(env.denoised_return.sum()) >= 0.1 * episodes  # the treasure was found repeatedly
    assert _greedy_return(agent) == pytest.approx(1 - 0.01)  # the posterior mean goes straight there

    agent, env = _train(
        seed=0, exploration="ucb", train_risk_tolerance=0.0, epsilon_start=0.05, epsilon_end=0.05
    )
    _assert_never_found(agent, env, episodes)

    # plain DQN as in bsuite's dqn baseline: one network, no randomized prior, epsilon-greedy
    # (experiments/bench_bsuite.py's "dqn" scheme)
    agent, env = _train(
        seed=0,
        n_members=1,
        prior_scale=0.0,
        exploration="ucb",
        train_risk_tolerance=0.0,
        epsilon_start=0.05,
        epsilon_end=0.05,
    )
    _assert_never_found(agent, env, episodes)
