"""risk_tolerance x seed x perturbation sweeps, run locally in processes or as Ray tasks.

One *job* per seed trains an agent once, then evaluates it at every ``risk_tolerance`` and
under every perturbation without retraining (the knob only changes how the agent acts). Jobs are
independent and deterministic and run through :func:`riskrl.executor.run_jobs`, so the ``local``
and ``ray`` backends give identical results. Results are written by :func:`riskrl.results.write_results`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from riskrl.agents import agent_class
from riskrl.devices import resolve_device
from riskrl.envs import ENV_IDS
from riskrl.envs.base import NOISE_PARAMS, check_physical
from riskrl.envs.perturbation import Perturbation
from riskrl.evaluation import evaluate
from riskrl.executor import (
    RAY_CONNECT_TIMEOUT,
    check_backend,
    check_ray_address,
    checkpoint_dir,
    one_torch_thread,
    run_jobs,
)
from riskrl.plotting import plot_sweep
from riskrl.results import write_report
from riskrl.risk import validate_risk_tolerance

__all__ = [
    "Perturbation",
    "SweepConfig",
    "SweepResult",
    "check_ray_address",
    "evaluate_grid",
    "run_sweep_job",
    "sweep",
]


@dataclasses.dataclass
class SweepConfig:
    """What to sweep. ``agent`` names a class in :mod:`riskrl.agents`.

    ``failure_threshold``: an evaluation episode with a lower return is a failure (default: the env
    spec's ``reward_threshold``, e.g. 475 for CartPole-v1).
    """

    env_id: str = "CartPole-v1"
    agent: str = "BayesDQN"
    risk_tolerances: Sequence[float] = (0.0, 0.5, 1.0, 2.0)
    seeds: Sequence[int] = (0, 1, 2)
    perturbations: Sequence[Perturbation] = dataclasses.field(default_factory=lambda: (Perturbation(),))
    total_timesteps: int = 20_000
    n_eval_episodes: int = 100
    eval_seed: int = 10_000
    alpha: float = 0.1
    failure_threshold: float | None = None
    agent_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    device: str = "cpu"

    def validate(self) -> None:
        """Raise ValueError naming the first problem with this configuration.

        Everything is checked before any training starts: the env id resolves; the agent class
        exists and ``agent_kwargs`` build its config; seeds are distinct non-negative integers;
        episode and step counts are positive integers within limits; ``risk_tolerances``, ``alpha``
        and ``failure_threshold`` are finite; the device exists; and every perturbation names
        parameters of the env with finite, physically valid values.
        """
        if not isinstance(self.env_id, str) or not self.env_id:
            raise ValueError(f"env_id must be a gymnasium id, got {self.env_id!r}")
        env_cls = _env_class(self.env_id)
        cls = agent_class(self.agent)
        if not self.risk_tolerances:
            raise ValueError("risk_tolerances must not be empty")
        if len(self.risk_tolerances) > 1000:
            raise ValueError(f"at most 1000 risk_tolerances, got {len(self.risk_tolerances)}")
        for k in self.risk_tolerances:
            validate_risk_tolerance(k)
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        if len(self.seeds) > 10_000:
            raise ValueError(f"at most 10000 seeds, got {len(self.seeds)}")
        for s in self.seeds:
            _check_int("seed", s, 0, 2**63 - 1)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {list(self.seeds)}")
        _check_int("total_timesteps", self.total_timesteps, 1, 10**10)
        _check_int("n_eval_episodes", self.n_eval_episodes, 1, 10_000_000)
        _check_int("eval_seed", self.eval_seed, 0, 2**63 - 1)
        if (
            isinstance(self.alpha, bool)
            or not isinstance(self.alpha, (int, float))
            or not 0 < self.alpha <= 1
        ):
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha!r}")
        if self.failure_threshold is not None and (
            isinstance(self.failure_threshold, bool)
            or not isinstance(self.failure_threshold, (int, float))
            or not math.isfinite(self.failure_threshold)
        ):
            raise ValueError(
                f"failure_threshold must be a finite number or None, got {self.failure_threshold!r}"
            )
        resolve_device(self.device)
        if not isinstance(self.agent_kwargs, dict) or not all(isinstance(k, str) for k in self.agent_kwargs):
            raise ValueError("agent_kwargs must be a dict of hyperparameter names to values")
        names = {f.name for f in dataclasses.fields(cls.config_class)}
        unknown = sorted(set(self.agent_kwargs) - names)
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown} for {self.agent}; valid: {sorted(names)}")
        try:
            cls.config_class(**self.agent_kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"agent_kwargs: {err}") from None
        names = [p.name for p in self.perturbations]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"perturbations need distinct names, got {names}")
        for pert in self.perturbations:
            if not isinstance(pert, Perturbation):
                raise ValueError(f"perturbations must be Perturbation objects, got {pert!r}")
            _check_perturbation(pert, env_cls, self.env_id)


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be an integer >= {lo} (at most {hi}), got {value!r}")


def _env_class(env_id: str) -> type | None:
    """The riskrl batched env class of ``env_id`` (None for other registered gymnasium ids)."""
    name = env_id.removeprefix("riskrl/")
    if name in ENV_IDS:
        return ENV_IDS[name]
    try:
        gymnasium.spec(env_id)
    except gymnasium.error.Error as err:
        raise ValueError(f"unknown env id {env_id!r}: {err}") from None
    return None


def _check_perturbation(pert: Perturbation, env_cls: type | None, env_id: str) -> None:
    if not pert.params:
        return
    if env_cls is None:
        raise ValueError(
            f"perturbation {pert.name!r}: {env_id} is not a riskrl batched env and cannot be perturbed"
        )
    valid = (*env_cls.param_defaults, *NOISE_PARAMS)
    for key, value in pert.params.items():
        if key not in valid:
            raise ValueError(
                f"perturbation {pert.name!r}: unknown parameter {key!r} for {env_id}; valid: {list(valid)}"
            )
        try:
            check_physical(key, value)
        except ValueError as err:
            raise ValueError(f"perturbation {pert.name!r}: {err}") from None


def evaluate_grid(
    agent: Any, config: SweepConfig, seed: int, train_seconds: float = 0.0
) -> list[dict[str, Any]]:
    """Evaluate a trained ``agent`` at every risk_tolerance x perturbation of ``config``.

    The agent's ``risk_tolerance`` is restored afterwards.
    """

    original = agent.risk_tolerance
    rows = []
    try:
        for pert in config.perturbations:
            for k in config.risk_tolerances:
                agent.risk_tolerance = k
                res = evaluate(
                    agent,
                    config.env_id,
                    n_episodes=int(config.n_eval_episodes),
                    seed=int(config.eval_seed),
                    device=config.device,
                    perturb=pert.params,
                    alpha=config.alpha,
                    failure_threshold=config.failure_threshold,
                    bootstrap=False,
                )
                rows.append(
                    {
                        "seed": int(seed),
                        "risk_tolerance": float(k),
                        "perturbation": pert.name,
                        "params": dict(pert.params),
                        "mean": res.mean,
                        "std": res.std,
                        "iqm": res.iqm,
                        "cvar": res.cvar,
                        "worst": res.worst,
                        "failure_rate": res.failure_rate,
                        "mean_epistemic_std": res.mean_epistemic_std,
                        "train_seconds": train_seconds,
                    }
                )
    finally:
        agent.risk_tolerance = original
    return rows


def run_sweep_job(config: SweepConfig, seed: int, checkpoint_dir: str | None = None) -> list[dict[str, Any]]:
    """Train one agent with ``seed`` and evaluate it at every risk_tolerance x perturbation.

    A top-level function so process pools and Ray can ship it. Uses one torch thread.
    """
    with one_torch_thread():
        cls = agent_class(config.agent)
        start = time.perf_counter()
        agent = cls(config.env_id, seed=int(seed), device=config.device, **config.agent_kwargs)
        agent.learn(int(config.total_timesteps))
        train_seconds = time.perf_counter() - start
        if checkpoint_dir is not None:
            agent.save(Path(checkpoint_dir) / f"{config.agent}_seed{seed}.riskrl")
        return evaluate_grid(agent, config, int(seed), train_seconds)


@dataclasses.dataclass
class SweepResult:
    """All rows of a sweep plus aggregation, tables and files."""

    config: SweepConfig
    rows: list[dict[str, Any]]
    backend: str = "local"
    wall_seconds: float = 0.0

    def aggregate(self) -> list[dict[str, Any]]:
        """Mean and standard error over seeds for each (perturbation, risk_tolerance)."""
        out = []
        for pert in self.config.perturbations:
            for k in self.config.risk_tolerances:
                sel = [
                    r for r in self.rows if r["perturbation"] == pert.name and r["risk_tolerance"] == float(k)
                ]
                if not sel:
                    continue
                row: dict[str, Any] = {
                    "perturbation": pert.name,
                    "risk_tolerance": float(k),
                    "n_seeds": len(sel),
                }
                for key in ("mean", "cvar", "worst", "failure_rate", "mean_epistemic_std"):
                    vals = np.array([r[key] for r in sel], dtype=np.float64)
                    row[key] = float(np.mean(vals))
                    row[f"{key}_se"] = (
                        float(np.std(vals, ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else 0.0
                    )
                out.append(row)
        return out

    def to_markdown(self) -> str:
        """A markdown table of :meth:`aggregate` (mean ± standard error over seeds)."""
        c = self.config
        lines = [
            f"Sweep: {c.agent} on {c.env_id}, {c.total_timesteps} training steps, seeds {list(c.seeds)}, "
            f"{c.n_eval_episodes} evaluation episodes per point, CVaR alpha={c.alpha}; backend {self.backend}, "
            f"{self.wall_seconds:.0f} s.",
            "",
            "| perturbation | risk_tolerance | mean return | CVaR | worst | failure rate | epistemic std |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.aggregate():
            lines.append(
                f"| {r['perturbation']} | {r['risk_tolerance']:g} | {r['mean']:.1f} ± {r['mean_se']:.1f} | "
                f"{r['cvar']:.1f} ± {r['cvar_se']:.1f} | {r['worst']:.1f} | {r['failure_rate']:.2f} | "
                f"{r['mean_epistemic_std']:.3f} |"
            )
        lines.append("")
        lines.append("± is the standard error over seeds.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready config, per-seed rows and the aggregate."""
        cfg = dataclasses.asdict(self.config)
        cfg["risk_tolerances"] = list(self.config.risk_tolerances)
        cfg["seeds"] = list(self.config.seeds)
        return {
            "config": cfg,
            "backend": self.backend,
            "wall_seconds": self.wall_seconds,
            "rows": self.rows,
            "aggregate": self.aggregate(),
        }

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``sweep.json`` (config, provenance, rows, aggregate), ``sweep.md`` and ``sweep.png``."""
        return write_report(out_dir, "sweep", self.to_dict(), markdown=self.to_markdown(), plot=plot_sweep)


def sweep(
    config: SweepConfig | None = None,
    *,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    out_dir: str | Path | None = None,
    save_checkpoints: bool = False,
    progress_bar: bool = False,
    connect_timeout: float = RAY_CONNECT_TIMEOUT,
    **overrides: Any,
) -> SweepResult:
    """Run a risk_tolerance x seed x perturbation sweep and return a :class:`SweepResult`.

    ``backend="local"`` runs one job per seed in ``workers`` processes (1 = in this process);
    ``backend="ray"`` runs each job as a Ray task, joining ``address`` (e.g. ``"auto"`` or
    ``"ray://host:10001"``) or starting a local Ray instance when it is ``None``. Keyword
    ``overrides`` set :class:`SweepConfig` fields. With ``out_dir`` the results are saved there.
    Everything is validated before any training starts; a Ray cluster that does not answer within
    ``connect_timeout`` seconds is a ConnectionError; Ctrl-C and SIGTERM stop every job (local worker
    processes are terminated, Ray tasks cancelled) and raise KeyboardInterrupt.
    """
    config = dataclasses.replace(config or SweepConfig(), **overrides)
    config.perturbations = tuple(
        p if isinstance(p, Perturbation) else Perturbation.parse(p) for p in config.perturbations
    )
    config.validate()
    check_backend(backend, workers, address, connect_timeout)  # before anything is created or trained
    ckpt = checkpoint_dir(out_dir, save_checkpoints)
    start = time.perf_counter()
    per_seed = run_jobs(
        run_sweep_job,
        [(config, int(s), ckpt) for s in config.seeds],
        backend=backend,
        workers=workers,
        address=address,
        progress_bar=progress_bar,
        desc="sweep (seeds)",
    )
    result = SweepResult(
        config=config,
        rows=[row for rows in per_seed for row in rows],
        backend=backend,
        wall_seconds=time.perf_counter() - start,
    )
    if out_dir is not None:
        result.save(out_dir)
    return result
