"""How good can BayesMPC's planner be on Pendulum-v1? The same CEM planner with the *exact* dynamics.

``bench_agents_mpc.py`` evaluates a learnt BayesMPC on ``riskrl.evaluate(agent, "Pendulum-v1",
n_episodes=N, seed=10000 + seed)``. Some start states (hanging down, at rest) cost a lot even for a
perfect controller, so a per-seed mean over a few episodes says as much about the starts as about the
agent. This script scores the planner with the true pendulum equations in place of the model on the
very same starts: the gap between a learnt agent and this ceiling is what model error costs.

Usage:  python experiments/pendulum_planner_ceiling.py [--seeds 5] [--episodes 20]
Writes: experiments/results/pendulum_planner_ceiling.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_agents_mpc import PENDULUM_MPC

RESULTS = Path(__file__).parent / "results"


def exact_returns(
    obs: torch.Tensor, actions: torch.Tensor, g: float = 10.0, dt: float = 0.05
) -> torch.Tensor:
    """Returns ``(1, B, C)`` of action sequences ``(B, C, H, 1)`` under Pendulum-v1's own equations."""
    b, c, h = actions.shape[:3]
    th = torch.atan2(obs[:, 1], obs[:, 0]).repeat_interleave(c)
    thdot = obs[:, 2].repeat_interleave(c)
    u = actions.reshape(b * c, h).clamp(-2.0, 2.0)
    total = torch.zeros(b * c)
    for t in range(h):
        wrapped = (th + torch.pi) % (2 * torch.pi) - torch.pi
        total -= wrapped.square() + 0.1 * thdot.square() + 0.001 * u[:, t].square()
        thdot = (thdot + (1.5 * g * torch.sin(th) + 3.0 * u[:, t]) * dt).clamp(-8.0, 8.0)
        th = th + thdot * dt
    return total.reshape(1, b, c)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--episodes", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(1)
    import riskrl
    from riskrl.agents import BayesMPC

    rows = []
    for seed in range(args.seeds):
        agent = BayesMPC("Pendulum-v1", seed=seed, **PENDULUM_MPC)
        agent.trained = True  # never trained: the planner only ever sees the exact dynamics
        agent._rollout = lambda obs, actions, generator, disagreement: (exact_returns(obs, actions), None)
        t0 = time.time()
        res = riskrl.evaluate(agent, "Pendulum-v1", n_episodes=args.episodes, seed=10_000 + seed)
        rows.append({"seed": seed, "mean": res.mean, "returns": [float(r) for r in res.returns]})
        print(f"seed {seed}: {res.mean:.1f} ({time.time() - t0:.0f}s)", flush=True)
    means = torch.tensor([r["mean"] for r in rows])
    RESULTS.mkdir(exist_ok=True)
    out = {"planner": PENDULUM_MPC, "episodes": args.episodes, "runs": rows}
    (RESULTS / "pendulum_planner_ceiling.json").write_text(json.dumps(out, indent=1))
    lines = [
        "# Pendulum-v1: BayesMPC's planner with the exact dynamics (the ceiling for a learnt model)",
        "",
        f"Planner {PENDULUM_MPC}; evaluation `riskrl.evaluate(agent, 'Pendulum-v1', n_episodes={args.episodes}, "
        "seed=10000 + seed)`, the same starts as `bench_agents_mpc.py` with the same episode count.",
        "",
        "| seed | mean return | worst episode |",
        "|---|---|---|",
        *[f"| {r['seed']} | {r['mean']:.1f} | {min(r['returns']):.1f} |" for r in rows],
        "",
        f"Mean over seeds: {means.mean():.1f} ± {means.std(correction=0):.1f}.",
        "",
    ]
    (RESULTS / "pendulum_planner_ceiling.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
