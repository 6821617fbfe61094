"""Rollout throughput of the torch-batched envs vs gymnasium references (random actions, steps/s).

Measures CartPole-v1 and Pendulum-v1 at num_envs in {1, 64, 4096, 65536} for riskrl's envs (eager and
``compile=True``, both with ``validate_actions=False``, the no-sync fast path: range/NaN checks of actions
need a host sync, shapes and dtypes are still checked) and, in the same run, gymnasium's single env,
``SyncVectorEnv(16)`` and gymnasium's numpy ``CartPoleVectorEnv``.

Fairness on a shared, noisy machine:

* every contender steps through a pre-generated pool of 16 random action batches (torch tensors for ours,
  numpy arrays for gymnasium), so action sampling is not timed for anyone;
* contenders of one (env, num_envs) cell are timed in interleaved rounds (``--rounds`` short windows each,
  round-robin) and the median rate is reported, so load spikes hit all of them alike;
* numpy is single-threaded, so the headline ratio uses torch with 1 thread; torch with 2 threads (both
  cores) is reported next to it (``--threads 1,2``). The load average is recorded before and after.

riskrl's envs are timed at each ``--dtypes`` precision: ``float64`` is the default (gymnasium's precision,
matching its trajectories), ``float32`` the explicit speed option; each dtype is a row of its own.

Usage: ``python experiments/bench_rollout.py [--seconds 0.1] [--rounds 7] [--threads 1,2] [--no-compile]
[--dtypes float64,float32] [--sizes 1,64,4096,65536] [--name bench_rollout]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

from riskrl.envs import make_vec

SIZES = (1, 64, 4096, 65536)
RESULTS = Path(__file__).resolve().parent / "results"
TARGET_N, TARGET_VS_NUMPY, TARGET_VS_SYNC = 4096, 1.5, 100.0


def _rate(step: Callable[[int], object], seconds: float) -> float:
    """Call ``step(i)`` repeatedly for ~``seconds``; return calls per second."""
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(8):
            step(n)
            n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def _interleaved(contenders: dict[str, tuple[Callable[[int], object], int]], seconds: float, rounds: int):
    """Median steps/s of each ``name -> (step_fn, envs_per_call)``, timed round-robin."""
    for fn, _ in contenders.values():  # warm-up (compiles on first call)
        for i in range(3):
            fn(i)
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, (fn, per_call) in contenders.items():
            rates[name].append(_rate(fn, seconds) * per_call)
    return {k: statistics.median(v) for k, v in rates.items()}


def _torch_stepper(
    env_id: str, n: int, compile: bool, dtype: torch.dtype = torch.float64
) -> Callable[[int], object]:
    env = make_vec(env_id, n, validate_actions=False, compile=compile, dtype=dtype)
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    if env_id.startswith("CartPole"):
        pool = list(torch.randint(0, 2, (16, n), generator=gen).unbind(0))
    else:
        pool = list((torch.rand(16, n, 1, generator=gen) * 4 - 2).unbind(0))
    return lambda i: env.step(pool[i & 15])


def _gym_single_stepper(env_id: str) -> Callable[[int], object]:
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    pool = [env.action_space.sample() for _ in range(16)]

    def step(i):
        _, _, term, trunc, _ = env.step(pool[i & 15])
        if term or trunc:
            env.reset()

    return step


def _gym_sync_stepper(env_id: str, n: int = 16) -> Callable[[int], object]:
    env = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync")
    env.reset(seed=0)
    env.action_space.seed(0)
    pool = [env.action_space.sample() for _ in range(16)]
    return lambda i: env.step(pool[i & 15])


def _numpy_cartpole_stepper(n: int) -> Callable[[int], object]:
    env = CartPoleVectorEnv(num_envs=n)
    env.reset(seed=0)
    pool = list(np.random.default_rng(0).integers(0, 2, (16, n)))
    return lambda i: env.step(pool[i & 15])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=0.1, help="timing window per round and contender")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds per cell (median reported)")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--dtypes", default="float64,float32", help="riskrl env precisions (float64 = default)")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated num_envs")
    ap.add_argument("--name", default="bench_rollout", help="results file stem in experiments/results/")
    args = ap.parse_args()
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    sizes = [int(n) for n in args.sizes.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    load_before = os.getloadavg()
    t_start = time.time()
    rows = []
    refs: dict[str, dict[str, float]] = {}
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        print(f"== {env_id}")
        torch.set_num_threads(1)
        r = _interleaved(
            {"gym_single": (_gym_single_stepper(env_id), 1), "gym_sync16": (_gym_sync_stepper(env_id), 16)},
            args.seconds,
            args.rounds,
        )
        refs[env_id] = r
        print(f"  gymnasium single env      {r['gym_single']:14,.0f} steps/s")
        print(f"  gymnasium SyncVectorEnv16 {r['gym_sync16']:14,.0f} steps/s")
        for nt in threads:
            # Set before building the envs: inductor generates OpenMP code only for > 1 thread.
            torch.set_num_threads(nt)
            for n, dtype in [(n, d) for n in sizes for d in dtypes]:
                cont: dict[str, tuple[Callable[[int], object], int]] = {}
                if env_id.startswith("CartPole"):
                    cont["numpy"] = (_numpy_cartpole_stepper(n), n)
                cont["sync16"] = (_gym_sync_stepper(env_id), 16)
                cont["eager"] = (_torch_stepper(env_id, n, compile=False, dtype=dtype), n)
                if not args.no_compile:
                    t0 = time.perf_counter()
                    cont["compiled"] = (_torch_stepper(env_id, n, compile=True, dtype=dtype), n)
                    cont["compiled"][0](0)
                    print(f"    (compile warm-up {time.perf_counter() - t0:.1f}s)")
                r = _interleaved(cont, args.seconds, args.rounds)
                best = max(r["eager"], r.get("compiled", 0.0))
                row = {
                    "env": env_id,
                    "torch_threads": nt,
                    "num_envs": n,
                    "dtype": str(dtype).removeprefix("torch."),
                    "riskrl_eager": r["eager"],
                    "riskrl_compiled": r.get("compiled"),
                    "gym_numpy_vector": r.get("numpy"),
                    "gym_sync16_same_round": r["sync16"],
                    "best_vs_numpy_vector": best / r["numpy"] if "numpy" in r else None,
                    "best_vs_sync16": best / r["sync16"],
                }
                rows.append(row)
                msg = f"  threads={nt} N={n:6d} {row['dtype']} eager {r['eager']:14,.0f}  compiled {r.get('compiled', 0):14,.0f}"
                if "numpy" in r:
                    msg += f"  numpy-vec {r['numpy']:14,.0f}  best/numpy {row['best_vs_numpy_vector']:5.2f}x"
                msg += f"  best/sync16 {row['best_vs_sync16']:8.1f}x"
                print(msg)
    torch.set_num_threads(1)
    load_after = os.getloadavg()
    target_rows = [
        r
        for r in rows
        if r["env"] == "CartPole-v1"
        and r["num_envs"] == TARGET_N
        and r["torch_threads"] == 1
        and r["dtype"] == "float64"  # the default
    ]
    target = None
    if target_rows:
        t = target_rows[0]
        target = {
            "cell": f"CartPole-v1, {TARGET_N} envs, default float64, torch 1 thread (numpy is single-threaded)",
            "vs_numpy_vector": t["best_vs_numpy_vector"],
            "vs_sync16": t["best_vs_sync16"],
            "met": t["best_vs_numpy_vector"] >= TARGET_VS_NUMPY and t["best_vs_sync16"] >= TARGET_VS_SYNC,
        }
    meta = {
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "git_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=RESULTS.parent
        ).stdout.strip(),
        "argv": sys.argv[1:],
        "dtypes": args.dtypes,
        "sizes": sizes,
        "seconds_per_window": args.seconds,
        "rounds": args.rounds,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "wall_s": round(time.time() - t_start, 1),
        "note": "2-core CPU shared with other engineers' jobs; compare ratios measured in the same run.",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps({"meta": meta, "target": target, "references": refs, "rows": rows}, indent=2)
    )
    lb, la = meta["loadavg_before"], meta["loadavg_after"]
    lines = [
        "# Rollout throughput (random actions, steps/s)",
        "",
        f"CPU only ({meta['cpu_count']} cores), torch {meta['torch']}, gymnasium {meta['gymnasium']}, "
        f"numpy {meta['numpy']}. {meta['note']} Load average (1/5/15 min) before {lb}, after {la}.",
        "",
        "riskrl envs run with `validate_actions=False` (no host sync; shapes/dtypes still checked); "
        "'compiled' = `compile=True`. All contenders step through pre-generated action pools and are timed "
        f"in {args.rounds} interleaved rounds of {args.seconds}s (median). gymnasium's numpy vector env is "
        "single-threaded, so the target is judged on torch with 1 thread; 2-thread rows use both cores.",
        "",
    ]
    if target:
        verdict = "MET" if target["met"] else "NOT MET"
        lines += [
            f"**Target** ({target['cell']}): >= {TARGET_VS_NUMPY}x numpy vector and >= {TARGET_VS_SYNC:.0f}x "
            f"SyncVectorEnv(16): {target['vs_numpy_vector']:.2f}x and {target['vs_sync16']:.0f}x -> {verdict}.",
            "",
        ]
    for env_id, r in refs.items():
        lines.append(
            f"- {env_id}: gymnasium single env {r['gym_single']:,.0f}/s, SyncVectorEnv(16) {r['gym_sync16']:,.0f}/s"
        )
    lines += [
        "",
        "| env | torch threads | num_envs | dtype | riskrl eager | riskrl compiled | gymnasium numpy vector "
        "| best / numpy vector | best / Sync(16) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        fmt = lambda v: "-" if v is None else f"{v:,.0f}"  # noqa: E731
        ratio = "-" if r["best_vs_numpy_vector"] is None else f"{r['best_vs_numpy_vector']:.2f}x"
        lines.append(
            f"| {r['env']} | {r['torch_threads']} | {r['num_envs']} | {r['dtype']} | {fmt(r['riskrl_eager'])} | "
            f"{fmt(r['riskrl_compiled'])} | {fmt(r['gym_numpy_vector'])} | {ratio} | {r['best_vs_sync16']:.1f}x |"
        )
    lines += [
        "",
        "Notes: on this shared 2-core machine (load average well above 2) torch with 2 threads collapses "
        "(OpenMP workers wait on descheduled siblings: 10-100x slower at 4096 envs), so keep "
        "`torch.set_num_threads(1)` for env stepping on a loaded CPU. At 1-64 envs the step is fixed-overhead "
        "bound (eager: ~80 small ops; compiled: dynamo/AOT call wrapper, ~50-60 us) and numpy's simpler step "
        "wins; the compiled step pays off from a few hundred envs up.",
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / (args.name + '.md')} ({meta['wall_s']}s)")


if __name__ == "__main__":
    main()
