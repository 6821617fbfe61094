"""Small, fast checks of the agents' core formulas, each able to catch a one-token slip:
the DQN TD target (terminal and non-terminal transitions), the sign of UCB optimism while
exploring, and the sign and discount of BayesMPC's terminal value."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch

from riskrl.agents import BayesDQN, BayesMPC
from riskrl.agents.dqn import td_target

# ------------------------------------------------------------------ DQN TD target


def test_td_target_on_a_hand_made_batch() -> None:
    rewards = torch.tensor([1.0, 0.5, -1.0])
    discounts = torch.tensor([0.9, 0.81, 0.9])  # 1-step, 2-step (n-step returns), 1-step
    terminated = torch.tensor([0.0, 0.0, 1.0])
    q_next = torch.tensor([[10.0, 20.0, 30.0], [12.0, 22.0, 32.0]])  # (particles, batch)
    target = td_target(rewards, discounts, terminated, q_next)
    expected = torch.tensor(
        [[1.0 + 0.9 * 10, 0.5 + 0.81 * 20, -1.0], [1.0 + 0.9 * 12, 0.5 + 0.81 * 22, -1.0]]
    )
    torch.testing.assert_close(target, expected)


def test_train_step_regresses_towards_td_target() -> None:
    """One gradient step on a buffer of terminal transitions moves Q(s, a) towards r, not r + gamma Q."""
    agent = BayesDQN(
        "CartPole-v1", seed=0, hidden=(16,), n_members=2, learning_starts=0, batch_size=8, learning_rate=1e-2
    )
    obs = torch.zeros(1, 4)
    for _ in range(16):  # same state, action 0, reward 5, terminated: the target is exactly 5
        agent.buffer.add(
            obs,
            torch.zeros(1, dtype=torch.int64),
            torch.full((1,), 5.0),
            obs + 1,
            torch.ones(1, dtype=torch.bool),
            torch.ones(1, dtype=torch.bool),
        )
    before = agent._q_particles(obs)[:, 0, 0].detach().clone()
    for _ in range(200):
        agent._train_step()
    after = agent._q_particles(obs)[:, 0, 0].detach()
    assert (after - 5.0).abs().max() < 0.5 < (before - 5.0).abs().max()


# ------------------------------------------------------------------ UCB optimism sign


def _stub_q(agent: BayesDQN, q: torch.Tensor) -> None:
    agent._q_particles = lambda obs, seed=None: q.expand(q.shape[0], obs.shape[0], q.shape[-1])


@pytest.mark.parametrize(("k", "expected"), [(-2.0, 1), (0.0, 0), (2.0, 0)])
def test_ucb_exploration_follows_the_sign_of_train_risk_tolerance(k: float, expected: int) -> None:
    """Action 0: mean 1, std 0. Action 1: mean 0.5, std 1. Optimism (k < 0) must pick the unsure one."""
    agent = BayesDQN(
        "CartPole-v1",
        seed=0,
        hidden=(8,),
        n_members=2,
        exploration="ucb",
        train_risk_tolerance=k,
        learning_starts=0,
        epsilon_start=0.0,
        epsilon_end=0.0,
    )
    _stub_q(agent, torch.tensor([[[1.0, -0.5]], [[1.0, 1.5]]]))
    actions = agent._explore_actions(torch.zeros(3, 4))
    assert actions.tolist() == [expected] * 3


# ------------------------------------------------------------------ MPC terminal value


class LineEnv:
    """Batched 1-action env stub: obs (B, 2); reward = increase of obs[0]; never terminates."""

    metadata: ClassVar[dict] = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1) -> None:
        self.num_envs = num_envs
        self.device = torch.device("cpu")
        self.single_observation_space = gym.spaces.Box(-100.0, 100.0, (2,), np.float32)
        self.single_action_space = gym.spaces.Discrete(2)

    def reward_fn(self, obs, action, next_obs):
        return next_obs[..., 0] - obs[..., 0]

    def termination_fn(self, obs, action, next_obs):
        return torch.zeros(next_obs.shape[:-1], dtype=torch.bool)

    def reset(self, seed=None):
        return torch.zeros(self.num_envs, 2), {}

    def step(self, actions):
        n = self.num_envs
        return torch.zeros(n, 2), torch.zeros(n), torch.zeros(n, dtype=bool), torch.zeros(n, dtype=bool), {}


class StepModel(torch.nn.Module):
    """Every particle moves obs[0] by +1 per step, no noise."""

    def particles(self, n, generator=None):
        class P:
            def mean_and_std(self, x):
                delta = torch.zeros(*x.shape[:-1], 2)
                delta[..., 0] = 1.0
                return delta, torch.zeros_like(delta)

        return P()


class LinearValue:
    """V(s) = 10 * s[0] for every particle."""

    def particles(self, n):
        return lambda s: 10.0 * s[..., 0]


def test_terminal_value_is_added_with_the_horizon_discount() -> None:
    agent = BayesMPC(LineEnv(), seed=0, horizon=3, n_particles=2, discount=0.5, sample_aleatoric=False)
    agent.model = StepModel()
    obs = torch.tensor([[2.0, 0.0]])
    acts = torch.zeros(1, 1, 3, dtype=torch.int64)
    gen = torch.Generator().manual_seed(0)
    agent.value = None
    without = agent.predicted_returns(obs, acts, gen)
    torch.testing.assert_close(without, torch.full((2, 1, 1), 1 + 0.5 + 0.25))
    agent.value = LinearValue()
    with_value = agent.predicted_returns(obs, acts, gen)
    # after 3 steps obs[0] = 5: + 0.5**3 * V = 0.125 * 50
    torch.testing.assert_close(with_value - without, torch.full((2, 1, 1), 0.125 * 50.0))


def test_sb3_episode_counting_callback_sees_dones_every_step() -> None:
    """SB3's StopTrainingOnMaxEpisodes reads ``dones`` at every step, also when no episode ended."""
    from stable_baselines3.common.callbacks import StopTrainingOnMaxEpisodes

    agent = BayesDQN("CartPole-v1", seed=0, hidden=(8,), n_members=2, learning_starts=10_000)
    agent.learn(5_000, callback=StopTrainingOnMaxEpisodes(max_episodes=3))
    assert 3 * 8 <= agent.num_timesteps < 5_000  # stopped after 3 episodes (each >= 8 steps)


