"""BayesMPC vs stable-baselines3 SAC / PPO on continuous control, at equal environment-step budgets.

This adds the model-based entries to ``experiments/bench_agents.py`` (same runner, same evaluation
with :func:`riskrl.evaluate` on riskrl's batched envs, same JSON / markdown / PNG output) and runs
them through its command line:

* Pendulum-v1: BayesMPC (risk-neutral) vs SAC and PPO with rl-baselines3-zoo hyperparameters;
  shifted dynamics = pendulum mass x1.3.
* MountainCarContinuous-v0: BayesMPC with an optimistic ``risk_tolerance`` (plans scored by
  ``mean + |k| * std`` of the predicted return: an exploration bonus where the model is unsure),
  alone or with the state-disagreement bonus (``w=1``) and the learnt terminal value (``V``), vs
  SAC (zoo hyperparameters); shifted dynamics = engine power x0.85.

Usage:  python experiments/bench_agents_mpc.py --envs Pendulum-v1 --steps 5000 --seeds 3 \
            --eval-every 1000 --eval-episodes 5 --out bench_agents_mpc_pendulum
        python experiments/bench_agents_mpc.py --envs MountainCarContinuous-v0 --steps 10000 ...
(all flags are ``bench_agents.py``'s; ``--algos`` picks e.g. ``BayesMPC,SB3-SAC``), and
        python experiments/bench_agents_mpc.py --merge a.json,b.json --out OUT --notes "..."  (one
        report from several runs, e.g. one process per algorithm on a 2-core machine).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import bench_agents as bench

# BayesMPC defaults that matter for these runs (see riskrl.agents.BayesMPCConfig for the rest).
PENDULUM_MPC: dict[str, Any] = {
    "learning_starts": 200,  # one random episode
    "retrain_interval": 200,  # retrain once per episode
    "horizon": 25,  # H=15 leaves some hanging-down starts stuck at the max-torque equilibrium
    "population": 200,
    "n_elites": 20,
    "cem_iterations": 4,
    "n_particles": 5,
}
MCC_MPC: dict[str, Any] = {
    "learning_starts": 1000,
    "retrain_interval": 1000,
    "horizon": 30,
    "population": 150,
    "n_elites": 15,
    "cem_iterations": 3,
    "n_particles": 5,
}
MCC_OPTIMISM = -5.0


def make_bayes_mpc(
    env_id: str, seed: int, total_steps: int, risk_tolerance: float = 0.0, **hyperparams: Any
) -> Any:
    from riskrl.agents import BayesMPC

    return BayesMPC(env_id, risk_tolerance=risk_tolerance, seed=seed, **hyperparams)


def make_sb3_sac(env_id: str, seed: int, total_steps: int) -> Any:
    """rl-baselines3-zoo hyperparams/sac.yml (riskrl.benchmark.SB3_ZOO), on gymnasium's env."""
    from riskrl.benchmark import make_sb3_model

    return make_sb3_model("SAC", env_id, seed)


def make_sb3_ppo_pendulum(env_id: str, seed: int, total_steps: int) -> Any:
    """rl-baselines3-zoo hyperparams/ppo.yml, Pendulum-v1 (4 envs, gSDE), on gymnasium's env."""
    from riskrl.benchmark import make_sb3_model

    return make_sb3_model("PPO", env_id, seed)


MPC_RUNS = [
    bench.Entry("Pendulum-v1", "BayesMPC", functools.partial(make_bayes_mpc, **PENDULUM_MPC), "riskrl"),
    bench.Entry("Pendulum-v1", "SB3-SAC", make_sb3_sac, "sb3"),
    bench.Entry("Pendulum-v1", "SB3-PPO", make_sb3_ppo_pendulum, "sb3"),
    bench.Entry(
        "MountainCarContinuous-v0",
        f"BayesMPC(k={MCC_OPTIMISM:g})",
        functools.partial(make_bayes_mpc, risk_tolerance=MCC_OPTIMISM, **MCC_MPC),
        "riskrl",
    ),
    bench.Entry(
        "MountainCarContinuous-v0", "BayesMPC(k=0)", functools.partial(make_bayes_mpc, **MCC_MPC), "riskrl"
    ),
    bench.Entry(
        "MountainCarContinuous-v0",
        f"BayesMPC(k={MCC_OPTIMISM:g} w=1 V)",
        functools.partial(
            make_bayes_mpc,
            risk_tolerance=MCC_OPTIMISM,
            disagreement_weight=1.0,
            terminal_value=True,
            **MCC_MPC,
        ),
        "riskrl",
    ),
    bench.Entry("MountainCarContinuous-v0", "SB3-SAC", make_sb3_sac, "sb3"),
]


def register() -> None:
    """Add the BayesMPC entries, shifts and zoo budgets to ``bench_agents`` (idempotent)."""
    have = {(e.env_id, e.algo) for e in bench.RUNS}
    bench.RUNS.extend(e for e in MPC_RUNS if (e.env_id, e.algo) not in have)
    bench.SHIFTS.setdefault("Pendulum-v1", {"m": 1.3})
    bench.SHIFTS.setdefault("MountainCarContinuous-v0", {"power": 0.0015 * 0.85})
    bench.ZOO_BUDGETS.setdefault("SB3-SAC", 20_000)
    bench.ZOO_BUDGETS.setdefault("SB3-PPO", 100_000)


register()


if __name__ == "__main__":
    if "--envs" not in sys.argv:
        sys.argv += ["--envs", "Pendulum-v1,MountainCarContinuous-v0"]
    bench.main()
