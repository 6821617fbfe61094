"""stable-baselines3 documentation examples, run with ``DQN`` -> ``BayesDQN`` and ``SAC`` -> ``BayesMPC``.

Each example is the SB3 docs' code with the class swapped, a tiny budget and small networks (passed as
hyperparameters); the assertions are what the example does with SB3: step counts, files written, an
early stop, a loaded model that acts like the saved one.
"""

# The SB3 examples are kept as the docs write them (unused unpacked values, np.random).
# ruff: noqa: RUF059, NPY002

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from riskrl.agents import BayesDQN, BayesMPC, load_agent

# small networks and budgets, so every example takes seconds
DQN_KW = {"learning_starts": 50, "n_members": 3, "policy_kwargs": {"net_arch": [16, 16]}}
MPC_KW = {
    "learning_starts": 30,
    "retrain_interval": 30,
    "train_epochs": 2,
    "horizon": 5,
    "population": 24,
    "n_elites": 4,
    "cem_iterations": 2,
    "n_particles": 3,
    "policy_kwargs": {"net_arch": [16, 16]},
}


def test_dqn_docs_example_train_save_load_predict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = gym.make("CartPole-v1")

    model = BayesDQN("MlpPolicy", env, verbose=1, seed=0, **DQN_KW)
    model.learn(total_timesteps=300, log_interval=4)
    model.save("dqn_cartpole")
    actions_before = model.predict(np.zeros((5, 4), np.float32), deterministic=True)[0]

    del model  # remove to demonstrate saving and loading

    model = BayesDQN.load("dqn_cartpole")
    assert model.num_timesteps == 300
    np.testing.assert_array_equal(model.predict(np.zeros((5, 4), np.float32))[0], actions_before)

    obs, info = env.reset(seed=0)
    steps = 0
    for _ in range(60):
        action, _states = model.predict(obs, deterministic=True)
        assert env.action_space.contains(int(action))
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        if terminated or truncated:
            obs, info = env.reset()
    assert steps == 60


def test_sac_docs_example_with_bayes_mpc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = gym.make("Pendulum-v1")

    model = BayesMPC("MlpPolicy", env, verbose=0, seed=0, **MPC_KW)
    model.learn(total_timesteps=60, log_interval=4)
    model.save("sac_pendulum")

    del model  # remove to demonstrate saving and loading

    model = BayesMPC.load("sac_pendulum")
    assert model.num_timesteps == 60 and len(model.buffer) == 60
    obs, info = env.reset(seed=0)
    for _ in range(5):
        action, _states = model.predict(obs, deterministic=True)
        assert action.shape == (1,) and env.action_space.contains(action.astype(np.float32))
        obs, reward, terminated, truncated, info = env.step(action)


def test_chunked_learn_counts_every_chunk() -> None:
    model = BayesDQN("MlpPolicy", "CartPole-v1", seed=0, **DQN_KW)
    model.learn(150)
    model.learn(150, reset_num_timesteps=False)
    assert model.num_timesteps == 300
    for _ in range(2):  # the SB3 guide's "continue training" loop
        model.learn(total_timesteps=50, reset_num_timesteps=False)
    assert model.num_timesteps == 400
    model.learn(60)  # reset_num_timesteps=True: a fresh count, as in SB3
    assert model.num_timesteps == 60
    model.learn_until(130)  # riskrl's explicit "up to a total" call
    assert model.num_timesteps == 130
    model.learn_until(100)  # already past it: nothing to do
    assert model.num_timesteps == 130


def test_custom_callback_logs_a_value_to_tensorboard(tmp_path: Path) -> None:
    class TensorboardCallback(BaseCallback):
        """Custom callback for plotting additional values in tensorboard (SB3 docs)."""

        def __init__(self, verbose: int = 0) -> None:
            super().__init__(verbose)
            self.seen: list[tuple[int, int]] = []

        def _on_training_start(self) -> None:
            assert self.locals["total_timesteps"] == 60 and self.training_env.num_envs == 1

        def _on_step(self) -> bool:
            value = np.random.random()
            self.logger.record("random_value", value)
            self.seen.append((self.n_calls, self.num_timesteps))
            assert "infos" in self.locals and self.model is not None
            return True

    model = BayesMPC("MlpPolicy", "Pendulum-v1", tensorboard_log=str(tmp_path / "sac"), seed=0, **MPC_KW)
    callback = TensorboardCallback()
    model.learn(60, callback=callback)
    assert callback.seen == [(i, i) for i in range(1, 61)]
    runs = sorted(p.name for p in (tmp_path / "sac").iterdir())
    assert runs == ["BayesMPC_1"]  # SB3's layout: <tensorboard_log>/<tb_log_name>_<run>
    events = EventAccumulator(str(tmp_path / "sac" / "BayesMPC_1"))
    events.Reload()
    assert "random_value" in events.Tags()["scalars"]


