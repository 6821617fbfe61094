"""The main job behind ``make demo`` / ``riskrl demo``: train, sweep risk_tolerance, compare, report.

1. Train BayesDQN and stable-baselines3 DQN (zoo hyperparameters) on CartPole-v1 at the same
   environment-step budget, several seeds, with learning curves (:func:`riskrl.benchmark.bench`).
2. Evaluate every trained BayesDQN at several ``risk_tolerance`` values, without retraining, under
   nominal and shifted dynamics (a longer, heavier pole) (:func:`riskrl.sweep.evaluate_grid`).
3. Write ``report.md`` with tables and plots into the run directory.
"""

from __future__ import annotations

import time
from pathlib import Path

from riskrl.agents import load_agent
from riskrl.benchmark import BenchConfig, bench
from riskrl.checkpoint import atomic_write_bytes
from riskrl.envs.perturbation import Perturbation
from riskrl.plotting import plot_robustness
from riskrl.results import write_results
from riskrl.robustness import robustness_curve
from riskrl.sweep import SweepConfig, SweepResult, evaluate_grid

__all__ = ["run_demo"]

SHIFT = Perturbation("long_heavy_pole", {"length": 1.5, "masspole": 0.3})
ROBUSTNESS_LENGTHS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def run_demo(
    out_dir: str | Path = "runs/demo",
    quick: bool = False,
    workers: int = 2,
    progress: bool = True,
    *,
    steps: int | None = None,
    seeds: tuple[int, ...] | None = None,
    robustness_episodes: int = 50,
) -> Path:
    """Run the demo into ``out_dir`` and return the path of its ``report.md``.

    ``steps`` and ``seeds`` override the budget (default 15k steps x seeds 0-2; ``quick``: 5k x 0-1).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    steps = int(steps) if steps is not None else (5_000 if quick else 15_000)
    seeds = tuple(int(s) for s in seeds) if seeds is not None else ((0, 1) if quick else (0, 1, 2))
    if steps < 10 or not seeds:
        raise ValueError(
            f"the demo needs steps >= 10 and at least one seed, got steps={steps}, seeds={seeds}"
        )
    cfg = BenchConfig(
        env_id="CartPole-v1",
        algos=("BayesDQN", "sb3:DQN"),
        seeds=seeds,
        total_timesteps=steps,
        eval_every=steps // 10,
        n_eval_episodes=10,
        final_eval_episodes=100,
        shift=SHIFT,
    )
    print(f"[1/3] training BayesDQN and SB3 DQN on CartPole-v1: {steps} steps x seeds {list(seeds)}")
    bench_result = bench(cfg, workers=workers, out_dir=out, save_checkpoints=True, progress_bar=progress)

    print("[2/3] sweeping risk_tolerance on the trained BayesDQN agents (no retraining)")
    sweep_cfg = SweepConfig(
        env_id="CartPole-v1",
        agent="BayesDQN",
        risk_tolerances=(-1.0, 0.0, 0.5, 1.0, 2.0),
        seeds=seeds,
        perturbations=(Perturbation(), SHIFT),
        total_timesteps=steps,
        n_eval_episodes=100,
    )
    rows = []
    sweep_start = time.perf_counter()
    for run in bench_result.runs:
        if run["algo"] == "BayesDQN" and run["checkpoint"]:
            agent = load_agent(run["checkpoint"])
            rows += evaluate_grid(agent, sweep_cfg, run["seed"], run["train_seconds"])
    sweep_result = SweepResult(
        sweep_cfg, rows, backend="local", wall_seconds=time.perf_counter() - sweep_start
    )
    sweep_result.save(out)

    first = next(r for r in bench_result.runs if r["algo"] == "BayesDQN" and r["checkpoint"])
    agent = load_agent(first["checkpoint"])
    curves = {}
    for k in (0.0, 1.0, 2.0):
        agent.risk_tolerance = k
        curves[f"risk_tolerance={k:g}"] = robustness_curve(
            agent,
            "CartPole-v1",
            "length",
            ROBUSTNESS_LENGTHS,
            n_episodes=robustness_episodes,
            seed=cfg.eval_seed,
            bootstrap=False,
        )
    plot_robustness(curves, "pole half-length (nominal 0.5)", path=out / "robustness.png")

    print("[3/3] writing the report")
    minutes = (time.perf_counter() - start) / 60
    report = out / "report.md"
    text = "\n".join(
        [
            "# riskrl demo report",
            "",
            "Policies act on `score(s, a) = mean(s, a) - risk_tolerance * std(s, a)` where mean and std are the",
            "posterior mean and epistemic standard deviation of a Bayesian Q-network (BayesDQN).",
            f"Shifted dynamics: {', '.join(f'{k}={v:g}' for k, v in SHIFT.params.items())} "
            "(CartPole's nominal half pole length is 0.5 and pole mass 0.1).",
            "",
            "## BayesDQN vs stable-baselines3 DQN at the same step budget",
            "",
            bench_result.to_markdown(),
            "",
            "![learning curves](bench.png)",
            "",
            "## What risk_tolerance does (same trained agents, no retraining)",
            "",
            sweep_result.to_markdown(),
            "",
            "![sweep](sweep.png)",
            "",
            f"## Robustness to the pole length (seed-{first['seed']} agent, {robustness_episodes} episodes per point)",
            "",
            "![robustness](robustness.png)",
            "",
            f"Total wall-clock: {minutes:.1f} minutes. Raw numbers: `bench.json`, `sweep.json`; "
            "trained agents: `checkpoints/` (load with `riskrl.agents.load_agent`; no pickle).",
            "",
        ]
    )
    atomic_write_bytes(report, text.encode())
    write_results(
        out,
        "demo",
        {"minutes": minutes},
        config={"quick": quick, "workers": workers, "steps": steps, "seeds": list(seeds)},
    )
    return report
