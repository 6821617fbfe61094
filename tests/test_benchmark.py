"""riskrl.benchmark: riskrl agents and SB3 zoo baselines on the same envs, curves and reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from riskrl import evaluate
from riskrl.agents import load_agent
from riskrl.benchmark import BenchConfig, bench, make_sb3_model
from riskrl.envs.perturbation import Perturbation


@pytest.mark.slow
def test_tiny_bench_runs_both_kinds_and_saves(tmp_path: Path) -> None:
    cfg = BenchConfig(
        env_id="CartPole-v1",
        algos=("BayesDQN", "sb3:DQN"),
        seeds=(0,),
        total_timesteps=1_200,
        eval_every=400,
        n_eval_episodes=3,
        final_eval_episodes=5,
        shift=Perturbation("long", {"length": 1.0}),
        agent_kwargs={"BayesDQN": {"learning_starts": 200, "n_members": 3, "hidden": (16, 16)}},
    )
    result = bench(cfg, out_dir=tmp_path, save_checkpoints=True)
    assert [r["algo"] for r in result.runs] == ["BayesDQN", "sb3:DQN"]
    for run in result.runs:
        assert [p["timestep"] for p in run["curve"]] == [400, 800, 1200]
    # The recorded numbers are those of the trained policy, on nominal and on shifted dynamics.
    agent = load_agent(result.runs[0]["checkpoint"])
    nominal = evaluate(agent, "CartPole-v1", n_episodes=5, seed=cfg.eval_seed, bootstrap=False)
    shifted = evaluate(
        agent, "CartPole-v1", n_episodes=5, seed=cfg.eval_seed, perturb={"length": 1.0}, bootstrap=False
    )
    assert result.runs[0]["final"]["mean"] == pytest.approx(nominal.mean)
    assert result.runs[0]["final_shifted"]["mean"] == pytest.approx(shifted.mean)
    assert result.runs[0]["final"]["cvar"] == pytest.approx(nominal.cvar)
    # The last curve point (at the budget) is the periodic evaluator's: n_eval_episodes from eval_seed.
    at_end = evaluate(agent, "CartPole-v1", n_episodes=3, seed=cfg.eval_seed, bootstrap=False)
    last = result.runs[0]["curve"][-1]
    assert (last["mean"], last["std"], last["cvar"]) == pytest.approx((at_end.mean, at_end.std, at_end.cvar))
    assert last["failure_rate"] == pytest.approx(at_end.failure_rate)
    assert result.runs[1]["checkpoint"] is None  # SB3 models are never saved with pickle here
    data = json.loads((tmp_path / "bench.json").read_text())
    assert [s["algo"] for s in data["summary"]] == ["BayesDQN", "sb3:DQN"]
    assert data["config"]["total_timesteps"] == 1_200 and data["provenance"]["torch_threads"] >= 1
    assert data["summary"][0]["final_mean"] == pytest.approx(result.runs[0]["final"]["mean"])
    assert "| sb3:DQN |" in (tmp_path / "bench.md").read_text()
    assert (tmp_path / "bench.png").stat().st_size > 1000


def test_zoo_schedules_and_errors() -> None:
    ppo = make_sb3_model("PPO", "CartPole-v1", seed=0)
    assert ppo.n_envs == 8 and ppo.lr_schedule(0.5) == pytest.approx(5e-4) and ppo.clip_range(0.5) == 0.1
    with pytest.raises(ValueError, match="no zoo hyperparameters"):
        make_sb3_model("SAC", "CartPole-v1", seed=0)
    with pytest.raises(ValueError, match="no zoo hyperparameters"):
        bench(BenchConfig(algos=("sb3:TD3",)))
    with pytest.raises(ValueError, match="unknown agent"):
        bench(BenchConfig(algos=("BayesNope",)))