def test_eval_callback_stops_on_reward_threshold(tmp_path: Path) -> None:
    eval_env = gym.make("CartPole-v1")
    # Stop training when the model reaches the reward threshold (every return beats 5 on CartPole)
    callback_on_best = StopTrainingOnRewardThreshold(reward_threshold=5, verbose=1)
    eval_callback = EvalCallback(
        eval_env,
        callback_on_new_best=callback_on_best,
        eval_freq=100,
        n_eval_episodes=2,
        best_model_save_path=str(tmp_path),
        log_path=str(tmp_path),
        verbose=1,
    )
    model = BayesDQN("MlpPolicy", "CartPole-v1", verbose=1, seed=0, **DQN_KW)
    # Almost infinite number of timesteps, but the training will stop early as soon as the reward
    # threshold is reached
    model.learn(int(1e10), callback=eval_callback)
    assert model.num_timesteps == 100
    assert eval_callback.best_mean_reward > 5
    assert np.load(tmp_path / "evaluations.npz")["timesteps"].tolist() == [100]
    assert load_agent(tmp_path / "best_model").num_timesteps == 100


def test_checkpoint_callback_saves_riskrl_checkpoints(tmp_path: Path) -> None:
    # Save a checkpoint every 30 steps
    checkpoint_callback = CheckpointCallback(
        save_freq=30,
        save_path=str(tmp_path / "logs"),
        name_prefix="rl_model",
        save_replay_buffer=True,
        save_vecnormalize=True,
    )
    model = BayesMPC("MlpPolicy", "Pendulum-v1", seed=0, **MPC_KW)
    model.learn(60, callback=checkpoint_callback)
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    # the replay buffer is inside each checkpoint (riskrl's safe format), so there is no .pkl
    assert files == ["rl_model_30_steps.zip", "rl_model_60_steps.zip"]
    first = load_agent(tmp_path / "logs" / "rl_model_30_steps.zip")
    assert first.num_timesteps == 30 and len(first.buffer) == 30
    first.learn(30, reset_num_timesteps=False)  # continues from the checkpoint
    assert first.num_timesteps == 60


def test_callback_list_and_sb3_progress_bar() -> None:
    pytest.importorskip("rich", reason="SB3's ProgressBarCallback needs rich")
    from stable_baselines3.common.callbacks import ProgressBarCallback

    class Count(BaseCallback):
        def _on_step(self) -> bool:
            return True

    count = Count()
    model = BayesDQN("MlpPolicy", "CartPole-v1", seed=0, **DQN_KW)
    model.learn(100, callback=CallbackList([count, ProgressBarCallback()]))
    assert count.n_calls == 100 and count.num_timesteps == 100
    calls: list[int] = []
    model.learn(20, callback=lambda locals_, globals_: calls.append(1) is None, reset_num_timesteps=False)
    assert len(calls) == 20 and model.num_timesteps == 120


def test_save_load_continue_on_a_given_env(tmp_path: Path) -> None:
    env = gym.make("CartPole-v1")
    model = BayesDQN("MlpPolicy", env, seed=1, **DQN_KW)
    model.learn(200)
    model.save(tmp_path / "dqn")
    model = BayesDQN.load(tmp_path / "dqn", env=env)
    model.learn(200, reset_num_timesteps=False)
    assert model.num_timesteps == 400
    mean, std = evaluate_policy(model, model.get_env(), n_eval_episodes=3)
    assert 8 <= mean <= 500


