"""Deep exploration on bsuite's deep_sea, scored by bsuite's own analysis code.

Every run trains :class:`riskrl.agents.BayesDQN` on bsuite's *own* environment through
:class:`riskrl.bsuite.BsuiteEnv` (one env, bsuite's episode protocol) and logs with bsuite's own CSV
logger. Three exploration schemes are compared on the same network (an ensemble of Q-nets with
randomized priors):

* ``thompson``: Thompson sampling (one ensemble member per episode, Bootstrapped DQN);
* ``ucb``: optimism, acting on ``mean - train_risk_tolerance * std`` with ``train_risk_tolerance=-1``;
* ``eps_greedy``: risk-neutral (``mean`` only) with epsilon-greedy dithering (epsilon 0.05, as bsuite's
  DQN baseline).

A run stops when bsuite's deep_sea criterion is met at one of the episodes bsuite's logger writes
(cumulative fraction of bad episodes below 0.9, ``bsuite.experiments.deep_sea.analysis.find_solution``),
or at its episode cap, or at its wall-clock cap; the caps are recorded, and a capped run is unsolved and
unfinished for bsuite's analysis too. bsuite's score (``analysis.score``: solved before ``2**N + 100``
episodes) is computed by bsuite's own code in a separate interpreter (``--score-python``, a venv with
bsuite 0.3.6 and pandas < 2: bsuite's ``find_solution`` uses ``Series.append``, removed in pandas 2), and
by riskrl's re-implementation of the same criterion (exact per-episode counts, and at bsuite's logged
episodes) so the two can be compared.

Usage::

    python experiments/bench_bsuite.py --ids deep_sea/0,deep_sea/2,deep_sea/5 --seeds 0,1 \
        --agents thompson,ucb,eps_greedy --max-episodes eps_greedy=500 --run-seconds 900 \
        --budget-minutes 45 --score-python /work/venvs/bsuite-analysis/bin/python --out bsuite_deep_sea
    python experiments/bench_bsuite.py --rescore experiments/results/bsuite_deep_sea.json \
        --score-python /work/venvs/bsuite-analysis/bin/python
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from riskrl.agents import BayesDQN
from riskrl.bsuite import BsuiteEnv
from riskrl.results import write_results

RESULTS = Path(__file__).parent / "results"

#: the network and learning settings shared by every scheme (bsuite's boot_dqn: 50-50 MLP, ensemble
#: with randomized priors, Adam 1e-3, discount 0.99, hard target update every 4 steps, 128 warm-up)
BASE: dict[str, Any] = {
    "hidden": (50, 50),
    "n_members": 10,
    "prior_scale": 3.0,
    "learning_rate": 1e-3,
    "gamma": 0.99,
    "batch_size": 64,
    "buffer_size": 50_000,
    "learning_starts": 128,
    "tau": 1.0,
    "target_update_interval": 4,
    "utd_ratio": 0.25,
}
SCHEMES: dict[str, dict[str, Any]] = {
    "thompson": {"exploration": "thompson", "thompson_resample": "episode"},
    "ucb": {"exploration": "ucb", "train_risk_tolerance": -1.0},
    "eps_greedy": {
        "exploration": "ucb",
        "train_risk_tolerance": 0.0,
        "epsilon_start": 0.05,
        "epsilon_end": 0.05,
    },
}
#: bsuite's find_solution criteria: (threshold on the cumulative bad-episode fraction, first episode
#: considered); deep_sea_stochastic is stricter so that luck with the env's noise does not count
CRITERIA = {"deep_sea": (0.9, 1), "deep_sea_stochastic": (0.8, 100)}
#: bsuite's published baselines on deep_sea (Osband et al. 2020, "Behaviour Suite for RL"), as issue #15
#: summarises them; quoted, not rerun here
REFERENCE = {
    "boot_dqn": "(20 members, randomized priors, 50-50 MLP) solves every size N = 10..50 within 10k episodes",
    "dqn": "(epsilon-greedy) solves none",
}


def bsuite_logs(episode: int) -> bool:
    """bsuite's ``_logarithmic_logging``: the episodes at which its CSV logger writes a row."""
    if episode < 1:
        return False
    exponent = math.floor(math.log10(episode))
    return any(
        episode == 10**exponent * r
        for r in (1.0, 1.2, 1.4, 1.7, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0)
    )


