"""Sweeps: local processes and a real local Ray cluster give identical results for the same seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from riskrl.envs.perturbation import Perturbation
from riskrl.sweep import SweepConfig, sweep

TINY = SweepConfig(
    env_id="CartPole-v1",
    agent="BayesDQN",
    risk_tolerances=(0.0, 2.0),
    seeds=(0, 1),
    perturbations=(Perturbation(), Perturbation("long_pole", {"length": 1.0})),
    total_timesteps=400,
    n_eval_episodes=6,
    agent_kwargs={"learning_starts": 100, "n_members": 3, "hidden": (16, 16)},
)


def _key(rows: list[dict]) -> list[tuple]:
    return sorted((r["seed"], r["perturbation"], r["risk_tolerance"], r["mean"], r["cvar"]) for r in rows)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory):
    return sweep(TINY, out_dir=tmp_path_factory.mktemp("sweep"))


def test_grid_is_complete_and_saved(in_process, tmp_path_factory) -> None:
    rows = in_process.rows
    assert len(rows) == 2 * 2 * 2
    assert {(r["seed"], r["perturbation"], r["risk_tolerance"]) for r in rows} == {
        (s, p, k) for s in (0, 1) for p in ("nominal", "long_pole") for k in (0.0, 2.0)
    }
    agg = in_process.aggregate()
    assert len(agg) == 4 and all(a["n_seeds"] == 2 for a in agg)
    nominal0 = [r["mean"] for r in rows if r["perturbation"] == "nominal" and r["risk_tolerance"] == 0.0]
    assert agg[0]["mean"] == pytest.approx(sum(nominal0) / 2)
    assert "| long_pole | 2 |" in in_process.to_markdown()


def test_save_writes_json_markdown_png(tmp_path: Path, in_process) -> None:
    paths = in_process.save(tmp_path)
    assert json.loads(paths["json"].read_text())["rows"] == json.loads(json.dumps(in_process.rows))
    assert paths["png"].stat().st_size > 1000 and paths["markdown"].read_text().startswith("Sweep:")


@pytest.mark.slow
def test_local_processes_match_in_process(in_process) -> None:
    two = sweep(TINY, workers=2)
    assert _key(two.rows) == _key(in_process.rows)


@pytest.mark.slow
def test_ray_cluster_matches_local(in_process) -> None:
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'riskrl[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # a real local cluster
    try:
        via_ray = sweep(TINY, backend="ray")
    finally:
        ray.shutdown()
    assert via_ray.backend == "ray"
    assert _key(via_ray.rows) == _key(in_process.rows)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"risk_tolerances": ()}, "risk_tolerances"),
        ({"risk_tolerances": (float("nan"),)}, "risk_tolerance"),
        ({"seeds": (1, 1)}, "distinct"),
        ({"agent": "Nope"}, "unknown agent"),
        ({"perturbations": (Perturbation(), Perturbation())}, "distinct names"),
        ({"total_timesteps": 0}, ">= 1"),
    ],
)
def test_bad_sweeps_are_rejected(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sweep(TINY, **overrides)


def test_bad_backend_and_perturbation_text() -> None:
    with pytest.raises(ValueError, match="backend"):
        sweep(TINY, backend="slurm")
    with pytest.raises(ValueError, match="key=value"):
        Perturbation.parse("x:length")
    assert Perturbation.parse("long:length=1.0,masspole=0.2").params == {"length": 1.0, "masspole": 0.2}