def test_get_env_is_an_sb3_vec_env_of_the_training_env() -> None:
    model = BayesDQN("MlpPolicy", "CartPole-v1", seed=0, **DQN_KW).learn(100)
    vec_env = model.get_env()
    assert isinstance(vec_env, VecEnv) and vec_env is model.get_env()
    obs = vec_env.reset()
    dones = 0
    for _ in range(200):  # the SB3 README's loop
        action, _state = model.predict(obs, deterministic=True)
        obs, reward, done, info = vec_env.step(action)
        assert obs.shape == (1, 4) and reward.shape == (1,)
        if done[0]:
            dones += 1
            assert info[0]["terminal_observation"].shape == (4,) and "episode" in info[0]
            assert np.abs(obs[0]).max() <= 0.05  # already the reset observation, as SB3 expects
    assert dones >= 1


def test_sb3_vec_env_is_trained_on_directly(tmp_path: Path) -> None:
    vec_env = make_vec_env("CartPole-v1", n_envs=2, seed=0, monitor_dir=str(tmp_path))
    model = BayesDQN("MlpPolicy", vec_env, seed=0, **DQN_KW)
    assert model.get_env() is vec_env and model.n_envs == 2
    model.learn(200)
    assert model.num_timesteps == 200
    monitored = sum(
        len(np.loadtxt(p, delimiter=",", skiprows=2, ndmin=2)) for p in tmp_path.glob("*.monitor.csv")
    )
    assert monitored >= 1  # the episodes ran in the VecEnv that was passed, through its Monitor
    data = model.buffer.all()
    assert len(data["obs"]) == 200
    term = data["terminated"].bool()
    assert int(term.sum()) >= 1
    # terminal transitions keep SB3's terminal_observation (a fallen pole), not the reset observation
    nxt = data["next_obs"][term]
    assert bool(((nxt[:, 2].abs() > 0.2094) | (nxt[:, 0].abs() > 2.4)).all())
    live = data["next_obs"][~term]
    assert bool((live[:, 2].abs() <= 0.2095).all())


def test_set_env_set_random_seed_and_parameters() -> None:
    a = BayesDQN("MlpPolicy", "CartPole-v1", seed=0, **DQN_KW)
    b = BayesDQN("MlpPolicy", "CartPole-v1", seed=5, **DQN_KW)
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    assert not np.array_equal(a.predict_with_uncertainty(obs)[1], b.predict_with_uncertainty(obs)[1])
    b.set_parameters(a.get_parameters())
    np.testing.assert_array_equal(a.predict_with_uncertainty(obs)[1], b.predict_with_uncertainty(obs)[1])
    params = a.get_parameters()
    with pytest.raises(ValueError, match="do not match"):
        BayesDQN("CartPole-v1", hidden=(8,), n_members=3).set_parameters(params)

    # set_random_seed: the same seed gives the same training from the same weights
    a.set_random_seed(3)
    b.set_random_seed(3)
    a.learn(150)
    b.learn(150)
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert isinstance(a.policy, torch.nn.Module)
    assert a.policy.predict(obs[0], deterministic=True)[0] == a.predict(obs[0])[0]
    np.testing.assert_array_equal(a.policy(torch.as_tensor(obs)).numpy(), a.predict(obs)[0])

    a.set_env(gym.make("CartPole-v1"))
    a.learn(50, reset_num_timesteps=False)
    assert a.num_timesteps == 200
    with pytest.raises(ValueError, match="observation space"):
        a.set_env("Acrobot-v1")
    with pytest.raises(ValueError, match="2 envs"):
        a.set_env(DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2))


def test_sb3_arguments_that_cannot_map_are_refused() -> None:
    with pytest.raises(ValueError, match="MlpPolicy"):
        BayesDQN("CnnPolicy", "CartPole-v1")
    with pytest.raises(ValueError, match="net_arch"):
        BayesDQN("MlpPolicy", "CartPole-v1", policy_kwargs={"activation_fn": torch.nn.Tanh})
    with pytest.raises(ValueError, match="second argument"):
        BayesDQN("MlpPolicy", 0.5)
    agent = BayesDQN("MlpPolicy", "CartPole-v1", device="auto", **DQN_KW)
    assert agent.config.hidden == (16, 16)
    with pytest.raises(ValueError, match="callback"):
        agent.learn(10, callback=42)  # type: ignore[arg-type]
