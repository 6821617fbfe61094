"""GPU readiness: riskrl's envs, ``evaluate``, BayesDQN and BayesMPC on CUDA, checked against the CPU.

Checks (each against the CPU, with the tolerance stated in the report):

* env parity: every batched env copied from a CPU env (its ``state_dict``) and stepped with the same
  actions for ``--parity-steps`` steps on the device; max |obs difference| <= ``ENV_TOL``
  (float64 dynamics, float32 observations, autoresets from the same hash key);
* ``evaluate``: a fixed linear policy evaluated on both devices from the same seeds; the mean
  returns agree within ``EVAL_TOL`` (relative) -- resets draw from each device's generator, so the
  episodes differ and only the statistics must agree; for CartPole the policy balances for the
  whole episode on both;
* agents: BayesDQN and BayesMPC trained briefly on the CPU, saved and loaded onto the device; Q-values
  (BayesDQN) and dynamics particles (BayesMPC) on the same inputs agree within ``NET_TOL``; then
  each agent trains for ``--agent-steps`` steps on the device (steps per second reported).

Throughput: env steps per second of CartPole-v1 and Pendulum-v1 (random actions, compiled step
where ``compile`` works) for ``--sizes`` envs (default 4096 to 1M on CUDA).

Without CUDA the script runs its CPU half (throughput and agent steps per second on the CPU; the
parity checks are reported as skipped), which ``--quick`` sizes for CI.

Usage:  python experiments/gpu_check.py [--device cuda] [--quick] [--out experiments/results/gpu_check]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from riskrl import evaluate
from riskrl.agents import BayesDQN, BayesMPC
from riskrl.envs import make_vec

RESULTS = Path(__file__).parent / "results"
ENV_IDS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1")
ENV_TOL = 1e-5
EVAL_TOL = 0.1
NET_TOL = 1e-4


def _random_actions(env: Any, n: int, generator: torch.Generator) -> torch.Tensor:
    space = env.single_action_space
    if hasattr(space, "n"):
        return torch.randint(int(space.start), int(space.start) + int(space.n), (n,), generator=generator)
    low = torch.as_tensor(space.low, dtype=torch.float32)
    high = torch.as_tensor(space.high, dtype=torch.float32)
    return low + (high - low) * torch.rand((n, *space.shape), generator=generator)


def env_parity(device: torch.device, n_envs: int, steps: int) -> dict[str, float]:
    """Max |obs difference| between a CPU env and its copy on ``device`` under the same actions."""
    out = {}
    for env_id in ENV_IDS:
        cpu = make_vec(env_id, num_envs=n_envs, device="cpu")
        dev = make_vec(env_id, num_envs=n_envs, device=device)
        cpu.reset(seed=0)
        dev.reset(seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the generator state is CPU-only
            dev.load_state_dict({k: v for k, v in cpu.state_dict().items()})
        g = torch.Generator().manual_seed(1)
        worst = 0.0
        for _ in range(steps):
            actions = _random_actions(cpu, n_envs, g)
            obs_c = cpu.step(actions)[0]
            obs_d = dev.step(actions.to(device))[0]
            worst = max(worst, float((torch.as_tensor(obs_c).double() - obs_d.cpu().double()).abs().max()))
        out[env_id] = worst
    return out


def _balance(obs: torch.Tensor) -> torch.Tensor:
    """A fixed linear CartPole policy (push towards the pole's lean)."""
    return (obs[:, 2] + 0.5 * obs[:, 3] > 0).long()


def evaluate_parity(device: torch.device, n_episodes: int) -> dict[str, float]:
    res = {}
    for name, dev in (("cpu", torch.device("cpu")), ("device", device)):
        r = evaluate(_balance, "CartPole-v1", n_episodes=n_episodes, seed=0, device=dev, bootstrap=False)
        res[name] = float(r.mean)
    res["relative_difference"] = abs(res["cpu"] - res["device"]) / max(abs(res["cpu"]), 1e-9)
    return res


def agent_parity(device: torch.device, train_steps: int) -> dict[str, float]:
    """Train on the CPU, load onto ``device``: max |difference| of Q-values / dynamics predictions."""
    out = {}
    obs = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        dqn = BayesDQN("CartPole-v1", seed=0, hidden=(64, 64), learning_starts=train_steps // 2).learn(
            train_steps
        )
        path = dqn.save(Path(tmp) / "dqn.riskrl")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            dqn_d = BayesDQN.load(path, device=device)
        _, mean_c, std_c = dqn.predict_with_uncertainty(obs)
        _, mean_d, std_d = dqn_d.predict_with_uncertainty(obs.to(device))
        out["BayesDQN_q_mean"] = float((mean_c - mean_d.cpu()).abs().max())
        out["BayesDQN_q_std"] = float((std_c - std_d.cpu()).abs().max())
        mpc = BayesMPC(
            "Pendulum-v1",
            seed=0,
            learning_starts=train_steps // 2,
            retrain_interval=train_steps,
            horizon=5,
            population=32,
        )
        mpc.learn(train_steps)
        path = mpc.save(Path(tmp) / "mpc.riskrl")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mpc_d = BayesMPC.load(path, device=device)
        x = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            p_c = mpc.model.particles(5)(x)
            p_d = mpc_d.model.particles(5)(x.to(device))
        out["BayesMPC_dynamics"] = float((p_c - p_d.cpu()).abs().max())
    return out


def env_throughput(
    device: torch.device, sizes: list[int], steps: int, compile_step: bool
) -> list[dict[str, Any]]:
    rows = []
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        for n in sizes:
            env = make_vec(env_id, num_envs=n, device=device, compile=compile_step)
            env.reset(seed=0)
            actions = _random_actions(env, n, torch.Generator().manual_seed(0)).to(device)
            for _ in range(3):  # warm-up (compilation, caches)
                env.step(actions)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                env.step(actions)
            _sync(device)
            dt = time.perf_counter() - t0
            rows.append({"env_id": env_id, "num_envs": n, "steps_per_second": n * steps / dt})
    return rows


def agent_throughput(device: torch.device, steps: int, quick: bool = False) -> list[dict[str, Any]]:
    rows = []
    small_mpc = dict(horizon=5, population=32, n_elites=4, train_epochs=1) if quick else {}
    for name, make in (
        (
            "BayesDQN (256, 256), 1 env",
            lambda: BayesDQN("CartPole-v1", seed=0, device=device, learning_starts=100),
        ),
        (
            "BayesDQN shared torso, 16 envs, utd 1",
            lambda: BayesDQN(
                "CartPole-v1",
                seed=0,
                device=device,
                learning_starts=100,
                shared_torso=True,
                num_envs=16,
                utd_ratio=1.0,
            ),
        ),
        (
            "BayesMPC Pendulum" + (" (tiny planner)" if quick else " defaults"),
            lambda: BayesMPC("Pendulum-v1", seed=0, device=device, learning_starts=50, **small_mpc),
        ),
    ):
        agent = make()
        agent.learn(
            max(60 if quick else 100, agent.env.num_envs)
        )  # past learning_starts: planning / training from here on
        _sync(device)
        t0 = time.perf_counter()
        agent.learn(steps)
        _sync(device)
        rows.append({"agent": name, "env_steps_per_second": steps / (time.perf_counter() - t0)})
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(device: str, quick: bool = False) -> dict[str, Any]:
    """Run the checks on ``device`` (the CPU half only when it is the CPU); return the results."""
    dev = torch.device(device)
    on_gpu = dev.type != "cpu"
    sizes = [64, 256] if quick else ([4096, 16384, 65536, 262144, 1048576] if on_gpu else [4096, 65536])
    result: dict[str, Any] = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "quick": quick,
        "tolerances": {"env_obs": ENV_TOL, "evaluate_relative": EVAL_TOL, "networks": NET_TOL},
        "env_throughput": env_throughput(dev, sizes, 3 if quick else 50, compile_step=not quick),
        "agent_throughput": agent_throughput(dev, 20 if quick else 1000, quick),
    }
    if on_gpu:
        result["env_parity"] = env_parity(dev, 256, 300)
        result["evaluate_parity"] = evaluate_parity(dev, 200)
        result["agent_parity"] = agent_parity(dev, 400)
        result["passed"] = bool(
            max(result["env_parity"].values()) <= ENV_TOL
            and result["evaluate_parity"]["relative_difference"] <= EVAL_TOL
            and max(result["agent_parity"].values()) <= NET_TOL
        )
    else:
        result["parity"] = "skipped: no CUDA device (CPU half only)"
        result["passed"] = all(r["steps_per_second"] > 0 for r in result["env_throughput"])
    return result