def test_load_takes_sb3_arguments(tmp_path, capsys) -> None:
    from stable_baselines3.common.env_util import make_vec_env

    from riskrl.checkpoint import CheckpointError

    agent = BayesDQN("CartPole-v1", seed=0, hidden=(8,), n_members=2)
    agent.save(tmp_path / "model.zip")
    loaded = BayesDQN.load(tmp_path / "model", device="auto", custom_objects={"learning_rate": 0.0}, seed=7)
    assert loaded.seed == 7 and str(loaded.device) in ("cpu", "cuda", "cuda:0")
    obs = np.zeros((1, 4), dtype=np.float32)
    assert loaded.predict(obs)[0].tolist() == agent.predict(obs)[0].tolist()
    BayesDQN.load(tmp_path / "model.zip", env=make_vec_env("CartPole-v1", n_envs=1), print_system_info=True)
    assert "torch" in capsys.readouterr().out
    with pytest.raises(ValueError, match="custom_objects"):
        BayesDQN.load(tmp_path / "model.zip", custom_objects={"policy_class": object})
    with pytest.raises((CheckpointError, ValueError), match="spaces differ"):
        BayesDQN.load(tmp_path / "model.zip", env=make_vec_env("Acrobot-v1", n_envs=1))


def test_checkpoint_from_before_auto_compile_still_loads(tmp_path) -> None:
    """A checkpoint whose env state lacks ``auto_compile_left`` (saved before envs auto-compiled) loads."""
    from riskrl.checkpoint import load_checkpoint, save_checkpoint

    agent = BayesDQN("CartPole-v1", seed=0, hidden=(8,), n_members=2).learn(50)
    path = agent.save(tmp_path / "new.zip")
    state, manifest = load_checkpoint(path)
    assert "auto_compile_left" in state["training"]["env"]
    del state["training"]["env"]["auto_compile_left"]
    old = save_checkpoint(tmp_path / "old.zip", state, kind="BayesDQN", metadata=manifest["metadata"])
    loaded = BayesDQN.load(old)
    assert loaded.num_timesteps == agent.num_timesteps


def test_get_env_view_of_a_next_step_env_reports_episodes_like_monitor() -> None:
    """The SB3 view of a NEXT_STEP env restarts finished envs at once and reports their real return."""
    agent = BayesDQN("CartPole-v1", seed=0, hidden=(8,), n_members=2)
    venv = agent.get_env()
    venv.seed(0)
    obs = venv.reset()
    returns, ended = np.zeros(venv.num_envs), []
    for _ in range(60):
        obs, rew, dones, infos = venv.step(np.ones(venv.num_envs, dtype=np.int64))  # always push right
        returns += rew
        for i in np.flatnonzero(dones):
            assert infos[i]["episode"]["r"] == returns[i] == infos[i]["episode"]["l"]
            assert (
                abs(infos[i]["terminal_observation"][2]) > 0.2
                or abs(infos[i]["terminal_observation"][0]) > 2.4
            )
            assert abs(obs[i][2]) <= 0.05  # already a fresh start
            ended.append(returns[i])
            returns[i] = 0
    assert len(ended) >= 3
