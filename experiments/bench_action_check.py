"""Where the compiled step should check its actions: inside its program, or by one reduction before it.

The compiled CartPole-v1 step (``compile=True``, float64, one torch thread) timed with three ways of
checking the actions, in interleaved rounds within one process (median of the rounds):

- ``in_program``: the program computes "some action is invalid" as one more output, read with one
  scalar read; an invalid batch makes the program write nothing back (every buffer keeps its value);
- ``before_step``: one ``aminmax`` reduction and two host reads before the program runs;
- ``none``: ``validate_actions=False`` (the floor).

The library checks in the program up to ``riskrl.envs.base._IN_PROGRAM_CHECK_MAX_ENVS`` envs and
before the step above it; this script is the measurement behind that threshold (it forces each mode
at every size). Usage: ``python experiments/bench_action_check.py [--sizes 64,1024,4096,65536]
[--rounds 7] [--seconds 0.3]``; writes ``experiments/results/bench_action_check.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from riskrl.envs import CartPoleVecEnv
from riskrl.envs import base as env_base
from riskrl.results import write_results

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("in_program", "before_step", "none")


def make_env(mode: str, num_envs: int) -> CartPoleVecEnv:
    """A compiled CartPole batch whose actions are checked the ``mode`` way (see the module docstring)."""
    saved = env_base._IN_PROGRAM_CHECK_MAX_ENVS
    env_base._IN_PROGRAM_CHECK_MAX_ENVS = num_envs if mode == "in_program" else 0
    try:
        env = CartPoleVecEnv(num_envs=num_envs, compile=True, validate_actions=mode != "none")
    finally:
        env_base._IN_PROGRAM_CHECK_MAX_ENVS = saved
    env.reset(seed=0)
    return env


def time_cell(num_envs: int, rounds: int, seconds: float) -> dict[str, float]:
    """Median env steps per second of each mode at ``num_envs`` (interleaved rounds)."""
    envs = {mode: make_env(mode, num_envs) for mode in MODES}
    actions = torch.randint(0, 2, (16, num_envs), generator=torch.Generator().manual_seed(0))
    for env in envs.values():  # compile (or load) and warm up
        for i in range(30):
            env.step(actions[i % 16])
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode, env in envs.items():
            steps, started = 0, time.perf_counter()
            while True:
                for i in range(16):
                    env.step(actions[i])
                steps += 16
                elapsed = time.perf_counter() - started
                if elapsed >= seconds:
                    break
            rates[mode].append(steps * num_envs / elapsed)
    return {mode: statistics.median(r) for mode, r in rates.items()}


def markdown(config: dict, cells: dict[str, dict[str, float]]) -> str:
    lines = [
        "# Where the compiled step checks its actions (experiments/bench_action_check.py)",
        "",
        f"CartPole-v1, `compile=True`, float64, one torch thread, median of {config['rounds']} interleaved "
        f"rounds of {config['seconds']} s; load average before {config['loadavg_before']}, after "
        f"{config['loadavg_after']} ({os.cpu_count()} cores). The library checks in the program up to "
        f"{config['threshold']} envs.",
        "",
        "| envs | in program | before the step | no check | in program / before |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n, r in cells.items():
        lines.append(
            f"| {n} | {r['in_program'] / 1e6:.2f}M | {r['before_step'] / 1e6:.2f}M | {r['none'] / 1e6:.2f}M "
            f"| {r['in_program'] / r['before_step']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="64,1024,4096,65536")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sizes = [int(n) for n in args.sizes.split(",")]
    config = {
        "env": "CartPole-v1",
        "sizes": sizes,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "torch_threads": 1,
        "threshold": env_base._IN_PROGRAM_CHECK_MAX_ENVS,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
    cells = {}
    for n in sizes:
        cells[str(n)] = time_cell(n, args.rounds, args.seconds)
        r = cells[str(n)]
        print(
            n,
            {k: f"{v / 1e6:.2f}M" for k, v in r.items()},
            f"in/before {r['in_program'] / r['before_step']:.2f}x",
        )
    config["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    paths = write_results(
        RESULTS,
        "bench_action_check",
        {"steps_per_second": cells},
        config=config,
        markdown=markdown(config, cells),
    )
    print("wrote", paths["json"])


if __name__ == "__main__":
    main()