class DeepSeaTracker(BaseCallback):
    """Counts episodes and bad episodes from bsuite's env; stops when bsuite would call it solved."""

    def __init__(self, env: BsuiteEnv, max_episodes: int, deadline: float) -> None:
        super().__init__()
        self.env, self.max_episodes, self.deadline = env, max_episodes, deadline
        self.thresh, self.min_episode = CRITERIA[env.bsuite_id.split("/")[0]]
        self.solved_exact: int | None = None  # first episode with cumulative bad fraction < thresh
        self.solved_logged: int | None = None  # ... among the episodes bsuite's logger writes
        self.episodes = 0
        self.stop_reason = "running"
        self.first_treasure: int | None = None

    def _on_step(self) -> bool:
        episode = int(self.env.bsuite_env._episode)  # bsuite's Logging wrapper's episode count
        if episode == self.episodes:
            return True
        self.episodes = episode
        info = self.env.raw_env.bsuite_info()
        bad = int(info["total_bad_episodes"])
        if self.first_treasure is None and float(info["denoised_return"]) > 0:
            self.first_treasure = episode
        ok = episode >= self.min_episode and bad / episode < self.thresh
        if self.solved_exact is None and ok:
            self.solved_exact = episode
        if self.solved_logged is None and bsuite_logs(episode) and ok:
            self.solved_logged = episode
            self.stop_reason = "solved"
            return False
        if episode >= self.max_episodes:
            self.stop_reason = "episode cap"
            return False
        if time.time() > self.deadline:
            self.stop_reason = "time cap"
            return False
        return True


def run_one(
    scheme: str, bsuite_id: str, seed: int, csv_dir: Path, max_episodes: int, run_seconds: float
) -> dict[str, Any]:
    """Train one agent on one bsuite id through the bridge; returns the run's record."""
    env = BsuiteEnv(bsuite_id, results_dir=csv_dir, overwrite=True)
    env.reset(seed=seed)
    size = int(env.raw_env._size)
    cfg = {**BASE, **SCHEMES[scheme]}
    agent = BayesDQN(env, seed=seed, **cfg)
    tracker = DeepSeaTracker(env, max_episodes, time.time() + run_seconds)
    start, cpu0 = time.time(), time.process_time()
    # episodes last `size` steps, plus one autoreset step each in the one-env adapter
    agent.learn(max_episodes * (size + 1) + cfg["learning_starts"] + 10, callback=tracker)
    env.close()
    return {
        "scheme": scheme,
        "experiment": bsuite_id.split("/")[0],
        "bsuite_id": bsuite_id,
        "size": size,
        "seed": seed,
        "episodes": tracker.episodes,
        "env_steps": int(agent.num_timesteps),
        "first_treasure_episode": tracker.first_treasure,
        "solved_episode_exact": tracker.solved_exact,
        "solved_episode_bsuite_logged": tracker.solved_logged,
        "stop_reason": tracker.stop_reason,
        "max_episodes": max_episodes,
        "wall_s": round(time.time() - start, 1),
        "cpu_s": round(time.process_time() - cpu0, 1),
        "csv_dir": str(csv_dir.relative_to(RESULTS) if csv_dir.is_relative_to(RESULTS) else csv_dir),
    }


# Runs inside the analysis interpreter (bsuite 0.3.6 + pandas < 2): bsuite's loader and deep_sea analysis.
_SCORE_CODE = r"""
import importlib, json, sys
from bsuite.logging import csv_load
from bsuite.experiments.deep_sea import analysis
dirs = json.loads(sys.argv[1]); plot_path = sys.argv[2]
df, sweep_vars = csv_load.load_bsuite(dirs)
out = {"pandas": __import__("pandas").__version__, "bsuite": __import__("bsuite").__version__, "agents": {}}
for (name, exp), sub in df.groupby(["agent_name", "bsuite_env"]):
    mod = importlib.import_module(f"bsuite.experiments.{exp}.analysis")
    try:
        sol = mod.find_solution(sub)
    except ValueError as err:  # bsuite's find_solution raises when no size of the group is solved
        out["agents"][f"{name}|{exp}"] = {"score": None, "error": repr(err)}
        continue
    out["agents"][f"{name}|{exp}"] = {
        "score": float(mod.score(sub)),
        "sizes": {str(int(r["size"])): {"episode": int(r["episode"]), "solved": bool(r["solved"]),
                  "finished": bool(r["finished"])} for _, r in sol.iterrows()},
    }
if plot_path:
    try:
        ds = df[df.bsuite_env == "deep_sea"]
        plt_df = analysis.find_solution(ds, sweep_vars)
        analysis.plot_scaling(plt_df, sweep_vars, num_episodes=10000).save(plot_path, width=10, height=6, verbose=False)
        out["plot"] = plot_path
    except Exception as err:
        out["plot_error"] = repr(err)
print("BSUITE_SCORE_JSON" + json.dumps(out))
"""


