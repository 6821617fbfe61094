"""The ``riskrl`` command line: train, evaluate, sweep, bench, plot, demo.

Every subcommand writes its results (JSON + markdown + PNG) into a run directory and prints where.
Bad arguments exit with status 2 and a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from riskrl._version import __version__


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """A user mistake detected after parsing; reported as one line with exit status 2."""


# --------------------------------------------------------------------------- argument parsing helpers


def _number_list(cast: type, what: str):
    """An argparse type for comma-separated ``cast`` values (at least one)."""

    def parse(text: str) -> list:
        try:
            values = [cast(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}s, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one {what}")
        return values

    return parse


_float_list = _number_list(float, "number")
_int_list = _number_list(int, "integer")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _finite_float(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _parse_value(text: str) -> Any:
    """``--set`` values: JSON when it parses (numbers, true/false, lists), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _key_values(items: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"expected KEY=VALUE, got {item!r}")
        value = _parse_value(value)
        out[key.strip()] = tuple(value) if isinstance(value, list) else value
    return out


def _perturbation(text: str):
    from riskrl.sweep import Perturbation

    try:
        return Perturbation.parse(text if ":" in text or "=" not in text else f"shifted:{text}")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _done(paths: dict[str, Path] | list[Path], what: str) -> None:
    items = paths.values() if isinstance(paths, dict) else paths
    print(f"{what} written to:")
    for p in items:
        print(f"  {p}")


