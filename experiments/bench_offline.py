"""Offline benchmark: riskrl agents over risk_tolerance vs d3rlpy, on the very same datasets.

For every (env, kind, size) the dataset is built deterministically by ``make_datasets.build``.
Per seed a riskrl agent is trained once with ``learn_offline`` (BayesDQN for discrete actions,
BayesMPC for continuous), then evaluated at every ``risk_tolerance`` (the knob needs no retraining)
with ``riskrl.evaluate`` on the nominal env. d3rlpy algorithms are trained on the same arrays in
d3rlpy's own venv (``experiments/d3rlpy_worker.py``, ``--d3rlpy-python``) at its defaults, with the
same number of gradient steps, and their greedy policies are evaluated with the same
``riskrl.evaluate`` call (same env, seeds and episode count). Wall-clock is recorded for both.

Scores are also given normalised, ``(R - R_random) / (R_expert - R_random)``, with the random and
scripted-expert policies evaluated the same way.

The issue's targets are printed (met / not met); nothing is asserted. Example (the reduced grid
committed in experiments/results/offline.*)::

    python experiments/bench_offline.py --envs CartPole-v1,Pendulum-v1 --kinds random,medium \\
        --sizes 10000 --seeds 0,1,2 --d3rlpy-python /work/venvs/d3rlpy/bin/python

The issue's full grid is ``--envs CartPole-v1,Acrobot-v1,Pendulum-v1,MountainCarContinuous-v0 --kinds
random,medium,expert,replay --sizes 1000,10000,100000 --seeds 0,...,9 --risk-tolerances 0,0.5,1,2,4,8
--eval-episodes 100``; whatever a run leaves out of it is listed in its ``not_run``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import stats

import riskrl
from riskrl.agents import BayesDQN, BayesDQNConfig, BayesMPC, BayesMPCConfig
from riskrl.data import Dataset
from riskrl.results import write_figures, write_results

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_datasets import EXPERTS, build

HERE = Path(__file__).resolve().parent
#: riskrl agents' offline settings (the same for every dataset)
DQN_KWARGS = {"hidden": (64, 64), "batch_size": 128, "bootstrap_p": 0.5, "beta": 1.0}
MPC_KWARGS = {"horizon": 15, "population": 100, "cem_iterations": 3}
#: per-env additions: MountainCarContinuous's +100 goal lies ~100 steps beyond any affordable planning
#: horizon, so BayesMPC plans with its terminal value, learnt from the dataset (as the online benchmark
#: does: without it agents that found the goal stand still, bench_agents_mpc_mcc.md)
MPC_ENV_KWARGS: dict[str, dict[str, Any]] = {"MountainCarContinuous-v0": {"terminal_value": True}}
STEPS = {"BayesDQN": 2000, "BayesMPC": 1500}
D3RLPY_ALGOS = {"discrete": ["DiscreteCQL", "DiscreteBC"], "continuous": ["IQL", "TD3PlusBC", "BC"]}
EVAL_EPISODES = {"CartPole-v1": 20, "Acrobot-v1": 20, "Pendulum-v1": 3, "MountainCarContinuous-v0": 3}
EVAL_SEED = 100
#: the issue's full grid (what a run leaves out is reported as not run)
FULL_GRID = {
    "envs": ["CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCarContinuous-v0"],
    "kinds": ["random", "medium", "expert", "replay"],
    "sizes": [1000, 10_000, 100_000],
    "risk_tolerances": [0.0, 0.5, 1.0, 2.0, 4.0, 8.0],
}


def not_run(
    envs: list[str],
    kinds: list[str],
    sizes: list[int],
    risks: list[float],
    n_seeds: int,
    episodes: dict[str, int],
    continuous_algos: list[str],
) -> str:
    """What a run leaves out of the issue's full grid, in words."""
    missing = [
        ", ".join(map(str, [v for v in FULL_GRID[name] if v not in given]))
        for name, given in (("envs", envs), ("kinds", kinds), ("sizes", sizes), ("risk_tolerances", risks))
    ]
    parts = [f"{label} {m}" for label, m in zip(("envs", "kinds", "sizes", "risk_tolerance"), missing) if m]
    if n_seeds < 5:
        parts.append(f"5-10 seeds (ran {n_seeds})")
    if min(episodes.values()) < 100:
        parts.append(f"100 evaluation episodes (ran {episodes})")
    if any(e in envs for e in ("Pendulum-v1", "MountainCarContinuous-v0")) and "CQL" not in continuous_algos:
        parts.append("d3rlpy's CQL (continuous; about 0.27 s per gradient step on a loaded 2-core machine)")
    return "; ".join(parts) or "nothing"


