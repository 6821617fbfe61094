"""riskrl agents vs stable-baselines3 baselines at equal environment-step budgets.

Every run is one entry of ``RUNS`` (env id, algorithm name, factory, kind): add an agent or an
environment by appending an entry. For each entry and seed the script trains for ``--steps``
environment steps, evaluates the greedy policy every ``--eval-every`` environment steps (learning
curve) with riskrl's periodic evaluator (:class:`riskrl.agents.EvalCallback` counting timesteps:
:func:`riskrl.evaluate` on riskrl's batched envs), and at the end on nominal and on shifted dynamics
(``SHIFTS``, via ``env.perturb``). Wall-clock is training time only (evaluation excluded), with one
torch thread per run. Runs go through :func:`riskrl.executor.run_jobs` (``--workers`` processes).

SB3 baselines use the rl-baselines3-zoo hyperparameters (hyperparams/dqn.yml, ppo.yml) and train on
gymnasium's own environments; their zoo budgets (DQN 5e4, PPO 1e5 steps) are larger than
``--steps`` may be, which the markdown states.

Usage:  python experiments/bench_agents.py [--quick] [--seeds 5] [--steps 25000] [--workers 2]
                                           [--algos BayesDQN,SB3-DQN] [--envs CartPole-v1]
        python experiments/bench_agents.py --merge results/a.json,results/b.json  (report only)
Writes: experiments/results/bench_agents.{json,md} and bench_agents_curves.png (--results-dir, --out)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from riskrl import evaluate
from riskrl.agents import BayesDQN, EvalCallback
from riskrl.benchmark import SB3_ZOO, make_sb3_model
from riskrl.executor import one_torch_thread, run_jobs
from riskrl.results import code_version, write_results

RESULTS = Path(__file__).parent / "results"

# Shifted dynamics for the robustness column (the same shift as experiments/risk_sweep.py).
SHIFTS: dict[str, dict[str, float]] = {
    "CartPole-v1": {"length": 1.5, "masspole": 0.3},
}
# Zoo budgets, to say in the report when --steps is smaller.
ZOO_BUDGETS = {"SB3-DQN": 50_000, "SB3-PPO": 100_000}
# Evaluation episodes of seed s start from seed EVAL_SEED + s (the same starts at every evaluation).
EVAL_SEED = 10_000


# ---------------------------------------------------------------------------------- factories
# A factory takes (env_id, seed, total_steps) and returns an untrained model with ``.learn``.


def make_bayes_dqn(env_id: str, seed: int, total_steps: int, **hyperparams: Any) -> Any:
    # --bayes-dqn-hyperparams (JSON) overrides the defaults, for tuning trials.
    extra = json.loads(os.environ.get("BENCH_BAYES_DQN_HYPERPARAMS", "") or "{}")
    return BayesDQN(env_id, seed=seed, **{**extra, **hyperparams})


def make_sb3_dqn(env_id: str, seed: int, total_steps: int) -> Any:
    """rl-baselines3-zoo hyperparams/dqn.yml (riskrl.benchmark.SB3_ZOO), on gymnasium's env."""
    return make_sb3_model("DQN", env_id, seed)


def make_sb3_ppo(env_id: str, seed: int, total_steps: int) -> Any:
    """rl-baselines3-zoo hyperparams/ppo.yml (8 envs, linear lr and clip schedules), on gymnasium's env."""
    return make_sb3_model("PPO", env_id, seed)


@dataclass(frozen=True)
class Entry:
    """One row of the run table: ``factory(env_id, seed, total_steps)`` builds the model."""

    env_id: str
    algo: str
    factory: Callable[..., Any]
    kind: str  # "riskrl" (riskrl.agents.Agent) or "sb3" (stable-baselines3 model)


RUNS: list[Entry] = [
    Entry("CartPole-v1", "BayesDQN", make_bayes_dqn, "riskrl"),
    Entry("CartPole-v1", "SB3-DQN", make_sb3_dqn, "sb3"),
    Entry("CartPole-v1", "SB3-PPO", make_sb3_ppo, "sb3"),
]


