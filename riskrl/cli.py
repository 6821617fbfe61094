"""The ``riskrl`` command line: train, evaluate, sweep, bench, plot, demo.

Every subcommand writes its results (JSON + markdown + PNG) into a run directory and prints where.
User errors (bad arguments, values, files or checkpoints) exit with status 2 and one line; internal
errors exit with status 1 and one line that points to ``--debug`` (or ``RISKRL_DEBUG=1``), which
shows the traceback. No path prints a traceback by default. Ctrl-C and SIGTERM exit with 130 / 143.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from riskrl._version import __version__
from riskrl.agents import agent_class, load_agent
from riskrl.agents.base import space_to_json
from riskrl.atomic import atomic_write_bytes
from riskrl.benchmark import BenchConfig, bench
from riskrl.checkpoint import CheckpointError
from riskrl.demo import run_demo
from riskrl.envs import ENV_IDS, make_vec
from riskrl.envs.base import NOISE_PARAMS, check_physical
from riskrl.envs.perturbation import Perturbation
from riskrl.evaluation import DEFAULT_MAX_ENVS, evaluate
from riskrl.plotting import plot_learning_curves, plot_sweep, plot_training_curve
from riskrl.sweep import SweepConfig, sweep


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """A user mistake detected after parsing; reported as one line with exit status 2."""


#: errors about the user's files, reported as user errors (exit 2)
_FILE_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def _range(text: str) -> tuple[str, tuple[float, float]]:
    """``--randomize NAME=LOW:HIGH`` -> ``(NAME, (LOW, HIGH))``."""
    name, eq, rng = text.partition("=")
    lo, colon, hi = rng.partition(":")
    try:
        if not (eq and colon and name.strip()):
            raise ValueError
        pair = (float(lo), float(hi))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected NAME=LOW:HIGH (e.g. length=0.25:1.5), got {text!r}"
        ) from None
    return name.strip(), pair


def randomize_option(p: argparse.ArgumentParser) -> None:
    """``--randomize NAME=LOW:HIGH`` (repeatable): domain randomization of the training envs."""
    p.add_argument(
        "--randomize",
        type=_range,
        action="append",
        metavar="NAME=LOW:HIGH",
        help="train with domain randomization: redraw this physical parameter per env at every reset "
        "(repeatable), e.g. length=0.25:1.5",
    )


def _user(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` on user input: its ValueError / TypeError is the user's mistake (exit 2).

    Only the calls that validate what the user typed (names, ids, hyperparameters, devices,
    checkpoints) go through here; a ValueError anywhere else is an internal error (exit 1).
    """
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise UsageError(str(err)) from err


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
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _parse_value(text: str) -> Any:
    """``--set`` values: JSON when it parses (numbers, true/false, lists), a comma-separated list
    (``64,64`` is ``[64, 64]``), else the plain string."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        pass
    if "," in text:
        return [_parse_value(part.strip()) for part in text.split(",") if part.strip()]
    return text


def _key_values(items: Sequence[str] | None, option: str = "--set") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"{option}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = _parse_value(value.strip())
    return out


def _hyperparameters(items: Sequence[str] | None, cls: type) -> dict[str, Any]:
    """``--set`` pairs checked against ``cls``'s config fields: each error names the key and syntax."""
    values = _key_values(items)
    fields = {f.name: f for f in dataclasses.fields(cls.config_class)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise UsageError(
                f"--set {key}: unknown hyperparameter for {cls.__name__}; valid: {sorted(fields)}"
            )
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        raw = next(
            i.partition("=")[2] for i in reversed(list(items or [])) if i.partition("=")[0].strip() == key
        )
        if isinstance(default, (tuple, list)):
            value = [value] if isinstance(value, int) and not isinstance(value, bool) else value
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            ):
                raise UsageError(
                    f"--set {key}={raw}: expected a list of integers, e.g. --set {key}=64,64 or {key}=[64,64]"
                )
            value = tuple(value) if isinstance(default, tuple) else list(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise UsageError(f"--set {key}={raw}: expected true or false")
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise UsageError(f"--set {key}={raw}: expected an integer, e.g. --set {key}={default}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UsageError(f"--set {key}={raw}: expected a finite number, e.g. --set {key}={default}")
        elif isinstance(default, str) and not isinstance(value, str):
            raise UsageError(f"--set {key}={raw}: expected a name, e.g. --set {key}={default}")
        out[key] = value
    return out


def _perturbations(items: Sequence[str] | None, env_id: str) -> dict[str, float]:
    """``--perturb PARAM=VALUE`` pairs: known parameters of ``env_id`` with finite, physical values."""

    out: dict[str, float] = {}
    for item in items or []:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError(f"--perturb: expected PARAM=VALUE, got {item!r}")
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"--perturb {key}: expected a number, got {text!r}") from None
        cls = ENV_IDS.get(env_id.removeprefix("riskrl/"))
        if cls is None:
            raise UsageError(
                f"--perturb: {env_id} is not a riskrl batched env; it has no physical parameters"
            )
        valid = (*cls.param_defaults, *NOISE_PARAMS)
        if key not in valid:
            raise UsageError(f"--perturb {key}: unknown parameter of {env_id}; valid: {', '.join(valid)}")
        try:
            check_physical(key, value)
        except ValueError as err:
            raise UsageError(f"--perturb {err}") from None
        out[key] = value
    return out


def _run_dir(text: str | None, default: str) -> Path:
    """A run directory that can be created: not an existing file, no file among its parents."""
    out = Path(text or default)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            what = "--out" if p == out else f"--out {out}: its parent"
            raise UsageError(f"{what} {p} is an existing file, not a directory")
    return out


@contextlib.contextmanager
def _removed_if_empty(path: Path) -> Any:
    """Remove ``path`` again if the block fails and leaves it an empty directory it created."""
    existed = path.exists()
    try:
        yield
    except BaseException:
        if not existed and path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        raise


def _perturbation(text: str):

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


def _randomized_env(
    env_id: str, randomize: dict[str, tuple[float, float]], num_envs: int, device: str
) -> Any:
    """The batched env for ``--randomize`` (domain randomization); the id itself without it."""
    if not randomize:
        return env_id

    return _user(make_vec, env_id, num_envs=num_envs, device=device, randomize=randomize)


def cmd_train(args: argparse.Namespace) -> int:

    cls = _user(agent_class, args.agent)
    hyper = _hyperparameters(args.set, cls)
    out = _run_dir(args.out, f"runs/train-{args.agent}-{args.env}-seed{args.seed}")
    with _removed_if_empty(out):
        env = _randomized_env(args.env, args.randomize, int(hyper.get("num_envs", 1)), args.device)
        agent = _user(
            cls, env, risk_tolerance=args.risk_tolerance, seed=args.seed, device=args.device, **hyper
        )
        agent.learn(args.steps, progress_bar=not args.quiet, log_dir=out)
        model_path = agent.save(out / "model.riskrl")
    summary = {
        "agent": args.agent,
        "env": args.env,
        "steps": args.steps,
        "seed": args.seed,
        "randomize": args.randomize,
        "model": str(model_path),
    }
    atomic_write_bytes(out / "train.json", json.dumps(summary, indent=1).encode())
    png = plot_training_curve(
        out / "episodes.csv", path=out / "learning_curve.png", title=f"{args.agent} on {args.env}"
    )
    _done([model_path, out / "episodes.csv", png, out / "train.json"], "training results")
    return 0


def _space_str(space: Any) -> str:
    n = getattr(space, "n", None)
    if n is not None:
        return f"Discrete({int(n)})"
    return f"{type(space).__name__}{tuple(getattr(space, 'shape', ()) or ())}"


def _evaluation_dir(args: argparse.Namespace) -> Path:
    """Where evaluation results go: never over an earlier evaluation unless ``--overwrite``."""
    if args.out:
        out = _run_dir(args.out, "")
        if (out / "evaluation.json").exists() and not args.overwrite:
            raise UsageError(f"--out {out} already holds an evaluation; pass --overwrite or another --out")
        return out
    base = Path(args.model).parent / "evaluation"
    out, n = base, 1
    while (out / "evaluation.json").exists() and not args.overwrite:
        n += 1
        out = base.with_name(f"evaluation-{n}")
    return _run_dir(str(out), "")


def cmd_evaluate(args: argparse.Namespace) -> int:

    agent = _user(load_agent, args.model, device=args.device)
    env_id = args.env or agent.env_id
    if not env_id:
        raise UsageError(f"{args.model} records no env id; pass --env")
    probe = _user(make_vec, env_id, num_envs=1)
    for what, model_space, env_space in (
        ("observation", agent.observation_space, probe.single_observation_space),
        ("action", agent.action_space, probe.single_action_space),
    ):
        try:
            same = space_to_json(env_space) == space_to_json(model_space)
        except ValueError:
            same = False
        if not same:
            raise UsageError(
                f"model and env spaces differ: {args.model} was trained with {what} space "
                f"{_space_str(model_space)}, {env_id} has {_space_str(env_space)}"
            )
    perturb = _perturbations(args.perturb, env_id)
    out = _evaluation_dir(args)
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
        res = _user(
            evaluate,
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

    perts = [Perturbation(), *(args.perturb or [])]
    config = SweepConfig(
        env_id=args.env,
        agent=args.agent,
        risk_tolerances=args.risk_tolerances,
        seeds=args.seeds,
        perturbations=perts,
        total_timesteps=args.steps,
        n_eval_episodes=args.episodes,
        agent_kwargs=_hyperparameters(args.set, _user(agent_class, args.agent)),
        device=args.device,
    )
    _user(config.validate)
    out = _run_dir(args.out, f"runs/sweep-{args.agent}-{args.env}")
    try:
        result = sweep(
            config,
            backend=args.backend,
            workers=args.workers,
            address=args.address,
            out_dir=out,
            save_checkpoints=True,
            progress_bar=not args.quiet,
            connect_timeout=args.ray_timeout,
        )
    except ConnectionError as err:
        raise UsageError(str(err)) from None
    print(result.to_markdown())
    _done(
        {k: out / f"sweep.{e}" for k, e in (("json", "json"), ("md", "md"), ("png", "png"))}, "sweep results"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:

    cfg = _user(
        BenchConfig,
        env_id=args.env,
        algos=args.algos.split(","),
        seeds=args.seeds,
        total_timesteps=args.steps,
        eval_every=args.eval_every,
        n_eval_episodes=args.episodes,
        final_eval_episodes=args.final_episodes,
        shift=args.shift,
        risk_tolerance=args.risk_tolerance,
        randomize=args.randomize,
    )
    _user(cfg.validate)
    out = _run_dir(args.out, f"runs/bench-{args.env}")
    result = bench(cfg, workers=args.workers, out_dir=out, progress_bar=not args.quiet)
    print(result.to_markdown())
    _done(
        {k: out / f"bench.{e}" for k, e in (("json", "json"), ("md", "md"), ("png", "png"))},
        "benchmark results",
    )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:

    run = Path(args.run_dir)
    if not run.is_dir():
        raise UsageError(f"{run} is not a directory")
    made = []
    for js in sorted(run.glob("*.json")):
        try:
            data = json.loads(js.read_text())
        except (ValueError, RecursionError) as err:
            raise UsageError(f"{js} is not valid JSON ({str(err)[:100]})") from None
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

    report = run_demo(
        out_dir=args.out,
        quick=args.quick,
        workers=args.workers,
        progress=not args.quiet,
        steps=args.steps,
        seeds=tuple(args.seeds) if args.seeds else None,
    )
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
        "--debug", action="store_true", help="show the full traceback of errors (or set RISKRL_DEBUG=1)"
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch CPU threads (default: 1; riskrl's small networks gain little from more, and on a "
        "busy CPU extra threads can be many times slower)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def debug(p: argparse.ArgumentParser) -> None:
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        debug(p)

    p = sub.add_parser("train", help="train an agent and save it (no pickle)")
    p.add_argument("--env", default="CartPole-v1", help="gymnasium id (default: CartPole-v1)")
    p.add_argument("--agent", default="BayesDQN", help="BayesDQN or BayesMPC (default: BayesDQN)")
    p.add_argument("--steps", type=_positive_int, default=20_000, help="environment steps (default: 20000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--risk-tolerance", type=_finite_float, default=0.0, help="> 0 averse, 0 neutral, < 0 optimistic"
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="agent hyperparameter (repeatable)")
    randomize_option(p)
    p.add_argument("--out", help="run directory (default: runs/train-AGENT-ENV-seedN)")
    common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a saved agent (batched episodes, risk metrics)")
    p.add_argument("model", help="a .riskrl checkpoint written by `riskrl train`")
    p.add_argument("--env", help="gymnasium id (default: the one it was trained on)")
    p.add_argument("--episodes", type=_positive_int, default=100)
    p.add_argument(
        "--num-envs",
        type=_positive_int,
        default=None,
        help=f"parallel envs (default: min(episodes, {DEFAULT_MAX_ENVS}))",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--risk-tolerance", type=_finite_float, action="append", help="repeat to compare several")
    p.add_argument("--perturb", action="append", metavar="PARAM=VALUE", help="physical parameter change")
    p.add_argument("--alpha", type=_finite_float, default=0.1, help="CVaR tail fraction (default: 0.1)")
    p.add_argument(
        "--out", help="output directory (default: evaluation/ next to the model, or evaluation-2/, ...)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier evaluation in the output directory"
    )
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
    p.add_argument(
        "--ray-timeout",
        type=_finite_float,
        default=30.0,
        help="seconds to wait for the Ray cluster at --address to answer (default: 30)",
    )
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
    randomize_option(p)
    p.add_argument("--workers", type=_positive_int, default=1)
    p.add_argument("--out", help="run directory (default: runs/bench-ENV)")
    common(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("plot", help="(re)draw the plots of a run directory")
    p.add_argument("run_dir")
    debug(p)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("demo", help="the main job: train, sweep risk_tolerance, compare with SB3, report")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="a smaller run (5k steps x 2 seeds)")
    p.add_argument(
        "--steps", type=_positive_int, help="training steps per run (default: 15000; --quick 5000)"
    )
    p.add_argument("--seeds", type=_int_list, help="e.g. 0,1,2 (default: 0,1,2; --quick 0,1)")
    p.add_argument("--workers", type=_positive_int, default=2)
    p.add_argument("--quiet", action="store_true")
    debug(p)
    p.set_defaults(func=cmd_demo)
    return parser


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:500] if text else type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``riskrl`` console script; returns the exit status.

    0: success; 2: a user error (one line); 1: an internal error (one line pointing to ``--debug``
    or ``RISKRL_DEBUG=1`` for the traceback); 130 / 143: interrupted by Ctrl-C / SIGTERM.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    debug = bool(getattr(args, "debug", False)) or os.environ.get("RISKRL_DEBUG", "") not in ("", "0")
    if hasattr(args, "randomize"):
        args.randomize = dict(args.randomize or [])
    if getattr(args, "shift", "unset") is None:
        args.shift = Perturbation("shifted", {})

    torch.set_num_threads(args.threads)
    terminated = False
    previous = None

    def on_sigterm(signum: int, frame: Any) -> None:
        nonlocal terminated
        terminated = True
        raise KeyboardInterrupt("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (main() called from a thread): keep the default
        previous = None
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"riskrl {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except (UsageError, CheckpointError, *_FILE_ERRORS) as err:
        if debug:
            raise
        print(f"riskrl {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # every other error (MemoryError included) is ours: one line, exit 1
        if debug:
            raise
        print(
            f"riskrl {args.command}: internal error: {type(err).__name__}: {_one_line(err)} "
            "(rerun with --debug or RISKRL_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
