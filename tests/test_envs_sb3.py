"""The stable-baselines3 VecEnv adapter."""

from __future__ import annotations

import time
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.monitor import Monitor

from riskrl.envs import ENV_IDS, CartPoleVecEnv, PendulumVecEnv, SB3VecEnv, make_vec


def test_sb3_adapter_conventions():
    with pytest.raises(ValueError, match="SAME_STEP"):
        SB3VecEnv(CartPoleVecEnv(num_envs=2))
    venv = SB3VecEnv(CartPoleVecEnv(num_envs=4, max_episode_steps=8, autoreset_mode=AutoresetMode.SAME_STEP))
    venv.seed(3)
    obs = venv.reset()
    assert isinstance(obs, np.ndarray) and obs.shape == (4, 4) and obs.dtype == np.float32
    venv.seed(3)
    np.testing.assert_array_equal(venv.reset(), obs)
    for t in range(1, 9):
        obs, rew, dones, infos = venv.step(np.array([0, 1, 0, 1]))
        assert rew.dtype == np.float32 and dones.dtype == bool and len(infos) == 4
        assert dones.all() == (t == 8) and all(("episode" in i) == (t == 8) for i in infos)
    assert dones.all()  # truncated at 8 steps (the pole cannot fall that fast from rest)
    for info in infos:
        assert info["TimeLimit.truncated"] is True
        assert info["episode"]["l"] == 8 and info["episode"]["r"] == 8.0 and "t" in info["episode"]
        assert (
            info["terminal_observation"].shape == (4,) and np.abs(info["terminal_observation"]).max() > 0.05
        )
    assert np.abs(obs).max() <= 0.05  # already reset
    assert venv.get_attr("max_episode_steps") == [8] * 4
    assert venv.env_method("get_obs")[0].shape == (4, 4)
    assert venv.env_is_wrapped(object) == [False] * 4
    assert venv.env_is_wrapped(gym.wrappers.TimeLimit) == [False] * 4
    assert venv.env_is_wrapped(Monitor) == [True] * 4  # it emits Monitor-style episode info
    # a termination is not a truncation; Box actions go through as (N, 1)
    cp = SB3VecEnv(make_vec("CartPole-v1", 2, autoreset_mode=AutoresetMode.SAME_STEP))
    cp.reset()
    cp.env.state = torch.tensor([[2.39, 5.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    _, _, dones, infos = cp.step(np.array([1, 1]))
    assert dones.tolist() == [True, False] and infos[0]["TimeLimit.truncated"] is False and infos[1] == {}
    pend = SB3VecEnv(PendulumVecEnv(num_envs=3, autoreset_mode=AutoresetMode.SAME_STEP))
    pend.reset()
    obs, rew, *_ = pend.step(np.zeros((3, 1), dtype=np.float32))
    assert obs.shape == (3, 3) and (rew <= 0).all()


@pytest.mark.slow
def test_sb3_ppo_learns_cartpole():
    from stable_baselines3 import PPO

    torch.manual_seed(0)
    venv = SB3VecEnv(CartPoleVecEnv(num_envs=8, autoreset_mode=AutoresetMode.SAME_STEP))
    venv.seed(0)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=32,
        batch_size=256,
        n_epochs=10,
        gamma=0.98,
        gae_lambda=0.8,
        learning_rate=1e-3,
        ent_coef=0.0,
        seed=0,
        device="cpu",
        verbose=0,
    )
    t0 = time.time()
    model.learn(total_timesteps=40_000)
    # evaluate greedily on fresh batched envs
    ev = SB3VecEnv(CartPoleVecEnv(num_envs=16, autoreset_mode=AutoresetMode.SAME_STEP))
    ev.seed(123)
    obs = ev.reset()
    returns: list[float] = []
    while len(returns) < 16:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, dones, infos = ev.step(action)
        returns += [infos[i]["episode"]["r"] for i in np.flatnonzero(dones)]
    print(f"PPO mean return {np.mean(returns):.1f} after {time.time() - t0:.1f}s")
    assert np.mean(returns) > 100  # random policy: ~22


def test_evaluate_policy_sees_monitor_episodes_without_warning() -> None:
    """SB3's evaluate_policy counts the adapter's Monitor-style episodes and does not warn about a Monitor."""
    from stable_baselines3.common.evaluation import evaluate_policy

    class Left:  # always push left: CartPole falls in ~9 steps, whatever the start
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.zeros(len(obs), dtype=np.int64), None

    venv = SB3VecEnv(CartPoleVecEnv(num_envs=4, autoreset_mode=AutoresetMode.SAME_STEP))
    venv.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        rewards, lengths = evaluate_policy(Left(), venv, n_eval_episodes=8, return_episode_rewards=True)
    assert (
        len(rewards) == 8
        and rewards == [float(n) for n in lengths]
        and 5 <= min(lengths) <= max(lengths) < 20
    )


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_sb3_check_env_passes_on_single_envs(env_id: str) -> None:
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3's advice on unbounded / asymmetric Box spaces
        check_env(gym.make(f"riskrl/{env_id}"), warn=False)