# ---------------------------------------------------------------------------------- one run


def mean_return(
    model: Any, env_id: str, n_episodes: int, seed: int, perturb: dict[str, float] | None = None
) -> float:
    """The mean return of ``n_episodes`` greedy episodes (the evaluation the curve points use)."""
    return float(evaluate(model, env_id, n_episodes, seed=seed, perturb=perturb, bootstrap=False).mean)


def run_hyperparams(entry: Entry, model: Any) -> dict[str, Any]:
    """The resolved hyperparameters a run trained with (riskrl config dataclass or the zoo table)."""
    if entry.kind == "riskrl":
        return dataclasses.asdict(model.config)
    n_envs, zoo = SB3_ZOO[(entry.algo.removeprefix("SB3-"), entry.env_id)]
    return {"n_envs": n_envs, **zoo}


def run_one(entry: Entry, seed: int, steps: int, eval_every: int, eval_episodes: int) -> dict[str, Any]:
    """Train one (entry, seed), return its curve, final returns and wall-clock (one torch thread)."""
    with one_torch_thread():
        return _run_one(entry, seed, steps, eval_every, eval_episodes)


def _run_one(entry: Entry, seed: int, steps: int, eval_every: int, eval_episodes: int) -> dict[str, Any]:
    eval_seed = EVAL_SEED + seed
    # riskrl agents and SB3 models take the same callback: evaluate every eval_every env steps
    evaluator = EvalCallback(
        entry.env_id,
        n_eval_episodes=eval_episodes,
        eval_freq=eval_every,
        freq_unit="timesteps",
        seed=eval_seed,
        verbose=0,
    )
    t0 = time.perf_counter()
    model = entry.factory(entry.env_id, seed, steps)
    model.learn(steps, callback=evaluator)
    train_seconds = time.perf_counter() - t0 - evaluator.eval_seconds
    curve = [(int(h["timestep"]), float(h["mean_return"])) for h in evaluator.history]
    if not curve or curve[-1][0] < steps:
        curve.append((steps, mean_return(model, entry.env_id, eval_episodes, eval_seed)))
    final = curve[-1][1]
    shift = SHIFTS.get(entry.env_id)
    shifted = mean_return(model, entry.env_id, eval_episodes, eval_seed, perturb=shift) if shift else None
    threshold = 500.0 if entry.env_id == "CartPole-v1" else None
    first = next((t for t, r in curve if threshold is not None and r >= threshold), None)
    return {
        "env_id": entry.env_id,
        "algo": entry.algo,
        "seed": seed,
        "steps": steps,
        "hyperparams": run_hyperparams(entry, model),
        "overrides": json.loads(os.environ.get("BENCH_BAYES_DQN_HYPERPARAMS", "") or "{}")
        if entry.algo == "BayesDQN"
        else {},
        "code_version": code_version(__file__),
        "curve": curve,
        "final_return": final,
        "best_return": max(r for _, r in curve),
        "shifted_return": shifted,
        "shift": shift,
        "first_step_at_500": first,
        "train_seconds": train_seconds,
    }


# ---------------------------------------------------------------------------------- reporting


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.1f} ± {a.std():.1f}"


def run_label(row: dict[str, Any]) -> str:
    """The algorithm name plus any hyperparameter overrides (older files: their stored label)."""
    overrides = row.get("overrides") or {}
    if not overrides:
        return row["algo"]
    return f"{row['algo']} {json.dumps(overrides, sort_keys=True, separators=(',', ':'))}"


def reached_500(runs: list[dict[str, Any]]) -> str:
    """``k/n (median first step)``: how many runs' evaluation mean hit 500, and when."""
    firsts = [r["first_step_at_500"] for r in runs if r["first_step_at_500"] is not None]
    return f"{len(firsts)}/{len(runs)}" + (f" ({int(np.median(firsts))})" if firsts else "")