def _export_npz(data: Dataset, path: Path) -> None:
    """The dataset's arrays in d3rlpy's layout (episode ends marked as terminals or timeouts)."""
    last = np.ones(len(data), dtype=bool)
    last[:-1] = (data.episode_ids[1:] != data.episode_ids[:-1]).numpy()
    term = data.terminations.numpy()
    discrete = data.actions.dim() == 1
    np.savez(
        path,
        observations=data.observations.numpy(),
        actions=data.actions.numpy(),
        rewards=data.rewards.numpy(),
        terminals=term.astype(np.float32),
        timeouts=(last & ~term).astype(np.float32),
        discrete=discrete,
        action_size=int(data.action_space.n) if discrete else int(data.actions.shape[1]),
        action_low=np.zeros(1) if discrete else data.action_space.low,
        action_high=np.zeros(1) if discrete else data.action_space.high,
    )


def _evaluate(policy: Any, env_id: str, episodes: int) -> dict[str, Any]:
    started = time.time()
    res = riskrl.evaluate(policy, env_id, episodes, seed=EVAL_SEED, bootstrap=False)
    return {
        "mean": res.mean,
        "iqm": res.iqm,
        "cvar": res.cvar,
        "returns": res.returns.tolist(),
        "eval_seconds": time.time() - started,
    }


def run_riskrl(
    data: Dataset,
    env_id: str,
    seed: int,
    risks: list[float],
    episodes: int,
    dqn_kwargs: dict | None = None,
    mpc_kwargs: dict | None = None,
    steps: dict[str, int] | None = None,
) -> list[dict]:
    discrete = data.actions.dim() == 1
    cls, kwargs = (
        (BayesDQN, dqn_kwargs or DQN_KWARGS)
        if discrete
        else (BayesMPC, {**(mpc_kwargs or MPC_KWARGS), **MPC_ENV_KWARGS.get(env_id, {})})
    )
    agent = cls(env_id, seed=seed, buffer_size=max(len(data), 1000), **kwargs)
    started = time.time()
    agent.learn_offline(data, (steps or STEPS)[cls.__name__])
    train_seconds = time.time() - started
    rows = []
    for rt in risks:
        agent.risk_tolerance = rt
        if not discrete:
            agent._eval_dist = None  # every evaluation plans from scratch
        rows.append(
            {"algo": cls.__name__, "risk_tolerance": rt, "train_seconds": train_seconds,
             **_evaluate(agent, env_id, episodes)}
        )  # fmt: skip
        print(f"  {cls.__name__} seed {seed} rt {rt}: {rows[-1]['mean']:.1f}", flush=True)
    return rows


