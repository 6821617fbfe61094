"""learn(): callbacks (evaluation, checkpoints, early stop), progress bar, SB3-style logs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from stable_baselines3.common.callbacks import EvalCallback as SB3EvalCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor

from riskrl import evaluate
from riskrl.agents import (
    BaseCallback,
    BayesDQN,
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnRewardThreshold,
    load_agent,
)

TINY = {"learning_starts": 100, "n_members": 3, "hidden": (16, 16)}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_eval_and_checkpoint_callbacks_fire_on_schedule(tmp_path: Path) -> None:
    agent = BayesDQN("CartPole-v1", seed=0, **TINY)
    evals = EvalCallback(
        eval_freq=200, n_eval_episodes=4, log_path=tmp_path / "eval", best_model_save_path=tmp_path / "best"
    )
    assert isinstance(evals, SB3EvalCallback)
    ckpts = CheckpointCallback(save_freq=250, save_path=tmp_path / "ck", name_prefix="agent", keep_last=2)
    agent.learn(1000, callback=[evals, ckpts], log_dir=tmp_path / "logs")
    assert [row["timestep"] for row in evals.history] == [200, 400, 600, 800, 1000]
    assert all(row["cvar"] <= row["mean_return"] for row in evals.history)
    lines = (tmp_path / "eval" / "evaluations.jsonl").read_text().splitlines()
    assert [json.loads(x)["timestep"] for x in lines] == [200, 400, 600, 800, 1000]
    npz = np.load(tmp_path / "eval" / "evaluations.npz")  # SB3's file, same keys
    assert npz["timesteps"].tolist() == [200, 400, 600, 800, 1000]
    assert npz["results"].shape == (5, 4) and npz["ep_lengths"].shape == (5, 4)
    best = load_agent(tmp_path / "best" / "best_model")
    assert best.num_timesteps in {200, 400, 600, 800, 1000}
    assert evals.best_mean_reward == max(row["mean_return"] for row in evals.history)
    kept = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert kept == ["agent_1000_steps.zip", "agent_750_steps.zip"]
    assert load_agent(tmp_path / "ck" / "agent_1000_steps.zip").num_timesteps == 1000
    progress = _rows(tmp_path / "logs" / "progress.csv")
    assert {"eval/mean_reward", "eval/cvar", "rollout/ep_rew_mean", "time/total_timesteps"} <= set(
        progress[0]
    )
    eval_rows = [r for r in progress if r["eval/mean_reward"]]
    assert [int(r["time/total_timesteps"]) for r in eval_rows] == [200, 400, 600, 800, 1000]
    episodes = _rows(tmp_path / "logs" / "episodes.csv")
    assert episodes and sum(int(e["length"]) for e in episodes) <= 1000
    assert all(float(e["return"]) == float(e["length"]) for e in episodes)  # CartPole: +1 per step
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))


def test_best_model_is_the_best_evaluation_and_no_worse_one_replaces_it(tmp_path: Path) -> None:
    agent = BayesDQN("CartPole-v1", seed=0, **TINY)
    evals = EvalCallback(eval_freq=150, n_eval_episodes=6, best_model_save_path=tmp_path, seed=3, verbose=0)
    agent.learn(1200, callback=evals)
    means = [row["mean_return"] for row in evals.history]
    best = int(np.argmax(means))  # the first of the best: an equal later one does not replace it
    assert min(means[best + 1 :], default=np.inf) < means[best], "precondition: a worse evaluation came later"
    saved = load_agent(tmp_path / "best_model")
    assert saved.num_timesteps == evals.history[best]["timestep"]
    again = evaluate(saved, "CartPole-v1", n_episodes=6, seed=3, bootstrap=False)
    assert again.mean == evals.best_mean_reward == means[best]


def test_eval_freq_can_count_env_steps_whatever_the_number_of_envs() -> None:
    agent = BayesDQN("CartPole-v1", seed=0, num_envs=3, **TINY)
    by_steps = EvalCallback(eval_freq=200, freq_unit="timesteps", n_eval_episodes=2, verbose=0)
    by_calls = EvalCallback(eval_freq=200, n_eval_episodes=2, verbose=0)  # SB3's default unit
    sb3_path = EvalCallback(  # a gymnasium Env: SB3's own evaluate_policy, same schedule
        Monitor(gymnasium.make("CartPole-v1")),
        eval_freq=250,
        freq_unit="timesteps",
        n_eval_episodes=2,
        verbose=0,
        warn=False,
    )
    agent.learn(900, callback=[by_steps, by_calls, sb3_path])
    # the first vectorised step (3 env steps each) at or past each multiple of 200
    assert [r["timestep"] for r in by_steps.history] == [201, 402, 600, 801]
    assert [r["timestep"] for r in by_calls.history] == [600]  # 200 calls = 600 env steps
    assert [r["timestep"] for r in sb3_path.history] == [252, 501, 750]
    assert by_steps.eval_seconds > 0 and all(0 <= r["failure_rate"] <= 1 for r in by_steps.history)
    # resuming counts on from the steps done; a step crossing several multiples evaluates once
    every_call = EvalCallback(eval_freq=2, freq_unit="timesteps", n_eval_episodes=1, verbose=0)
    agent.learn_until(912, callback=every_call)
    assert [r["timestep"] for r in every_call.history] == [903, 906, 909, 912]
    with pytest.raises(ValueError, match="freq_unit"):
        EvalCallback(freq_unit="episodes")


def test_callback_can_stop_training_and_progress_bar_runs(capsys: pytest.CaptureFixture[str]) -> None:
    class StopAt(BaseCallback):
        def _on_step(self) -> bool:
            return self.num_timesteps < 150

    stop = StopAt()
    agent = BayesDQN("CartPole-v1", seed=0, **TINY)
    agent.learn(1000, callback=stop, progress_bar=True)
    assert agent.num_timesteps == 150
    assert stop.n_calls == 150 and stop.model is agent
    assert "BayesDQN learn" in capsys.readouterr().err


def test_stop_on_reward_threshold_through_riskrl_eval() -> None:
    stop = StopTrainingOnRewardThreshold(reward_threshold=-1.0, verbose=0)  # any return beats it
    evals = EvalCallback(
        "CartPole-v1", callback_on_new_best=stop, eval_freq=120, n_eval_episodes=2, verbose=0
    )
    agent = BayesDQN("CartPole-v1", seed=0, **TINY)
    agent.learn(1000, callback=evals)
    assert agent.num_timesteps == 120


def test_bad_callback_arguments() -> None:
    with pytest.raises(ValueError, match="frequency"):
        EvalCallback(eval_freq=0)
    with pytest.raises(ValueError, match="frequency"):
        CheckpointCallback(save_freq=0, save_path="x")
    agent = BayesDQN("CartPole-v1", seed=0, **TINY)

    class OldStyle:  # riskrl's callbacks before they became SB3's
        def on_step(self, agent) -> bool:
            return True

    with pytest.raises(ValueError, match="BaseCallback"):
        agent.learn(10, callback=[OldStyle()])
    with pytest.raises(ValueError, match="log_interval"):
        agent.learn(10, log_interval=0)


def test_logger_records_custom_values_and_verbose_prints_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class LogValue(BaseCallback):
        def _on_step(self) -> bool:
            self.logger.record("custom/steps_seen", self.num_timesteps)
            return True

    agent = BayesDQN("CartPole-v1", seed=0, verbose=1, **TINY)
    agent.learn(400, callback=LogValue(), log_interval=2, log_dir=tmp_path)
    out = capsys.readouterr().out
    assert "rollout/" in out and "ep_rew_mean" in out and "custom/" in out
    progress = _rows(tmp_path / "progress.csv")
    steps = [int(r["time/total_timesteps"]) for r in progress]
    assert steps == sorted(steps) and steps[-1] == 400
    assert [int(r["custom/steps_seen"]) for r in progress] == steps  # the value recorded at each dump's step
    episodes = _rows(tmp_path / "episodes.csv")
    # log_interval=2: one dump per two finished episodes, plus the final one
    assert len(progress) == len(episodes) // 2 + 1
    assert agent.logger.output_formats == []  # outside learn: a logger that writes nowhere


def test_set_logger_is_used_by_every_learn_call(tmp_path: Path) -> None:
    agent = BayesDQN("CartPole-v1", seed=0, **TINY)
    agent.set_logger(configure(str(tmp_path), ["csv"]))
    agent.learn(200, log_interval=None)
    agent.learn(200, log_interval=None, reset_num_timesteps=False)
    rows = _rows(tmp_path / "progress.csv")
    assert [int(r["time/total_timesteps"]) for r in rows] == [200, 400]
    with pytest.raises(ValueError, match="set_logger"):
        agent.learn(10, log_dir=tmp_path / "other")
