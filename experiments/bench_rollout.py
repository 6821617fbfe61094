"""Rollout throughput of the torch-batched envs vs gymnasium references (random actions, steps/s).

Measures CartPole-v1 and Pendulum-v1 at num_envs in {1, 64, 4096, 65536} for riskrl's envs (eager and
``compile=True``, both with ``validate_actions=False``, the no-sync fast path) and, in the same run,
gymnasium's single env, ``SyncVectorEnv(16)`` and gymnasium's numpy ``CartPoleVectorEnv``. Prints ratios
and writes ``experiments/results/bench_rollout.{md,json}``.

Usage: ``python experiments/bench_rollout.py [--seconds 0.5] [--threads 1] [--no-compile]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

from riskrl.envs import make_vec

SIZES = (1, 64, 4096, 65536)
RESULTS = Path(__file__).resolve().parent / "results"


def _timeit(step, seconds: float) -> float:
    """Call ``step(i)`` repeatedly for ~``seconds``; return calls per second."""
    for i in range(3):
        step(i)
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(8):
            step(n)
            n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def bench_torch(env_id: str, n: int, seconds: float, compile: bool) -> float:
    env = make_vec(env_id, n, validate_actions=False, compile=compile)
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    if env_id.startswith("CartPole"):
        pool = torch.randint(0, 2, (16, n), generator=gen)
    else:
        pool = torch.rand(16, n, 1, generator=gen) * 4 - 2
    t0 = time.perf_counter()
    env.step(pool[0])  # compile / warm-up
    warm = time.perf_counter() - t0
    sps = _timeit(lambda i: env.step(pool[i % 16]), seconds) * n
    if compile:
        print(f"    (compile warm-up {warm:.1f}s)")
    return sps


def bench_gym_single(env_id: str, seconds: float) -> float:
    env = gym.make(env_id)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    pool = (
        [env.action_space.sample() for _ in range(64)]
        if env_id.startswith("Pendulum")
        else list(rng.integers(0, 2, 64))
    )

    def step(i):
        _, _, term, trunc, _ = env.step(pool[i % 64])
        if term or trunc:
            env.reset()

    return _timeit(step, seconds)


def bench_gym_sync(env_id: str, seconds: float, n: int = 16) -> float:
    env = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync")
    env.reset(seed=0)
    env.action_space.seed(0)
    pool = [env.action_space.sample() for _ in range(16)]
    return _timeit(lambda i: env.step(pool[i % 16]), seconds) * n


def bench_gym_numpy_cartpole(n: int, seconds: float) -> float:
    env = CartPoleVectorEnv(num_envs=n)
    env.reset(seed=0)
    pool = np.random.default_rng(0).integers(0, 2, (16, n))
    return _timeit(lambda i: env.step(pool[i % 16]), seconds) * n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=0.5, help="timing window per measurement")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    refs: dict[str, dict[str, float]] = {}
    t_start = time.time()
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        print(f"== {env_id}")
        single = bench_gym_single(env_id, args.seconds)
        sync = bench_gym_sync(env_id, args.seconds)
        refs[env_id] = {"gym_single": single, "gym_sync16": sync}
        print(f"  gymnasium single env      {single:14,.0f} steps/s")
        print(f"  gymnasium SyncVectorEnv16 {sync:14,.0f} steps/s")
        for n in SIZES:
            numpy_vec = bench_gym_numpy_cartpole(n, args.seconds) if env_id.startswith("CartPole") else None
            eager = bench_torch(env_id, n, args.seconds, compile=False)
            comp = None if args.no_compile else bench_torch(env_id, n, args.seconds, compile=True)
            best = max(eager, comp or 0.0)
            row = {
                "env": env_id,
                "num_envs": n,
                "riskrl_eager": eager,
                "riskrl_compiled": comp,
                "gym_numpy_vector": numpy_vec,
                "best_vs_numpy_vector": best / numpy_vec if numpy_vec else None,
                "best_vs_sync16": best / sync,
                "best_vs_single": best / single,
            }
            rows.append(row)
            msg = f"  N={n:6d} eager {eager:14,.0f}  compiled {comp or 0:14,.0f}"
            if numpy_vec:
                msg += f"  numpy-vec {numpy_vec:14,.0f}  best/numpy {best / numpy_vec:5.2f}x"
            msg += f"  best/sync16 {best / sync:8.1f}x"
            print(msg)
    meta = {
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads,
        "seconds_per_measurement": args.seconds,
        "wall_s": round(time.time() - t_start, 1),
        "note": "2-core CPU shared with other engineers' jobs; compare ratios measured in the same run.",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_rollout.json").write_text(
        json.dumps({"meta": meta, "references": refs, "rows": rows}, indent=2)
    )
    lines = [
        "# Rollout throughput (random actions, steps/s)",
        "",
        f"CPU only ({meta['cpu_count']} cores, torch threads={args.threads}), torch {meta['torch']}, "
        f"gymnasium {meta['gymnasium']}. {meta['note']}",
        "riskrl envs run with `validate_actions=False` (no host sync); 'compiled' = `compile=True`.",
        "",
    ]
    for env_id, r in refs.items():
        lines.append(
            f"- {env_id}: gymnasium single env {r['gym_single']:,.0f}/s, SyncVectorEnv(16) {r['gym_sync16']:,.0f}/s"
        )
    lines += [
        "",
        "| env | num_envs | riskrl eager | riskrl compiled | gymnasium numpy vector | best / numpy vector | best / Sync(16) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        fmt = lambda v: "-" if v is None else f"{v:,.0f}"  # noqa: E731
        ratio = "-" if r["best_vs_numpy_vector"] is None else f"{r['best_vs_numpy_vector']:.2f}x"
        lines.append(
            f"| {r['env']} | {r['num_envs']} | {fmt(r['riskrl_eager'])} | {fmt(r['riskrl_compiled'])} | "
            f"{fmt(r['gym_numpy_vector'])} | {ratio} | {r['best_vs_sync16']:.1f}x |"
        )
    (RESULTS / "bench_rollout.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'bench_rollout.md'} ({meta['wall_s']}s)")


if __name__ == "__main__":
    main()