def bsuite_score(python: str, dirs: dict[str, str], plot_path: str) -> dict[str, Any]:
    """bsuite's own deep_sea analysis on the runs' CSV folders (agent name -> folder), in ``python``."""
    proc = subprocess.run(
        [python, "-c", _SCORE_CODE, json.dumps(dirs), plot_path], capture_output=True, text=True, timeout=600
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BSUITE_SCORE_JSON"):
            return json.loads(line[len("BSUITE_SCORE_JSON") :])
    return {"error": (proc.stderr or proc.stdout)[-2000:]}


def our_score(runs: list[dict[str, Any]], logged: bool) -> float:
    """bsuite's deep_sea score recomputed: fraction of runs solved before ``2**N + 100`` episodes."""
    key = "solved_episode_bsuite_logged" if logged else "solved_episode_exact"
    ok = [r[key] is not None and r[key] < 2 ** r["size"] + 100 for r in runs]
    return float(np.mean(ok)) if ok else float("nan")


def _scores(runs: list[dict[str, Any]], logged: bool) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in runs:
        out.setdefault(r["experiment"], {})[r["scheme"]] = 0.0
    for exp, per in out.items():
        for s in per:
            per[s] = our_score([r for r in runs if r["experiment"] == exp and r["scheme"] == s], logged)
    return out


def growth(runs: list[dict[str, Any]], experiment: str, scheme: str) -> dict[str, Any] | None:
    """Fit of the mean episodes-to-solve (bsuite-logged) against N over the sizes where every seed solved:
    the exponent ``b`` of ``episodes ~ N**b`` and the base ``c`` of ``episodes ~ c**N`` (dithering: 2)."""
    points = []
    for n in sorted({r["size"] for r in runs if r["experiment"] == experiment and r["scheme"] == scheme}):
        rs = [r for r in runs if r["experiment"] == experiment and r["scheme"] == scheme and r["size"] == n]
        if rs and all(r["solved_episode_bsuite_logged"] is not None for r in rs):
            points.append((n, float(np.mean([r["solved_episode_bsuite_logged"] for r in rs]))))
    if len(points) < 2:
        return None
    n, ep = np.array(points).T
    power = float(np.polyfit(np.log(n), np.log(ep), 1)[0])
    base = float(np.exp(np.polyfit(n, np.log(ep), 1)[0]))
    return {"sizes": n.astype(int).tolist(), "mean_episodes": ep.tolist(), "power": power, "base": base}


def summarise(runs: list[dict[str, Any]], bsuite_result: dict[str, Any] | None, config: dict) -> str:
    """The markdown report: episodes to solve per size and seed, scores, budget and what was not run."""
    schemes = [s for s in SCHEMES if any(r["scheme"] == s for r in runs)]
    cpu_min = sum(r["cpu_s"] for r in runs) / 60
    wall_min = sum(r["wall_s"] for r in runs) / 60
    lines = [
        "# bsuite deep_sea: exploration schemes of BayesDQN, scored by bsuite",
        "",
        f"Budget: runs started during the first {config['budget_minutes']:g} wall-clock minutes, one process, one "
        f"torch thread, on a 2-core CPU shared with other jobs (load average 5-10); the runs took "
        f"{wall_min:.1f} wall-clock minutes and {cpu_min:.1f} CPU minutes. Episode caps per run: "
        f"{config['max_episodes']}; wall-clock cap per run {config['run_seconds']:g} s. bsuite's own protocol "
        "runs 10,000 episodes per size: a capped run counts as unsolved (and unfinished) here.",
        "",
        "Episodes to solve per seed: bsuite's criterion (deep_sea: first *logged* episode with a cumulative "
        "bad-episode fraction < 0.9; deep_sea_stochastic: < 0.8 and at least 100 episodes), in brackets the "
        "exact first such episode; `-` = not solved, in brackets the episodes run and why the run stopped.",
        "",
    ]
    for exp in sorted({r["experiment"] for r in runs}):
        lines += [f"**{exp}**", "", "| N | " + " | ".join(schemes) + " |", "|---:|" + "---|" * len(schemes)]
        for n in sorted({r["size"] for r in runs if r["experiment"] == exp}):
            cells = []
            for s in schemes:
                rs = sorted(
                    (r for r in runs if r["experiment"] == exp and r["size"] == n and r["scheme"] == s),
                    key=lambda r: r["seed"],
                )
                cells.append(
                    ", ".join(
                        f"{r['solved_episode_bsuite_logged']} ({r['solved_episode_exact']})"
                        if r["solved_episode_bsuite_logged"] is not None
                        else f"- ({r['episodes']}, {r['stop_reason']})"
                        for r in rs
                    )
                    or "not run"
                )
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "Score over the sizes run (bsuite's: fraction of sizes solved before 2^N + 100 episodes; here per "
        "(size, seed) run, mean over seeds):",
        "",
        "| experiment | scheme | riskrl's recount (bsuite-logged episodes) | bsuite's `analysis.score` |",
        "|---|---|---:|---:|",
    ]
    ours = _scores(runs, True)
    for exp, per in sorted(ours.items()):
        for s, value in per.items():
            theirs = "n/a"
            if bsuite_result and "agents" in bsuite_result:
                got = [
                    v
                    for k, v in bsuite_result["agents"].items()
                    if k.split("/")[0] == s and k.split("|")[-1] == exp
                ]
                vals = [v["score"] for v in got if v["score"] is not None]
                raised = len(got) - len(vals)
                theirs = f"{np.mean(vals):.2f} ({len(vals)} seeds)" if vals else "n/a"
                if raised:
                    theirs += f"; raised on {raised} seed(s) with no size solved (score 0 by definition)"
            lines.append(f"| {exp} | {s} | {value:.2f} | {theirs} |")
    fits = []
    for exp in sorted({r["experiment"] for r in runs}):
        for s in schemes:
            g = growth(runs, exp, s)
            if g is not None:
                fits.append(
                    f"| {exp} | {s} | {', '.join(map(str, g['sizes']))} | {g['power']:.1f} | {g['base']:.2f} |"
                )
    if fits:
        lines += [
            "",
            "Growth of the mean episodes-to-solve with N, over the sizes where every seed solved (few sizes: "
            "a rough fit; dithering needs ~2^N episodes):",
            "",
            "| experiment | scheme | sizes | episodes ~ N^b: b | episodes ~ c^N: c |",
            "|---|---|---|---:|---:|",
            *fits,
        ]
    if bsuite_result and "error" in bsuite_result:
        lines += ["", f"bsuite's analysis failed: `{bsuite_result['error'][-300:]}`"]
    elif bsuite_result:
        lines += [
            "",
            f"bsuite's analysis ran with bsuite {bsuite_result.get('bsuite')}, pandas {bsuite_result.get('pandas')} "
            "(its own loader `csv_load.load_bsuite` on the CSVs its logger wrote).",
        ]
    else:
        lines += ["", "bsuite's analysis was not run (no --score-python)."]
    skipped = config.get("skipped_for_budget") or []
    lines += [
        "",
        f"Reference (bsuite's published baselines, quoted, not rerun): boot_dqn {REFERENCE['boot_dqn']}; "
        f"dqn {REFERENCE['dqn']}.",
        "",
        f"Not run: {config.get('not_run', '')}"
        + (f"; skipped for the budget: {', '.join(skipped)}" if skipped else "")
        + ".",
    ]
    return "\n".join(lines)


