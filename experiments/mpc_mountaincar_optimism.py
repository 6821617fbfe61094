"""BayesMPC with optimism (risk_tolerance < 0) plus an ensemble-disagreement bonus on MountainCarContinuous-v0.

Claim under test: with a negative ``risk_tolerance`` and ``disagreement_weight`` w > 0 (plan score
``mean - k * (std_return + w * D)``), BayesMPC reaches the goal during training and its final agent
scores >= 90 in evaluation, where SB3-SAC (zoo hyperparameters) at the same 5k budget never reaches
the goal (``bench_agents_mpc.md``).

One process per run (one torch thread each, so two runs can share a 2-core machine):

    python experiments/mpc_mountaincar_optimism.py run --seed 0 --steps 3000 --k -5 --w 1 --out /tmp/mcc/s0.json
    python experiments/mpc_mountaincar_optimism.py run --seed 1 --steps 3000 --k -5 --w 1 --out /tmp/mcc/s1.json
    python experiments/mpc_mountaincar_optimism.py merge /tmp/mcc/*.json

``run`` trains in chunks of ``--chunk`` steps, counting goal hits (transitions with the +100 goal
reward) per chunk from the replay buffer, then evaluates the final agent with
``riskrl.evaluate(agent, env, n_episodes=5, seed=10000 + seed)`` (all episodes batched) at
risk_tolerance 0 (exploitation) and at the training value. ``merge`` writes
``results/mpc_mountaincar_optimism.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ENV = "MountainCarContinuous-v0"
RESULTS = Path(__file__).parent / "results"
# The quick check's planner: H=30, C=150, 3 CEM iterations, 5 particles (one table for both scripts).
from bench_agents_mpc import MCC_MPC  # noqa: E402  (experiments/ is on sys.path when run as a script)

TARGET = 90.0


def run(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    import riskrl
    from riskrl.agents import BayesMPC

    cfg = {**MCC_MPC, "disagreement_weight": args.w, "terminal_value": args.terminal_value}
    agent = BayesMPC(ENV, risk_tolerance=args.k, seed=args.seed, **cfg)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rec: dict[str, Any] = {
        "env": ENV,
        "seed": args.seed,
        "risk_tolerance_train": args.k,
        "disagreement_weight": args.w,
        "terminal_value": args.terminal_value,
        "steps": args.steps,
        "config": cfg,
        "chunks": [],
        "eval": {},
    }
    t0 = time.time()
    seen = 0
    done_steps = 0
    while done_steps < args.steps:
        done_steps = min(done_steps + args.chunk, args.steps)
        agent.learn_until(done_steps)
        data = agent.buffer.all()
        rew = data["rewards"]
        new = rew[seen:]
        seen = rew.shape[0]
        x = data["next_obs"][:, 0]
        rec["chunks"].append(
            {
                "end_step": done_steps,
                "goal_hits": int((new > 50).sum()),
                "reward_sum": float(new.sum()),
                "max_position": float(x[-new.shape[0] :].max()) if new.shape[0] else float("nan"),
                "wall_s": round(time.time() - t0, 1),
            }
        )
        rec["train_goal_hits"] = sum(c["goal_hits"] for c in rec["chunks"])
        rec["train_s"] = round(time.time() - t0, 1)
        out.write_text(json.dumps(rec, indent=1))
        print(json.dumps(rec["chunks"][-1]), flush=True)
    for k in dict.fromkeys([0.0, args.k]):
        agent.risk_tolerance = k
        t1 = time.time()
        res = riskrl.evaluate(agent, ENV, n_episodes=args.eval_episodes, seed=10_000 + args.seed)
        rec["eval"][f"{k:g}"] = {
            "mean": res.mean,
            "returns": [float(r) for r in res.returns],
            "lengths": [int(n) for n in res.lengths],
            "wall_s": round(time.time() - t1, 1),
        }
        out.write_text(json.dumps(rec, indent=1))
        print(f"eval k={k:g}: {res.mean:.1f} {rec['eval'][f'{k:g}']}", flush=True)


def merge(paths: list[str], notes: str) -> None:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    runs.sort(
        key=lambda r: (
            r.get("terminal_value", False),
            r["risk_tolerance_train"],
            r["disagreement_weight"],
            r["seed"],
        )
    )
    (RESULTS / "mpc_mountaincar_optimism.json").write_text(json.dumps({"runs": runs}, indent=1))
    lines = [
        "# BayesMPC optimism on MountainCarContinuous-v0",
        "",
        f"Planner {MCC_MPC} (the quick check's). Evaluation: `riskrl.evaluate(agent, '{ENV}', "
        "n_episodes=N, seed=10000 + seed)`, N episodes batched (N = the number of returns listed), final "
        "agent. V = the learnt terminal value (`terminal_value=True`). Goal hits = training "
        "transitions with the +100 goal reward. One torch thread per run, two runs at once on a shared, "
        "loaded 2-core CPU (wall-clock only roughly comparable).",
        "",
        "| train k | w | V | seed | steps | train goal hits (per chunk) | eval k=0 mean (returns) | eval k=train mean (returns) | train s | eval s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        per = " / ".join(str(c["goal_hits"]) for c in r["chunks"])
        ev = r["eval"]

        def cell(key: str, ev: dict[str, Any] = ev) -> str:
            if key not in ev:
                return "not run"
            e = ev[key]
            return f"{e['mean']:.1f} ({', '.join(f'{x:.0f}' for x in e['returns'])})"

        k = f"{r['risk_tolerance_train']:g}"
        eval_s = " + ".join(str(e["wall_s"]) for e in ev.values()) or "-"
        steps_done = r["chunks"][-1]["end_step"] if r["chunks"] else 0
        lines.append(
            f"| {k} | {r['disagreement_weight']:g} | {'yes' if r.get('terminal_value') else 'no'} | "
            f"{r['seed']} | {steps_done} | "
            f"{r.get('train_goal_hits', 0)} ({per}) | {cell('0')} | {cell(k) if k != '0' else 'same'} | "
            f"{r.get('train_s', '-')} | {eval_s} |"
        )
    lines += ["", "## Reading", "", notes, ""]
    (RESULTS / "mpc_mountaincar_optimism.md").write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--steps", type=int, default=3000)
    r.add_argument("--chunk", type=int, default=500)
    r.add_argument("--k", type=float, default=-5.0)
    r.add_argument("--w", type=float, default=1.0)
    r.add_argument("--eval-episodes", type=int, default=5)
    r.add_argument("--terminal-value", action="store_true", help="BayesMPC(terminal_value=True)")
    r.add_argument("--out", required=True)
    m = sub.add_parser("merge")
    m.add_argument("paths", nargs="+")
    m.add_argument("--notes", default="")
    args = p.parse_args()
    if args.cmd == "run":
        run(args)
    else:
        merge(args.paths, args.notes)


if __name__ == "__main__":
    sys.exit(main())