# --------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    from riskrl.agents import agent_class
    from riskrl.checkpoint import atomic_write_bytes
    from riskrl.plotting import plot_training_curve

    cls = agent_class(args.agent)
    out = Path(args.out or f"runs/train-{args.agent}-{args.env}-seed{args.seed}")
    agent = cls(
        args.env,
        risk_tolerance=args.risk_tolerance,
        seed=args.seed,
        device=args.device,
        **_key_values(args.set),
    )
    agent.learn(args.steps, progress_bar=not args.quiet, log_dir=out)
    model_path = agent.save(out / "model.riskrl")
    summary = {
        "agent": args.agent,
        "env": args.env,
        "steps": args.steps,
        "seed": args.seed,
        "model": str(model_path),
    }
    atomic_write_bytes(out / "train.json", json.dumps(summary, indent=1).encode())
    png = plot_training_curve(
        out / "episodes.csv", path=out / "learning_curve.png", title=f"{args.agent} on {args.env}"
    )
    _done([model_path, out / "episodes.csv", png, out / "train.json"], "training results")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from riskrl.agents import load_agent
    from riskrl.checkpoint import atomic_write_bytes
    from riskrl.evaluation import evaluate

    agent = load_agent(args.model, device=args.device)
    env_id = args.env or agent.env_id
    out = Path(args.out or Path(args.model).parent / "evaluation")
    perturb = _key_values(args.perturb)
    tolerances = args.risk_tolerance or [agent.risk_tolerance]
    results = {}
    lines = [
        f"Evaluation of {args.model} on {env_id} ({args.episodes} episodes, seed {args.seed}"
        + (f", perturbed {perturb}" if perturb else "")
        + ")",
        "",
        "| risk_tolerance | mean | std | IQM | CVaR | worst | failure rate | epistemic std | 95% CI of mean |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for k in tolerances:
        agent.risk_tolerance = k
        res = evaluate(
            agent,
            env_id,
            n_episodes=args.episodes,
            seed=args.seed,
            device=args.device,
            perturb=perturb or None,
            alpha=args.alpha,
            num_envs=args.num_envs,
        )
        results[str(k)] = res.to_dict()
        lo, hi = res.ci.get("mean", (float("nan"),) * 2)
        lines.append(
            f"| {k:g} | {res.mean:.1f} | {res.std:.1f} | {res.iqm:.1f} | {res.cvar:.1f} | {res.worst:.1f} | "
            f"{res.failure_rate:.2f} | {res.mean_epistemic_std:.3f} | [{lo:.1f}, {hi:.1f}] |"
        )
        print(f"risk_tolerance={k:g}: {res}")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "evaluation.json", "markdown": out / "evaluation.md"}
    atomic_write_bytes(
        paths["json"], json.dumps({"env": env_id, "perturb": perturb, "results": results}, indent=1).encode()
    )
    atomic_write_bytes(paths["markdown"], ("\n".join(lines) + "\n").encode())
    _done(paths, "evaluation results")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from riskrl.sweep import Perturbation, SweepConfig, sweep

    perts = [Perturbation(), *(args.perturb or [])]
    config = SweepConfig(
        env_id=args.env,
        agent=args.agent,
        risk_tolerances=args.risk_tolerances,
        seeds=args.seeds,
        perturbations=perts,
        total_timesteps=args.steps,
        n_eval_episodes=args.episodes,
        agent_kwargs=_key_values(args.set),
        device=args.device,
    )
    out = Path(args.out or f"runs/sweep-{args.agent}-{args.env}")
    result = sweep(
        config,
        backend=args.backend,
        workers=args.workers,
        address=args.address,
        out_dir=out,
        save_checkpoints=True,
        progress_bar=not args.quiet,
    )
    print(result.to_markdown())
    _done(
        {k: out / f"sweep.{e}" for k, e in (("json", "json"), ("md", "md"), ("png", "png"))}, "sweep results"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from riskrl.benchmark import BenchConfig, bench

    cfg = BenchConfig(
        env_id=args.env,
        algos=args.algos.split(","),
        seeds=args.seeds,
        total_timesteps=args.steps,
        eval_every=args.eval_every,
        n_eval_episodes=args.episodes,
        final_eval_episodes=args.final_episodes,
        shift=args.shift,
        risk_tolerance=args.risk_tolerance,
    )
    out = Path(args.out or f"runs/bench-{args.env}")
    result = bench(cfg, workers=args.workers, out_dir=out, progress_bar=not args.quiet)
    print(result.to_markdown())
    _done(
        {k: out / f"bench.{e}" for k, e in (("json", "json"), ("md", "md"), ("png", "png"))},
        "benchmark results",
    )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from riskrl.plotting import plot_learning_curves, plot_sweep, plot_training_curve

    run = Path(args.run_dir)
    if not run.is_dir():
        raise UsageError(f"{run} is not a directory")
    made = []
    for js in sorted(run.glob("*.json")):
        data = json.loads(js.read_text())
        if isinstance(data, dict) and "aggregate" in data and "rows" in data:
            made.append(plot_sweep(data, path=js.with_suffix(".png")))
        elif isinstance(data, dict) and "runs" in data and "summary" in data:
            made.append(plot_learning_curves(data, path=js.with_suffix(".png")))
    if (run / "episodes.csv").exists():
        made.append(plot_training_curve(run / "episodes.csv", path=run / "learning_curve.png"))
    if not made:
        raise UsageError(f"nothing to plot in {run} (expected sweep.json, bench.json or episodes.csv)")
    _done(made, "plots")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from riskrl.demo import run_demo

    report = run_demo(out_dir=args.out, quick=args.quick, workers=args.workers, progress=not args.quiet)
    print(f"\nDemo report: {report}")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="riskrl",
        description="Risk-aware reinforcement learning: act on mean - risk_tolerance * std "
        "(risk_tolerance > 0 averse, 0 neutral, < 0 optimistic).",
    )
    parser.add_argument("--version", action="version", version=f"riskrl {__version__}")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch CPU threads (default: 1; riskrl's small networks gain little from more, and on a "
        "busy CPU extra threads can be many times slower)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("train", help="train an agent and save it (no pickle)")
    p.add_argument("--env", default="CartPole-v1", help="gymnasium id (default: CartPole-v1)")
    p.add_argument("--agent", default="BayesDQN", help="BayesDQN or BayesMPC (default: BayesDQN)")
    p.add_argument("--steps", type=_positive_int, default=20_000, help="environment steps (default: 20000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--risk-tolerance", type=_finite_float, default=0.0, help="> 0 averse, 0 neutral, < 0 optimistic"
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="agent hyperparameter (repeatable)")
    p.add_argument("--out", help="run directory (default: runs/train-AGENT-ENV-seedN)")
    common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a saved agent (batched episodes, risk metrics)")
    p.add_argument("model", help="a .riskrl checkpoint written by `riskrl train`")
    p.add_argument("--env", help="gymnasium id (default: the one it was trained on)")
    p.add_argument("--episodes", type=_positive_int, default=100)
    p.add_argument(
        "--num-envs", type=_positive_int, default=None, help="parallel envs (default: min(episodes, 1024))"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--risk-tolerance", type=_finite_float, action="append", help="repeat to compare several")
    p.add_argument("--perturb", action="append", metavar="PARAM=VALUE", help="physical parameter change")
    p.add_argument("--alpha", type=_finite_float, default=0.1, help="CVaR tail fraction (default: 0.1)")
    p.add_argument("--out", help="output directory (default: next to the model)")
    common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sweep", help="risk_tolerance x seeds x perturbations (local processes or Ray)")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--agent", default="BayesDQN")
    p.add_argument(
        "--risk-tolerances", type=_float_list, default=[0.0, 0.5, 1.0, 2.0], help="e.g. -1,0,0.5,1,2"
    )
    p.add_argument("--seeds", type=_int_list, default=[0, 1, 2], help="e.g. 0,1,2")
    p.add_argument("--steps", type=_positive_int, default=20_000, help="training steps per seed")
    p.add_argument("--episodes", type=_positive_int, default=100, help="evaluation episodes per point")
    p.add_argument(
        "--perturb",
        type=_perturbation,
        action="append",
        metavar="NAME:PARAM=VALUE,...",
        help="a shifted-dynamics condition besides nominal (repeatable), e.g. long:length=1.0",
    )
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--address", help="Ray cluster address (ray backend; default: start a local one)")
    p.add_argument("--workers", type=_positive_int, default=1, help="local processes (default: 1)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="agent hyperparameter (repeatable)")
    p.add_argument("--out", help="run directory (default: runs/sweep-AGENT-ENV)")
    common(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("bench", help="riskrl agents vs stable-baselines3 at equal step budgets")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--algos", default="BayesDQN,sb3:DQN", help="comma-separated: riskrl agents and sb3:NAME")
    p.add_argument("--seeds", type=_int_list, default=[0, 1, 2])
    p.add_argument("--steps", type=_positive_int, default=20_000)
    p.add_argument("--eval-every", type=_positive_int, default=2_000)
    p.add_argument("--episodes", type=_positive_int, default=20, help="episodes per learning-curve point")
    p.add_argument("--final-episodes", type=_positive_int, default=100)
    p.add_argument("--shift", type=_perturbation, default=None, help="shifted dynamics, e.g. length=1.0")
    p.add_argument("--risk-tolerance", type=_finite_float, default=0.0)
    p.add_argument("--workers", type=_positive_int, default=1)
    p.add_argument("--out", help="run directory (default: runs/bench-ENV)")
    common(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("plot", help="(re)draw the plots of a run directory")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("demo", help="the main job: train, sweep risk_tolerance, compare with SB3, report")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="a smaller run (about a minute)")
    p.add_argument("--workers", type=_positive_int, default=2)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``riskrl`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    if getattr(args, "shift", "unset") is None:
        from riskrl.sweep import Perturbation

        args.shift = Perturbation("shifted", {})
    import torch

    torch.set_num_threads(args.threads)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, FileNotFoundError, KeyError, RuntimeError, OSError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"riskrl {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"riskrl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
