"""learn(): callbacks (evaluation, checkpoints, early stop), progress bar, CSV and TensorBoard logs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from riskrl.agents import BaseCallback, BayesDQN, CheckpointCallback, EvalCallback, load_agent

TINY = {"learning_starts": 100, "n_members": 3, "hidden": (16, 16)}


def test_eval_and_checkpoint_callbacks_fire_on_schedule(tmp_path: Path) -> None:
    agent = BayesDQN("CartPole-v1", seed=0, **TINY)
    evals = EvalCallback(
        eval_freq=200, n_eval_episodes=4, log_path=tmp_path / "eval", best_model_path=tmp_path / "best.riskrl"
    )
    ckpts = CheckpointCallback(save_freq=250, save_path=tmp_path / "ck", keep_last=2)
    agent.learn(1000, callback=[evals, ckpts], log_dir=tmp_path / "logs")
    assert [row["timestep"] for row in evals.history] == [200, 400, 600, 800, 1000]
    lines = (tmp_path / "eval" / "evaluations.jsonl").read_text().splitlines()
    assert [json.loads(x)["timestep"] for x in lines] == [200, 400, 600, 800, 1000]
    assert load_agent(tmp_path / "best.riskrl").num_timesteps in {200, 400, 600, 800, 1000}
    kept = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert kept == ["agent_1000_steps.riskrl", "agent_750_steps.riskrl", "agent_latest.riskrl"]
    assert load_agent(tmp_path / "ck" / "agent_latest.riskrl").num_timesteps == 1000
    with open(tmp_path / "logs" / "metrics.csv") as fh:
        names = {row["name"] for row in csv.DictReader(fh)}
    assert {"eval/mean_return", "eval/cvar"} <= names
    with open(tmp_path / "logs" / "episodes.csv") as fh:
        episodes = list(csv.DictReader(fh))
    assert episodes and sum(int(e["length"]) for e in episodes) <= 1000
    assert all(float(e["return"]) == float(e["length"]) for e in episodes)  # CartPole: +1 per step
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))


def test_callback_can_stop_training_and_progress_bar_runs(capsys: pytest.CaptureFixture[str]) -> None:
    class StopAt(BaseCallback):
        def on_step(self, agent) -> bool:
            return agent.num_timesteps < 150

    agent = BayesDQN("CartPole-v1", seed=0, **TINY)
    agent.learn(1000, callback=StopAt(), progress_bar=True)
    assert agent.num_timesteps == 150
    assert "BayesDQN learn" in capsys.readouterr().err


def test_bad_callback_frequency() -> None:
    with pytest.raises(ValueError, match="frequency"):
        EvalCallback(eval_freq=0)