def _csv_dir(recorded: str) -> Path:
    """A run's CSV folder: relative to ``experiments/results``, or as recorded; a run made in another
    checkout (e.g. a git worktree) is found by its folder names under ``experiments/results``."""
    path = Path(recorded)
    if not path.is_absolute():
        return RESULTS / path
    if path.exists():
        return path
    return RESULTS / path.parent.name / path.name


def parse_caps(text: str, default: int) -> dict[str, int]:
    caps = dict.fromkeys(SCHEMES, default)
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in SCHEMES or not value.isdigit():
            raise SystemExit(
                f"--max-episodes: expected scheme=N with a scheme in {list(SCHEMES)}, got {item!r}"
            )
        caps[name] = int(value)
    return caps


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ids", default="deep_sea/0,deep_sea/2,deep_sea/5")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--agents", default="thompson,ucb,eps_greedy")
    p.add_argument("--max-episodes", default="", help="per-scheme caps, e.g. eps_greedy=500 (default 10000)")
    p.add_argument("--run-seconds", type=float, default=900.0, help="wall-clock cap per run")
    p.add_argument("--budget-minutes", type=float, default=45.0, help="no new run starts after this")
    p.add_argument(
        "--score-python", default="", help="python of a venv with bsuite + pandas<2 for bsuite's analysis"
    )
    p.add_argument("--not-run", default="cartpole_swingup (1000 episodes x 1000 steps per size); N > 20")
    p.add_argument("--out", default="bsuite_deep_sea")
    p.add_argument("--rescore", default="", help="rescore the runs of an existing results JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    if args.rescore:
        saved = json.loads(Path(args.rescore).read_text())
        config, runs = saved["config"], saved["runs"]
        run_provenance = saved.get("run_provenance", saved.get("provenance"))
        for r in runs:
            r.setdefault("experiment", r["bsuite_id"].split("/")[0])
    else:
        config = {
            "ids": args.ids.split(","),
            "seeds": [int(s) for s in args.seeds.split(",")],
            "agents": args.agents.split(","),
            "base": BASE,
            "schemes": {s: SCHEMES[s] for s in args.agents.split(",")},
            "max_episodes": parse_caps(args.max_episodes, 10_000),
            "run_seconds": args.run_seconds,
            "budget_minutes": args.budget_minutes,
            "not_run": args.not_run,
            "torch_threads": 1,
        }
        for s in config["agents"]:
            if s not in SCHEMES:
                raise SystemExit(f"--agents: unknown scheme {s!r}; choose from {list(SCHEMES)}")
        runs, skipped = [], []
        t_end = time.time() + 60 * args.budget_minutes
        csv_root = RESULTS / f"{args.out}_csv"
        for bsuite_id in config["ids"]:
            for seed in config["seeds"]:
                for scheme in config["agents"]:
                    if time.time() > t_end:
                        skipped.append(f"{scheme}/{bsuite_id}/seed{seed}")
                        continue
                    rec = run_one(
                        scheme,
                        bsuite_id,
                        seed,
                        csv_root / f"{scheme}-seed{seed}",
                        config["max_episodes"][scheme],
                        args.run_seconds,
                    )
                    runs.append(rec)
                    print(json.dumps(rec), flush=True)
        config["skipped_for_budget"] = skipped
        run_provenance = None  # this process made the runs: its own provenance is written below
    bsuite_result = None
    dirs = {f"{r['scheme']}/seed{r['seed']}": str(_csv_dir(r["csv_dir"])) for r in runs}
    plot = str(RESULTS / f"{args.out}_scaling.png")
    if args.score_python:
        bsuite_result = bsuite_score(args.score_python, dirs, plot)
    results = {
        "runs": runs,
        "bsuite_analysis": bsuite_result,
        "score_recount_logged": _scores(runs, True),
        "score_recount_exact": _scores(runs, False),
        "growth": {
            f"{e}/{s}": growth(runs, e, s) for e in sorted({r["experiment"] for r in runs}) for s in SCHEMES
        },
        "reference": REFERENCE,
    }
    if run_provenance is not None:
        results["run_provenance"] = run_provenance  # the process that trained (this one only rescored)
    md = summarise(runs, bsuite_result, config)
    paths = write_results(RESULTS, args.out, results, config=config, markdown=md)
    print(md)
    print("wrote", ", ".join(str(v) for v in paths.values()))


if __name__ == "__main__":
    main()
