"""riskrl agents vs stable-baselines3 baselines at equal environment-step budgets.

Every run trains one algorithm with one seed, evaluating it every ``eval_every`` environment steps
with riskrl's :class:`~riskrl.agents.EvalCallback` (``freq_unit="timesteps"``, i.e.
:func:`riskrl.evaluate` on the same batched environment: the learning curve), then once more at the
end under nominal and shifted dynamics. SB3 algorithms use rl-baselines3-zoo hyperparameters
(:data:`SB3_ZOO`) and train on riskrl's environments through :class:`riskrl.envs.SB3VecEnv`. Runs
go through :func:`riskrl.executor.run_jobs` (local processes or Ray) and the results through
:func:`riskrl.results.write_results`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import stable_baselines3 as sb3
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise

from riskrl.agents import EvalCallback, agent_class
from riskrl.envs import SB3VecEnv, make_vec
from riskrl.envs.perturbation import Perturbation
from riskrl.evaluation import evaluate
from riskrl.executor import RAY_CONNECT_TIMEOUT, check_backend, checkpoint_dir, one_torch_thread, run_jobs
from riskrl.plotting import plot_learning_curves
from riskrl.results import write_report

__all__ = ["SB3_ZOO", "BenchConfig", "BenchResult", "bench", "make_sb3_model", "run_bench_job"]

# rl-baselines3-zoo hyperparameters (hyperparams/*.yml), as (n_envs, constructor kwargs). A string
# "lin_X" is the zoo's linear schedule from X down to 0 over training; ``noise_type``/``noise_std``
# are the zoo's action-noise keys (made into SB3's ``action_noise`` by make_sb3_model).
# tests/test_zoo.py checks every entry against rl_zoo3's own files.
SB3_ZOO: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {
    ("DQN", "CartPole-v1"): (
        1,
        dict(
            learning_rate=2.3e-3,
            batch_size=64,
            buffer_size=100_000,
            learning_starts=1000,
            gamma=0.99,
            target_update_interval=10,
            train_freq=256,
            gradient_steps=128,
            exploration_fraction=0.16,
            exploration_final_eps=0.04,
            policy_kwargs=dict(net_arch=[256, 256]),
        ),
    ),
    ("PPO", "CartPole-v1"): (
        8,
        dict(
            n_steps=32,
            batch_size=256,
            gae_lambda=0.8,
            gamma=0.98,
            n_epochs=20,
            ent_coef=0.0,
            learning_rate="lin_0.001",
            clip_range="lin_0.2",
        ),
    ),
    ("A2C", "CartPole-v1"): (8, dict(ent_coef=0.0)),
    # Acrobot-v1: the zoo's PPO entry also normalises observations (VecNormalize); left out here, so a
    # model acts on raw observations and riskrl.evaluate can evaluate it like every other policy.
    ("DQN", "Acrobot-v1"): (
        1,
        dict(
            learning_rate=6.3e-4,
            batch_size=128,
            buffer_size=50_000,
            learning_starts=0,
            gamma=0.99,
            target_update_interval=250,
            train_freq=4,
            gradient_steps=-1,
            exploration_fraction=0.12,
            exploration_final_eps=0.1,
            policy_kwargs=dict(net_arch=[256, 256]),
        ),
    ),
    ("PPO", "Acrobot-v1"): (16, dict(n_steps=256, gae_lambda=0.94, gamma=0.99, n_epochs=4, ent_coef=0.0)),
    ("SAC", "Pendulum-v1"): (1, dict(learning_rate=1e-3)),
    ("TD3", "Pendulum-v1"): (
        1,
        dict(
            learning_rate=1e-3,
            learning_starts=10_000,
            gamma=0.98,
            buffer_size=200_000,
            noise_type="normal",
            noise_std=0.1,
            gradient_steps=1,
            train_freq=1,
            policy_kwargs=dict(net_arch=[400, 300]),
        ),
    ),
    ("PPO", "Pendulum-v1"): (
        4,
        dict(
            n_steps=1024,
            gae_lambda=0.95,
            gamma=0.9,
            n_epochs=10,
            ent_coef=0.0,
            learning_rate=1e-3,
            clip_range=0.2,
            use_sde=True,
            sde_sample_freq=4,
        ),
    ),
    ("SAC", "MountainCarContinuous-v0"): (
        1,
        dict(
            learning_rate=3e-4,
            buffer_size=50_000,
            batch_size=512,
            ent_coef=0.1,
            train_freq=32,
            gradient_steps=32,
            gamma=0.9999,
            tau=0.01,
            learning_starts=0,
            use_sde=True,
            policy_kwargs=dict(log_std_init=-3.67, net_arch=[64, 64], use_expln=True),
        ),
    ),
}


def _linear_schedule(start: float) -> Any:
    return lambda progress_remaining: progress_remaining * start


def make_sb3_model(algo: str, env_id: str, seed: int, env: Any = None) -> Any:
    """A stable-baselines3 ``algo`` ("DQN", "PPO", "SAC", ...) with the zoo hyperparameters for
    ``env_id``. ``env`` defaults to gymnasium's own env (``make_vec_env`` with the zoo's n_envs);
    pass e.g. ``SB3VecEnv(make_vec(env_id, n, autoreset_mode=SAME_STEP))`` to train on riskrl's envs.
    """
    if (algo, env_id) not in SB3_ZOO:
        known = sorted(f"{a} on {e}" for a, e in SB3_ZOO)
        raise ValueError(f"no zoo hyperparameters for {algo} on {env_id}; known: {known}")
    n_envs, zoo = SB3_ZOO[(algo, env_id)]
    zoo = copy.deepcopy(zoo)  # SB3 writes into policy_kwargs; keep the table pristine
    kwargs = {
        k: _linear_schedule(float(v[4:])) if isinstance(v, str) and v.startswith("lin_") else v
        for k, v in zoo.items()
    }
    if env is None:
        env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    noise_type, noise_std = kwargs.pop("noise_type", None), kwargs.pop("noise_std", None)
    if noise_type is not None:
        if noise_type != "normal":
            raise ValueError(f"unsupported zoo noise_type {noise_type!r} (only 'normal')")
        dim = int(np.prod(env.action_space.shape))
        kwargs["action_noise"] = NormalActionNoise(np.zeros(dim), float(noise_std) * np.ones(dim))
    return getattr(sb3, algo)("MlpPolicy", env, seed=int(seed), device="cpu", verbose=0, **kwargs)


@dataclasses.dataclass
class BenchConfig:
    """A benchmark: ``algos`` are riskrl agent names (``"BayesDQN"``) or ``"sb3:DQN"`` style names."""

    env_id: str = "CartPole-v1"
    algos: Sequence[str] = ("BayesDQN", "sb3:DQN")
    seeds: Sequence[int] = (0, 1, 2)
    total_timesteps: int = 20_000
    eval_every: int = 2_000
    n_eval_episodes: int = 20
    final_eval_episodes: int = 100
    shift: Perturbation = dataclasses.field(default_factory=lambda: Perturbation("shifted", {}))
    risk_tolerance: float = 0.0
    agent_kwargs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    eval_seed: int = 10_000
    #: domain randomization of the training envs (riskrl agents and SB3 alike): ``{name: (low, high)}``
    randomize: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        """Raise ValueError naming the first problem with this configuration."""
        if not self.algos or not self.seeds:
            raise ValueError("algos and seeds must not be empty")
        for algo in self.algos:
            if algo.startswith("sb3:"):
                name = algo[4:]
                if (name, self.env_id) not in SB3_ZOO:
                    known = sorted(f"sb3:{a}" for a, e in SB3_ZOO if e == self.env_id)
                    raise ValueError(f"no zoo hyperparameters for {algo} on {self.env_id}; known: {known}")
            else:
                agent_class(algo)
        if int(self.total_timesteps) < 1 or int(self.eval_every) < 1:
            raise ValueError("total_timesteps and eval_every must be >= 1")
        if self.randomize:
            make_vec(self.env_id, num_envs=1, randomize=self.randomize)  # ValueError naming a bad range


def _eval(policy: Any, cfg: BenchConfig, n: int, perturb: dict[str, Any] | None = None) -> dict[str, float]:
    res = evaluate(policy, cfg.env_id, n_episodes=n, seed=cfg.eval_seed, perturb=perturb, bootstrap=False)
    return {"mean": res.mean, "std": res.std, "cvar": res.cvar, "failure_rate": res.failure_rate}


def run_bench_job(
    cfg: BenchConfig, algo: str, seed: int, checkpoint_dir: str | None = None
) -> dict[str, Any]:
    """Train ``algo`` with ``seed``; return its learning curve, final results and wall-clock.

    With ``checkpoint_dir`` a trained riskrl agent is saved there as ``<algo>_seed<seed>.riskrl``.
    Runs on one torch thread.
    """
    with one_torch_thread():
        return _run_bench_job(cfg, algo, seed, checkpoint_dir)


def _run_bench_job(cfg: BenchConfig, algo: str, seed: int, checkpoint_dir: str | None) -> dict[str, Any]:
    start = time.perf_counter()
    # riskrl agents take SB3 callbacks, so one evaluator serves both kinds
    curve_cb = EvalCallback(
        cfg.env_id,
        n_eval_episodes=int(cfg.n_eval_episodes),
        eval_freq=int(cfg.eval_every),
        freq_unit="timesteps",
        seed=int(cfg.eval_seed),
        verbose=0,
    )
    if algo.startswith("sb3:"):
        name = algo[4:]
        n_envs = SB3_ZOO[(name, cfg.env_id)][0]
        venv = SB3VecEnv(
            make_vec(
                cfg.env_id,
                num_envs=n_envs,
                autoreset_mode=AutoresetMode.SAME_STEP,
                randomize=cfg.randomize or None,
            )
        )
        policy: Any = make_sb3_model(name, cfg.env_id, seed, env=venv)
    else:
        kwargs = cfg.agent_kwargs.get(algo, {})
        env: Any = cfg.env_id
        if cfg.randomize:
            env = make_vec(cfg.env_id, num_envs=int(kwargs.get("num_envs", 1)), randomize=cfg.randomize)
        policy = agent_class(algo)(env, risk_tolerance=cfg.risk_tolerance, seed=int(seed), **kwargs)
    policy.learn(int(cfg.total_timesteps), callback=curve_cb)
    train_seconds = time.perf_counter() - start - curve_cb.eval_seconds
    curve = [
        {
            "timestep": h["timestep"],
            "mean": h["mean_return"],
            "std": h["std_return"],
            "cvar": h["cvar"],
            "failure_rate": h.get("failure_rate", math.nan),
        }
        for h in curve_cb.history
    ]
    checkpoint = None
    if checkpoint_dir is not None and not algo.startswith("sb3:"):
        checkpoint = str(
            policy.save(Path(checkpoint_dir) / f"{algo}_seed{seed}.riskrl", include_training_state=False)
        )
    return {
        "algo": algo,
        "seed": int(seed),
        "curve": curve,
        "final": _eval(policy, cfg, cfg.final_eval_episodes),
        "final_shifted": _eval(policy, cfg, cfg.final_eval_episodes, cfg.shift.params)
        if cfg.shift.params
        else None,
        "train_seconds": train_seconds,
        "checkpoint": checkpoint,
    }


@dataclasses.dataclass
class BenchResult:
    """All runs of a benchmark (one per algorithm x seed) with summaries, tables and files."""

    config: BenchConfig
    runs: list[dict[str, Any]]

    def summary(self) -> list[dict[str, Any]]:
        """Per algorithm: final return mean and standard error over seeds, shifted results, time."""
        out = []
        for algo in self.config.algos:
            runs = [r for r in self.runs if r["algo"] == algo]
            final = np.array([r["final"]["mean"] for r in runs])
            row = {
                "algo": algo,
                "n_seeds": len(runs),
                "final_mean": float(final.mean()),
                "final_sd": float(final.std(ddof=1)) if len(final) > 1 else 0.0,
                "final_se": float(final.std(ddof=1) / np.sqrt(len(final))) if len(final) > 1 else 0.0,
                "final_per_seed": final.tolist(),
                "train_seconds": float(np.mean([r["train_seconds"] for r in runs])),
            }
            if runs and runs[0]["final_shifted"] is not None:
                shifted = np.array([r["final_shifted"]["mean"] for r in runs])
                row["shifted_mean"] = float(shifted.mean())
                row["shifted_cvar"] = float(np.mean([r["final_shifted"]["cvar"] for r in runs]))
            out.append(row)
        return out

    def to_markdown(self) -> str:
        """A markdown table of :meth:`summary`."""
        c = self.config
        shift = ", ".join(f"{k}={v:g}" for k, v in c.shift.params.items()) or "none"
        lines = [
            f"Benchmark on {c.env_id}: {c.total_timesteps} environment steps per run, seeds {list(c.seeds)}, "
            f"final evaluation over {c.final_eval_episodes} episodes; shifted dynamics: {shift}.",
            "",
            "| algorithm | final return (mean ± SD over seeds) | per seed | shifted return | shifted CVaR_0.1 | train time (s) |",
            "|---|---:|---|---:|---:|---:|",
        ]
        for r in self.summary():
            seeds = ", ".join(f"{v:.0f}" for v in r["final_per_seed"])
            sh = f"{r['shifted_mean']:.1f}" if "shifted_mean" in r else "-"
            sc = f"{r['shifted_cvar']:.1f}" if "shifted_cvar" in r else "-"
            lines.append(
                f"| {r['algo']} | {r['final_mean']:.1f} ± {r['final_sd']:.1f} | {seeds} | {sh} | {sc} | "
                f"{r['train_seconds']:.0f} |"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready config, runs (with learning curves) and summary."""
        cfg = dataclasses.asdict(self.config)
        cfg["algos"], cfg["seeds"] = list(self.config.algos), list(self.config.seeds)
        return {"config": cfg, "runs": self.runs, "summary": self.summary()}

    def save(self, out_dir: str | Path, stem: str = "bench") -> dict[str, Path]:
        """Write ``<stem>.json`` (config, provenance, runs, summary), ``<stem>.md`` and ``<stem>.png``."""
        return write_report(
            out_dir, stem, self.to_dict(), markdown=self.to_markdown(), plot=plot_learning_curves
        )


