"""Does ``torch.compile`` pay for BayesDQN's update? Eager vs ``compile=True``, measured in one run.

For each Q-network width, two BayesDQN agents (same seed, CartPole-v1, 5 ensemble members, batch
64) fill their replay buffers with random steps; then the script times, with one torch thread and
the process's CPU clock (``time.process_time``; CUDA: wall-clock after a synchronize):

* one gradient step (``_train_step``: sample, TD loss, backward, clipping, Adam, Polyak update), and
* one exploring action for one env (``_explore_actions``, the per-env-step acting cost),

eager and compiled, plus the one-off compilation time (first call minus a steady call). The ratio
compiled / eager and the break-even number of gradient steps (compile seconds / saving per step)
say where compilation pays: a run needs more gradient steps than the break-even to gain anything.

Usage:  python experiments/bench_compile.py [--widths 64,128,256] [--steps 300] [--device cpu]
Writes: experiments/results/compile.{json,md} (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from riskrl.agents import BayesDQN
from riskrl.results import write_results

RESULTS = Path(__file__).parent / "results"


def _clock(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def _per_call_ms(fn: Any, n: int, device: str) -> float:
    t0 = _clock(device)
    for _ in range(n):
        fn()
    return (_clock(device) - t0) / n * 1e3


def measure(width: int, compile_: bool, steps: int, device: str, seed: int = 0) -> dict[str, float]:
    """Steady per-call milliseconds of a gradient step and of acting, and the first calls' cost."""
    agent = BayesDQN(
        "CartPole-v1",
        seed=seed,
        hidden=(width, width),
        learning_starts=1_000,
        compile=compile_,
        device=device,
    )
    agent.learn(1_000)  # random actions only: fills the buffer, no gradient step yet
    obs = torch.zeros(1, 4, device=device)

    def act() -> None:
        with torch.no_grad():
            agent._explore_actions(obs)

    # wall-clock: inductor compiles in worker processes, whose CPU time this process does not see
    t0 = time.perf_counter()
    agent._train_step()
    act()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    first_s = time.perf_counter() - t0
    _per_call_ms(agent._train_step, 20, device)  # warm-up
    train_ms = _per_call_ms(agent._train_step, steps, device)
    _per_call_ms(act, 20, device)
    act_ms = _per_call_ms(act, steps, device)
    return {"train_step_ms": train_ms, "act_ms": act_ms, "first_calls_s": first_s}


def run(widths: list[int], steps: int, device: str) -> list[dict[str, Any]]:
    rows = []
    for width in widths:
        eager = measure(width, False, steps, device)
        compiled = measure(width, True, steps, device)
        compile_s = compiled["first_calls_s"] - eager["first_calls_s"]
        saving_ms = eager["train_step_ms"] + eager["act_ms"] - compiled["train_step_ms"] - compiled["act_ms"]
        rows.append(
            {
                "width": width,
                "eager": eager,
                "compiled": compiled,
                "compile_seconds": compile_s,
                "train_ratio": compiled["train_step_ms"] / eager["train_step_ms"],
                "act_ratio": compiled["act_ms"] / eager["act_ms"],
                # gradient steps (with one action each) after which the compiled run is ahead
                "break_even_steps": compile_s / (saving_ms / 1e3) if saving_ms > 0 else None,
            }
        )
        print(
            f"({width}, {width}): train {eager['train_step_ms']:.2f} -> {compiled['train_step_ms']:.2f} ms, "
            f"act {eager['act_ms']:.3f} -> {compiled['act_ms']:.3f} ms, compile {compile_s:.1f} s",
            flush=True,
        )
    return rows


def markdown(rows: list[dict[str, Any]], device: str, threads: int) -> str:
    lines = [
        "# torch.compile for BayesDQN: eager vs compile=True",
        "",
        f"Written by `experiments/bench_compile.py`; device {device}, {threads} torch thread(s); "
        "CartPole-v1, 5 ensemble members, batch 64, steady per-call times after a warm-up "
        "(CPU: process CPU time); compile s is the wall-clock of the first calls beyond eager's, with a cold inductor cache. Compiled: the TD loss (forward passes and targets) and the acting "
        "forward; backward, clipping, Adam and the Polyak update stay eager in both.",
        "",
        "| hidden | train step eager ms | compiled ms | ratio | act eager ms | compiled ms | ratio | compile s | break-even gradient steps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        be = "never" if r["break_even_steps"] is None else f"{r['break_even_steps']:,.0f}"
        lines.append(
            f"| ({r['width']}, {r['width']}) | {r['eager']['train_step_ms']:.2f} | "
            f"{r['compiled']['train_step_ms']:.2f} | {r['train_ratio']:.2f} | {r['eager']['act_ms']:.3f} | "
            f"{r['compiled']['act_ms']:.3f} | {r['act_ratio']:.2f} | {r['compile_seconds']:.1f} | {be} |"
        )
    lines += [
        "",
        "Break-even: gradient steps (each with one acting call) after which the compiled run has caught up "
        "with the eager one, compile time included; CartPole's default run takes about 13k.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--widths", default="64,128,256")
    parser.add_argument("--steps", type=int, default=300, help="timed calls per measurement")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "compile"))
    args = parser.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",") if w]
    if not widths or min(widths) < 1:
        parser.error("--widths must be positive integers")
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    torch.set_num_threads(args.threads)
    # a cold compile, as a user's first run has (inductor's on-disk cache would hide the cost)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="riskrl-bench-compile-")
    rows = run(widths, args.steps, args.device)
    out = Path(args.out)
    md = markdown(rows, args.device, args.threads)
    write_results(out.parent, out.name, {"rows": rows}, config=vars(args), markdown=md)
    print(md)


if __name__ == "__main__":
    main()