def group_runs(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Runs grouped by (env, label); refuses two runs of one group with the same seed (a copy)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        group = groups.setdefault((r["env_id"], run_label(r)), [])
        if any(g["seed"] == r["seed"] for g in group):
            raise ValueError(f"two runs of {r['env_id']} {run_label(r)} with seed {r['seed']}")
        group.append(r)
    return {k: sorted(v, key=lambda r: r["seed"]) for k, v in groups.items()}


def markdown_report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# Agents benchmark: riskrl vs stable-baselines3",
        "",
        f"Budget {args.steps} environment steps per run, seeds {sorted({r['seed'] for r in rows})}, "
        f"evaluation every {args.eval_every} steps on {args.eval_episodes} episodes (greedy, "
        "risk_tolerance 0 for riskrl agents), one torch thread per run on a shared 2-core CPU. "
        "`mean ± std` over seeds. Final = at the budget; best = best point of the learning curve; "
        "shifted = final policy on shifted dynamics. 'reached 500' = runs whose evaluation mean hit "
        "500 at some point of the curve (CartPole-v1's maximum).",
        "",
        "| env | algo | runs | final return | best return | shifted return | reached 500 "
        "(median first step) | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups = group_runs(rows)
    for (env_id, algo), rs in groups.items():
        shifted = [r["shifted_return"] for r in rs if r["shifted_return"] is not None]
        lines.append(
            f"| {env_id} | {algo} | {len(rs)} | {_fmt([r['final_return'] for r in rs])} | "
            f"{_fmt([r['best_return'] for r in rs])} | {_fmt(shifted)} | {reached_500(rs)} | "
            f"{_fmt([r['train_seconds'] for r in rs])} |"
        )
    lines += ["", "Per seed (final / best / shifted / first step at 500 / train s):", ""]
    for (env_id, algo), rs in groups.items():
        per = "; ".join(
            f"seed {r['seed']}: {r['final_return']:.0f} / {r['best_return']:.0f} / "
            f"{r['shifted_return'] if r['shifted_return'] is None else round(r['shifted_return'])} / "
            f"{r['first_step_at_500']} / {r['train_seconds']:.0f}"
            for r in sorted(rs, key=lambda r: r["seed"])
        )
        lines.append(f"- {env_id} {algo}: {per}")
    notes = [
        f"- {algo}: the zoo budget is {budget} steps; here it had {args.steps}."
        for algo, budget in ZOO_BUDGETS.items()
        if any(r["algo"] == algo for r in rows) and budget > args.steps
    ]
    if getattr(args, "bayes_dqn_hyperparams", ""):
        notes.append(f"- BayesDQN ran with non-default hyperparameters {args.bayes_dqn_hyperparams}.")
    if notes:
        lines += ["", "Notes:", "", *notes]
    if args.notes:
        lines += ["", args.notes]
    return "\n".join(lines) + "\n"


def plot_curves(rows: list[dict[str, Any]]) -> Any:
    envs = sorted({r["env_id"] for r in rows})
    fig, axes = plt.subplots(1, len(envs), figsize=(6 * len(envs), 4), squeeze=False)
    for ax, env_id in zip(axes[0], envs):
        for (group_env, algo), rs in group_runs(rows).items():
            if group_env != env_id:
                continue
            steps = sorted({t for r in rs for t, _ in r["curve"]})
            # each seed's curve, interpolated on the common step grid
            ys = np.array([np.interp(steps, *zip(*r["curve"])) for r in rs])
            m, s = ys.mean(0), ys.std(0)
            ax.plot(steps, m, label=f"{algo} ({len(rs)} seeds)")
            ax.fill_between(steps, m - s, m + s, alpha=0.2)
        ax.set_title(env_id)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("evaluation return")
        ax.legend()
    fig.tight_layout()
    return fig


def save(rows: list[dict[str, Any]], args: argparse.Namespace, results: Path, partial: bool = False) -> None:
    """JSON (config + provenance + runs) after every run; markdown and the curve plot at the end."""
    group_runs(rows)  # refuse duplicated runs before anything is written
    if partial:
        write_results(results, args.out, {"runs": rows, "complete": False}, config=vars(args))
        return
    write_results(
        results,
        args.out,
        {"runs": rows, "complete": True},
        config=vars(args),
        markdown=markdown_report(rows, args),
        figures={"curves": plot_curves(rows)},
    )


# ---------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=25_000)
    parser.add_argument("--eval-every", type=int, default=2_500)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1"
    )
    parser.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--algos", default="", help="comma-separated algo names (default: all)")
    parser.add_argument("--envs", default="", help="comma-separated env ids (default: all)")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 3000 steps, 5 eval episodes")
    parser.add_argument("--out", default="bench_agents", help="file stem under experiments/results")
    parser.add_argument("--notes", default="", help="free text appended to the markdown")
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the runs already in the output JSON (those not re-run here) and add these",
    )
    parser.add_argument(
        "--merge",
        default="",
        help="comma-separated result JSONs (e.g. from runs on different machines): train nothing, "
        "write the combined report under --out",
    )
    parser.add_argument(
        "--bayes-dqn-hyperparams",
        default="",
        help="JSON dict of BayesDQN hyperparameters overriding the defaults, e.g. '{\"tau\": 0.005}'",
    )
    parser.add_argument(
        "--results-dir", default=str(RESULTS), help="output folder (default: experiments/results)"
    )
    args = parser.parse_args()
    if args.bayes_dqn_hyperparams:
        json.loads(args.bayes_dqn_hyperparams)  # fail early on bad JSON
        os.environ["BENCH_BAYES_DQN_HYPERPARAMS"] = args.bayes_dqn_hyperparams
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    if args.merge:
        merged: list[dict[str, Any]] = []
        for name in args.merge.split(","):
            data = json.loads(Path(name).read_text())
            merged.extend(data["runs"])
            config = data.get("config") or data["args"]  # files before riskrl.results: "args"
            for key in ("steps", "eval_every", "eval_episodes"):
                setattr(args, key, config[key])
        save(merged, args, results)
        print(f"merged {len(merged)} runs into {args.out}.json/.md/_curves.png")
        return
    if args.quick:
        args.seeds, args.steps, args.eval_every, args.eval_episodes = 2, 3_000, 1_000, 5
    for flag, wanted, known in (
        ("--algos", args.algos, {e.algo for e in RUNS}),
        ("--envs", args.envs, {e.env_id for e in RUNS}),
    ):
        unknown = [name for name in wanted.split(",") if name and name not in known] if wanted else []
        if unknown:
            parser.error(f"{flag}: unknown {unknown}; known: {sorted(known)}")
    runs = [
        e
        for e in RUNS
        if (not args.algos or e.algo in args.algos.split(","))
        and (not args.envs or e.env_id in args.envs.split(","))
    ]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(e, seed) for e in runs for seed in seeds]
    json_path = results / f"{args.out}.json"
    rows: list[dict[str, Any]] = []
    if args.append and json_path.exists():
        planned = {(e.env_id, e.algo, seed) for e, seed in jobs}
        old = json.loads(json_path.read_text())["runs"]  # each run keeps its own hyperparams/code version
        rows = [r for r in old if (r["env_id"], r["algo"], r["seed"]) not in planned]

    def done(row: dict[str, Any]) -> None:
        rows.append(row)
        print(
            f"{row['env_id']} {row['algo']} seed {row['seed']}: final {row['final_return']:.1f} "
            f"best {row['best_return']:.1f} shifted {row['shifted_return']} "
            f"first@500 {row['first_step_at_500']} ({row['train_seconds']:.0f}s)",
            flush=True,
        )
        save(rows, args, results, partial=True)

    run_jobs(
        run_one,
        [(e, seed, args.steps, args.eval_every, args.eval_episodes) for e, seed in jobs],
        workers=args.workers,
        on_result=done,
    )
    save(rows, args, results)
    print(f"wrote {json_path}, {args.out}.md, {args.out}_curves.png")


if __name__ == "__main__":
    main()