def bench(
    config: BenchConfig | None = None,
    *,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    out_dir: str | Path | None = None,
    save_checkpoints: bool = False,
    progress_bar: bool = False,
    connect_timeout: float = RAY_CONNECT_TIMEOUT,
    **overrides: Any,
) -> BenchResult:
    """Run every (algo, seed) of the benchmark and save it to ``out_dir`` (when given).

    The runs go through :func:`riskrl.executor.run_jobs`: ``backend="local"`` in ``workers``
    processes (1 = in this process), ``backend="ray"`` as Ray tasks on the cluster at ``address``
    (``None``: a local Ray instance). With ``save_checkpoints`` (needs ``out_dir``) trained riskrl
    agents go to ``out_dir/checkpoints``.
    """
    cfg = dataclasses.replace(config or BenchConfig(), **overrides)
    if not isinstance(cfg.shift, Perturbation):
        cfg.shift = Perturbation.parse(cfg.shift)
    cfg.validate()
    check_backend(backend, workers, address, connect_timeout)
    ckpt = checkpoint_dir(out_dir, save_checkpoints)
    runs = run_jobs(
        run_bench_job,
        [(cfg, algo, int(s), ckpt) for algo in cfg.algos for s in cfg.seeds],
        backend=backend,
        workers=workers,
        address=address,
        progress_bar=progress_bar,
        desc="bench runs",
    )
    result = BenchResult(cfg, runs)
    if out_dir is not None:
        result.save(out_dir)
    return result
