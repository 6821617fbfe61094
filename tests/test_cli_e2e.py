"""`riskrl sweep`, `riskrl bench` and `riskrl demo` end to end at tiny budgets, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _riskrl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "riskrl", *args], capture_output=True, text=True, cwd=cwd, timeout=500, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return proc


@pytest.mark.slow
def test_sweep_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    _riskrl(
        "sweep", "--steps", "300", "--seeds", "0,1", "--risk-tolerances", "0,2", "--episodes", "4",
        "--perturb", "long:length=1.0", "--set", "hidden=[16,16]", "--set", "learning_starts=100",
        "--out", str(out), "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    data = json.loads((out / "sweep.json").read_text())
    rows = data["rows"]
    # 2 seeds x 2 risk tolerances x (nominal + long pole), each a real evaluation of 4 episodes
    assert len(rows) == 8
    assert {(r["seed"], r["risk_tolerance"], r["perturbation"]) for r in rows} == {
        (s, k, p) for s in (0, 1) for k in (0.0, 2.0) for p in ("nominal", "long")
    }
    for r in rows:
        assert 1 <= r["mean"] <= 500 and r["worst"] <= r["cvar"] <= r["mean"] + 1e-9
    assert list(data["config"]["agent_kwargs"]["hidden"]) == [16, 16]
    assert (out / "sweep.md").read_text().count("\n|") >= 4
    assert (out / "sweep.png").stat().st_size > 1000


@pytest.mark.slow
def test_bench_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    _riskrl(
        "bench", "--algos", "BayesDQN,sb3:DQN", "--seeds", "0", "--steps", "400", "--eval-every", "200",
        "--episodes", "3", "--final-episodes", "5", "--shift", "long:length=1.0", "--out", str(out), "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    data = json.loads((out / "bench.json").read_text())
    assert [r["algo"] for r in data["runs"]] == ["BayesDQN", "sb3:DQN"]
    for run in data["runs"]:
        assert [p["timestep"] for p in run["curve"]] == [200, 400]
        assert run["final_shifted"] is not None
    assert data["config"]["total_timesteps"] == 400 and data["provenance"]["riskrl"]
    md = (out / "bench.md").read_text()
    assert "| BayesDQN |" in md and "| sb3:DQN |" in md


@pytest.mark.slow
def test_demo_end_to_end_tiny(tmp_path: Path) -> None:
    """The main job at a tiny budget: both agents trained, swept, compared, report written."""
    out = tmp_path / "demo"
    _riskrl(
        "demo", "--steps", "300", "--seeds", "0", "--workers", "1", "--out", str(out), "--quiet", cwd=tmp_path
    )
    report = (out / "report.md").read_text()
    for heading in (
        "BayesDQN vs stable-baselines3 DQN",
        "What risk_tolerance does",
        "Robustness to the pole",
    ):
        assert heading in report
    bench = json.loads((out / "bench.json").read_text())
    assert [r["algo"] for r in bench["runs"]] == ["BayesDQN", "sb3:DQN"]
    sweep = json.loads((out / "sweep.json").read_text())
    # 1 seed x 5 risk tolerances x (nominal + shifted), evaluated on the trained checkpoint
    assert len(sweep["rows"]) == 10
    demo = json.loads((out / "demo.json").read_text())
    assert demo["config"]["steps"] == 300 and demo["provenance"]["riskrl"]
    for png in ("bench.png", "sweep.png", "robustness.png"):
        assert (out / png).stat().st_size > 1000


def test_train_with_domain_randomization_and_bad_ranges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from riskrl.agents import load_agent
    from riskrl.cli import main

    out = tmp_path / "dr"
    argv = ["train", "--steps", "200", "--set", "hidden=16,16", "--randomize", "length=0.25:1.5", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads((out / "train.json").read_text())["randomize"] == {"length": [0.25, 1.5]}
    assert load_agent(out / "model.riskrl").predict([0.0, 0.0, 0.05, 0.0])[0] in (0, 1)
    capsys.readouterr()
    assert main(["train", "--randomize", "length=0:1.5", "--out", str(tmp_path / "a")]) == 2
    assert "length must be > 0" in capsys.readouterr().err
    assert main(["bench", "--randomize", "lenght=0.1:1", "--out", str(tmp_path / "b")]) == 2
    assert "lenght" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "--randomize", "length=abc"])
    assert exc.value.code == 2 and "NAME=LOW:HIGH" in capsys.readouterr().err
