"""Soak test: a long mixed run (training, evaluation, sweeps, save/load cycles) must not leak.

Each cycle trains a small BayesDQN, saves and reloads it (full training state), resumes training,
evaluates it at two risk_tolerance values and runs a one-seed in-process sweep. After warm-up
cycles, resident memory (RSS), live torch modules/agents/envs and open file descriptors must stay flat.

Usage:  python experiments/soak.py [--cycles 30] [--minutes 10]
Writes: experiments/results/soak.{md,json}
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from riskrl import evaluate
from riskrl.agents import BayesDQN, load_agent
from riskrl.sweep import SweepConfig, sweep

RESULTS = Path(__file__).parent / "results"


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def live_objects() -> int:
    """Live torch modules, agents and envs (gc-tracked Python objects that own tensors; plain tensors
    are not tracked by the garbage collector, so they are counted through their owners)."""
    from riskrl.agents import Agent
    from riskrl.envs import TorchVectorEnv

    kinds = (torch.nn.Module, Agent, TorchVectorEnv, torch.optim.Optimizer)
    return sum(1 for o in gc.get_objects() if isinstance(o, kinds))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def cycle(i: int, workdir: Path) -> None:
    agent = BayesDQN("CartPole-v1", seed=i, learning_starts=200)
    agent.learn(1_000, log_dir=workdir / "logs")
    path = agent.save(workdir / "agent.riskrl")
    agent = load_agent(path)
    agent.learn_until(1_500)
    for k in (0.0, 1.0):
        agent.risk_tolerance = k
        evaluate(agent, "CartPole-v1", n_episodes=20, seed=i)
    sweep(SweepConfig(seeds=(i,), risk_tolerances=(0.0, 1.0), total_timesteps=500, n_eval_episodes=10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=15.0, help="stop early after this long")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    samples = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.cycles):
            cycle(i, Path(tmp))
            gc.collect()
            samples.append(
                {
                    "cycle": i,
                    "rss_mib": rss_mib(),
                    "objects": live_objects(),
                    "fds": open_fds(),
                    "seconds": time.perf_counter() - start,
                }
            )
            print(samples[-1], flush=True)
            if time.perf_counter() - start > args.minutes * 60:
                break
    after = samples[min(args.warmup, len(samples) - 1) :]
    growth = after[-1]["rss_mib"] - after[0]["rss_mib"]
    per_cycle = growth / max(1, len(after) - 1)
    object_growth = after[-1]["objects"] - after[0]["objects"]
    fd_growth = after[-1]["fds"] - after[0]["fds"]
    verdict = "flat" if per_cycle < 1.0 and object_growth <= 0 and fd_growth <= 0 else "GROWING"
    summary = {
        "cycles": len(samples),
        "warmup": args.warmup,
        "rss_growth_mib": growth,
        "rss_growth_per_cycle_mib": per_cycle,
        "object_growth": object_growth,
        "fd_growth": fd_growth,
        "verdict": verdict,
        "samples": samples,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(summary, indent=1))
    lines = [
        "# Soak test",
        "",
        f"{len(samples)} cycles of train -> save -> load -> resume -> evaluate -> sweep "
        f"({samples[-1]['seconds'] / 60:.1f} minutes, one process, 1 torch thread).",
        "",
        f"After {args.warmup} warm-up cycles: RSS {after[0]['rss_mib']:.1f} -> {after[-1]['rss_mib']:.1f} MiB "
        f"({per_cycle:+.2f} MiB/cycle), live modules/agents/envs/optimizers {object_growth:+d}, open fds {fd_growth:+d}. Verdict: **{verdict}**.",
        "",
        "| cycle | RSS (MiB) | live modules/agents/envs/optimizers | open fds |",
        "|---:|---:|---:|---:|",
        *[f"| {s['cycle']} | {s['rss_mib']:.1f} | {s['objects']} | {s['fds']} |" for s in samples],
    ]
    (args.out / "soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:5]))


if __name__ == "__main__":
    main()