def write_report(result: dict[str, Any], stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    lines = [
        f"# GPU check ({result['device_name']}, torch {result['torch']})",
        "",
        f"Written by `experiments/gpu_check.py` at commit `{result.get('commit', 'unknown')}`. Passed: **{result['passed']}**.",
        "",
        "| env | envs | steps / s |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r['env_id']} | {r['num_envs']} | {r['steps_per_second']:.3g} |" for r in result["env_throughput"]
    ]
    lines += ["", "| agent | env steps / s |", "|---|---|"]
    lines += [f"| {r['agent']} | {r['env_steps_per_second']:.1f} |" for r in result["agent_throughput"]]
    if "env_parity" in result:
        tol = result["tolerances"]
        lines += ["", f"Env parity (max |obs diff|, tolerance {tol['env_obs']}): {result['env_parity']}"]
        lines += [
            f"evaluate parity (relative tolerance {tol['evaluate_relative']}): {result['evaluate_parity']}"
        ]
        lines += [f"Agent parity (max |diff|, tolerance {tol['networks']}): {result['agent_parity']}"]
    else:
        lines += ["", result["parity"]]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="CI-sized: tiny env counts and step budgets")
    parser.add_argument("--out", default=str(RESULTS / "gpu_check"))
    args = parser.parse_args(argv)
    result = run(args.device, quick=args.quick)
    try:
        result["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        result["commit"] = "unknown"
    write_report(result, Path(args.out))
    print(Path(args.out).with_suffix(".md").read_text())
    return result


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