def run_d3rlpy_job(python: str, npz: Path, algo: str, seed: int, steps: int, work: Path) -> dict:
    policy, result = work / f"{npz.stem}_{algo}_{seed}.pt", work / f"{npz.stem}_{algo}_{seed}.json"
    spec = {
        "npz": str(npz),
        "algo": algo,
        "seed": seed,
        "steps": steps,
        "policy": str(policy),
        "result": str(result),
    }
    proc = subprocess.run(
        [python, str(HERE / "d3rlpy_worker.py"), json.dumps(spec)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return {"policy": str(policy), **json.loads(result.read_text())}


def _paired_ci(diffs: np.ndarray) -> tuple[float, float]:
    if diffs.size < 2:
        return (math.nan, math.nan)
    half = stats.t.ppf(0.975, diffs.size - 1) * diffs.std(ddof=1) / math.sqrt(diffs.size)
    return (float(diffs.mean() - half), float(diffs.mean() + half))


def summarise(runs: list[dict], refs: dict, risks: list[float]) -> dict[str, Any]:
    """Per dataset: riskrl's mean over seeds per risk_tolerance, best rt > 0 vs 0 (paired CI),
    d3rlpy per algorithm; a default risk_tolerance per agent; the issue's targets."""
    datasets = sorted({(r["env"], r["kind"], r["size"]) for r in runs})
    table = {}
    for env, kind, size in datasets:
        rows = [r for r in runs if (r["env"], r["kind"], r["size"]) == (env, kind, size)]
        ours = [r for r in rows if r["algo"] in ("BayesDQN", "BayesMPC")]
        seeds = sorted({r["seed"] for r in ours})
        per_rt = {}
        for rt in risks:
            vals = np.array(
                [next(r["mean"] for r in ours if r["seed"] == s and r["risk_tolerance"] == rt) for s in seeds]
            )
            per_rt[rt] = vals
        best_rt = max((rt for rt in risks if rt > 0), key=lambda rt: per_rt[rt].mean())
        diffs = per_rt[best_rt] - per_rt[0.0]
        d3 = {}
        for algo in sorted({r["algo"] for r in rows} - {"BayesDQN", "BayesMPC"}):
            vals = np.array([r["mean"] for r in rows if r["algo"] == algo and "mean" in r])
            secs = [r["train_seconds"] for r in rows if r["algo"] == algo and "train_seconds" in r]
            if vals.size:
                d3[algo] = {"mean": float(vals.mean()), "sd": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
                            "per_seed": vals.tolist(), "train_seconds": float(np.mean(secs))}  # fmt: skip
        ref = refs[env]
        table[f"{env}/{kind}/{size}"] = {
            "env": env, "kind": kind, "size": size, "agent": ours[0]["algo"], "seeds": seeds,
            "riskrl": {str(rt): {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                                 "per_seed": v.tolist()} for rt, v in per_rt.items()},
            "best_positive_rt": best_rt,
            "best_minus_zero": {"mean": float(diffs.mean()), "ci95": _paired_ci(diffs)},
            "d3rlpy": d3,
            "riskrl_train_seconds": float(np.mean([r["train_seconds"] for r in ours])),
            "normalised": {str(rt): (float(v.mean()) - ref["random"]) / (ref["expert"] - ref["random"]) for rt, v in per_rt.items()},
        }  # fmt: skip
    # one default risk_tolerance per agent: the best mean normalised score over its datasets
    defaults = {}
    for agent in sorted({t["agent"] for t in table.values()}):
        mine = [t for t in table.values() if t["agent"] == agent]
        defaults[agent] = max(risks, key=lambda rt: np.mean([t["normalised"][str(rt)] for t in mine]))
    targets = []
    for key, t in table.items():
        lo = t["best_minus_zero"]["ci95"][0]
        if t["kind"] in ("random", "medium") and t["size"] <= 10_000:  # the datasets the target names
            targets.append({"target": "best rt > 0 beats rt 0 (paired 95% CI above 0)", "dataset": key,
                            "met": bool(lo > 0), "detail": f"rt {t['best_positive_rt']}: {t['best_minus_zero']['mean']:+.1f}, CI low {lo:+.1f}"})  # fmt: skip
        norm = t["normalised"]
        default = defaults[t["agent"]]
        gap = max(norm.values()) - norm[str(default)]
        targets.append({"target": "default rt within 10% (normalised) of the per-dataset best", "dataset": key,
                        "met": bool(gap <= 0.10), "detail": f"default {default}: gap {gap:.3f}"})  # fmt: skip
        if t["d3rlpy"]:
            best_algo = max(t["d3rlpy"], key=lambda a: t["d3rlpy"][a]["mean"])
            ours = t["riskrl"][str(default)]["mean"]
            theirs = t["d3rlpy"][best_algo]["mean"]
            targets.append({"target": "riskrl at its default >= d3rlpy's best (mean over seeds)", "dataset": key,
                            "met": bool(ours >= theirs), "detail": f"{ours:.1f} vs {best_algo} {theirs:.1f}"})  # fmt: skip
    return {"datasets": table, "default_risk_tolerance": defaults, "targets": targets}


def markdown(summary: dict, config: dict, risks: list[float]) -> str:
    lines = [
        "# Offline benchmark (experiments/bench_offline.py)",
        "",
        f"Grid: envs {config['envs']}, kinds {config['kinds']}, sizes {config['sizes']} transitions, "
        f"seeds {config['seeds']}, {config['eval_episodes']} evaluation episodes per point "
        f"(riskrl.evaluate, nominal dynamics, seed {EVAL_SEED}). riskrl: {config['riskrl']}. "
        f"d3rlpy {config['d3rlpy_algos']} at defaults, {config['steps']} gradient steps (same as riskrl). "
        "Mean ± SD over seeds.",
        "",
        "| dataset | agent | "
        + " | ".join(f"rt={rt:g}" for rt in risks)
        + " | best rt>0 − rt 0 (95% CI) | d3rlpy | train s (riskrl / d3rlpy) |",
        "|---|---|" + "---:|" * len(risks) + "---|---|---|",
    ]
    for key, t in summary["datasets"].items():
        cells = [f"{t['riskrl'][str(rt)]['mean']:.1f} ± {t['riskrl'][str(rt)]['sd']:.1f}" for rt in risks]
        ci = t["best_minus_zero"]["ci95"]
        d3 = "; ".join(f"{a} {v['mean']:.1f} ± {v['sd']:.1f}" for a, v in t["d3rlpy"].items()) or "not run"
        d3s = "/".join(f"{v['train_seconds']:.0f}" for v in t["d3rlpy"].values()) or "-"
        lines.append(
            f"| {key} | {t['agent']} | " + " | ".join(cells)
            + f" | rt {t['best_positive_rt']:g}: {t['best_minus_zero']['mean']:+.1f} [{ci[0]:+.1f}, {ci[1]:+.1f}] | {d3} | {t['riskrl_train_seconds']:.0f} / {d3s} |"
        )  # fmt: skip
    lines += [
        "",
        f"Default offline risk_tolerance per agent (best mean normalised score): {summary['default_risk_tolerance']}",
        "",
    ]
    lines += ["## The issue's targets", "", "| target | dataset | met | detail |", "|---|---|---|---|"]
    for t in summary["targets"]:
        lines.append(
            f"| {t['target']} | {t['dataset']} | {'met' if t['met'] else 'NOT met'} | {t['detail']} |"
        )
    lines += ["", "## Not run", "", config["not_run"]]
    return "\n".join(lines)


def figure(summary: dict, risks: list[float]) -> Any:
    items = list(summary["datasets"].items())
    fig, axes = plt.subplots(1, len(items), figsize=(4.2 * len(items), 3.4), squeeze=False)
    for ax, (key, t) in zip(axes[0], items):
        means = [t["riskrl"][str(rt)]["mean"] for rt in risks]
        sds = [t["riskrl"][str(rt)]["sd"] for rt in risks]
        ax.errorbar(risks, means, yerr=sds, marker="o", capsize=3, label=t["agent"])
        for i, (algo, v) in enumerate(t["d3rlpy"].items()):  # axhline keeps one colour unless told
            style = ("--", ":", "-.", (0, (5, 1)))[i % 4]
            ax.axhline(v["mean"], color=f"C{i + 1}", linestyle=style, linewidth=1.2, label=f"d3rlpy {algo}")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("risk_tolerance")
        ax.set_ylabel("return (mean ± SD over seeds)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", default="CartPole-v1,Pendulum-v1")
    parser.add_argument("--kinds", default="random,medium")
    parser.add_argument("--sizes", default="10000", help="comma-separated dataset sizes (transitions)")
    parser.add_argument(
        "--eval-episodes", type=int, default=0, help="evaluation episodes per point (default: per env)"
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--risk-tolerances", default="0,0.5,1,2,4")
    parser.add_argument(
        "--d3rlpy-python", default=None, help="python of a venv with d3rlpy 2.8.1 (else d3rlpy is skipped)"
    )
    parser.add_argument(
        "--dqn-cql-alpha",
        type=float,
        default=BayesDQNConfig.cql_alpha,
        help=f"BayesDQN's CQL penalty weight (default {BayesDQNConfig.cql_alpha:g}, the library's; 0: off)",
    )
    parser.add_argument(
        "--mpc-behavior-prior",
        choices=("on", "off"),
        default="on" if BayesMPCConfig.behavior_prior else "off",
        help="BayesMPC plans around the dataset's cloned policy (default: the library's)",
    )
    parser.add_argument(
        "--mpc-behavior-std-power",
        type=float,
        default=BayesMPCConfig.behavior_std_power,
        help="how much BayesMPC narrows a sure clone's spread (behavior_std_power; default "
        f"{BayesMPCConfig.behavior_std_power:g}, the library's)",
    )
    for agent, flag in (("BayesDQN", "--dqn-steps"), ("BayesMPC", "--mpc-steps")):
        parser.add_argument(
            flag,
            type=int,
            default=STEPS[agent],
            help=f"{agent}'s gradient steps, and d3rlpy's on the same datasets (default {STEPS[agent]})",
        )
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--stem", default="offline")
    parser.add_argument(
        "--replot",
        action="store_true",
        help="only redraw <stem>_risk.png from the committed <out>/<stem>.json (no training)",
    )
    args = parser.parse_args(argv)
    if args.replot:
        committed = json.loads((Path(args.out) / f"{args.stem}.json").read_text())
        risks = committed["config"]["risk_tolerances"]
        print("written", write_figures(args.out, args.stem, {"risk": figure(committed["summary"], risks)}))
        return
    # recorded even at the library default: results written before the default became 1.0 carry no
    # cql_alpha and ran without the penalty
    dqn_kwargs = {**DQN_KWARGS, "cql_alpha": args.dqn_cql_alpha}
    # likewise: results without behavior_prior ran without it, without behavior_std_power at 1
    mpc_kwargs = {
        **MPC_KWARGS,
        "behavior_prior": args.mpc_behavior_prior == "on",
        "behavior_std_power": args.mpc_behavior_std_power,
    }
    steps_by_agent = {"BayesDQN": args.dqn_steps, "BayesMPC": args.mpc_steps}
    if min(steps_by_agent.values()) < 1:
        raise SystemExit("--dqn-steps and --mpc-steps must be >= 1")
    torch.set_num_threads(1)
    envs, kinds = args.envs.split(","), args.kinds.split(",")
    sizes = [int(n) for n in args.sizes.split(",")]
    eval_episodes = {e: args.eval_episodes or EVAL_EPISODES[e] for e in envs}
    seeds = [int(s) for s in args.seeds.split(",")]
    risks = [float(r) for r in args.risk_tolerances.split(",")]
    if 0.0 not in risks:
        raise SystemExit("--risk-tolerances must include 0")
    work = Path(tempfile.mkdtemp(prefix="bench_offline_"))
    runs: list[dict] = []
    refs: dict[str, dict[str, float]] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)  # d3rlpy trains beside riskrl
    pending = []
    for env_id in envs:
        episodes = eval_episodes[env_id]
        space = riskrl.envs.make_vec(env_id).single_action_space
        rand = _evaluate(
            lambda o, s=space: torch.stack([torch.as_tensor(s.sample()) for _ in range(o.shape[0])]),
            env_id,
            episodes,
        )
        refs[env_id] = {
            "random": rand["mean"],
            "expert": _evaluate(EXPERTS[env_id], env_id, episodes)["mean"],
        }
        print(env_id, "references", refs[env_id], flush=True)
        for kind, size in ((k, n) for k in kinds for n in sizes):
            data = build(env_id, kind, size, seed=0)
            npz = work / f"{env_id}_{kind}_{size}.npz"
            _export_npz(data, npz)
            discrete = data.actions.dim() == 1
            steps = steps_by_agent["BayesDQN" if discrete else "BayesMPC"]
            if args.d3rlpy_python:
                for algo in D3RLPY_ALGOS["discrete" if discrete else "continuous"]:
                    for seed in seeds:
                        fut = pool.submit(run_d3rlpy_job, args.d3rlpy_python, npz, algo, seed, steps, work)
                        pending.append(
                            (
                                {"env": env_id, "kind": kind, "size": size, "seed": seed, "algo": algo},
                                fut,
                            )
                        )
            print(env_id, kind, data.summary(), flush=True)
            for seed in seeds:
                for row in run_riskrl(
                    data, env_id, seed, risks, episodes, dqn_kwargs, mpc_kwargs, steps_by_agent
                ):
                    runs.append({"env": env_id, "kind": kind, "size": size, "seed": seed, **row})
    for key, fut in pending:
        out = fut.result()
        if "error" in out:
            print("d3rlpy failed", key, out["error"][-300:], flush=True)
            runs.append({**key, "error": out["error"][-500:]})
            continue
        policy = torch.jit.load(out["policy"])
        act = lambda o, p=policy: p(o.float())  # noqa: E731
        res = _evaluate(act, key["env"], eval_episodes[key["env"]])
        runs.append({**key, "train_seconds": out["train_seconds"], **res})
        print("  d3rlpy", key, f"{res['mean']:.1f}", flush=True)
    pool.shutdown()
    summary = summarise(runs, refs, risks)
    config = {
        "envs": envs, "kinds": kinds, "sizes": sizes, "seeds": seeds, "risk_tolerances": risks,
        "eval_episodes": eval_episodes, "eval_seed": EVAL_SEED, "dataset_seed": 0,
        "riskrl": {"BayesDQN": dqn_kwargs, "BayesMPC": mpc_kwargs,
                   "BayesMPC_per_env": {e: MPC_ENV_KWARGS[e] for e in envs if e in MPC_ENV_KWARGS}},
        "steps": steps_by_agent,
        "d3rlpy_algos": D3RLPY_ALGOS if args.d3rlpy_python else {}, "d3rlpy_python": args.d3rlpy_python,
        "not_run": not_run(envs, kinds, sizes, risks, len(seeds), eval_episodes,
                           D3RLPY_ALGOS["continuous"] if args.d3rlpy_python else []),
    }  # fmt: skip
    for t in summary["targets"]:
        print(f"[{'met' if t['met'] else 'NOT met'}] {t['target']} - {t['dataset']}: {t['detail']}")
    write_results(
        args.out, args.stem, {"summary": summary, "references": refs, "runs": runs}, config=config,
        markdown=markdown(summary, config, risks), figures={"risk": figure(summary, risks)},
    )  # fmt: skip
    print("written", Path(args.out) / f"{args.stem}.json")


if __name__ == "__main__":
    main()
