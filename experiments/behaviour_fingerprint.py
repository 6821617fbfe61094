"""Behaviour fingerprint: do refactors leave training and evaluation bit-for-bit unchanged?

Runs short, fully seeded versions of everything the benchmarks exercise (BayesDQN in each posterior
family, several envs and SAME_STEP autoreset, BayesMPC with each model family and a terminal value,
``fit`` for regression and classification, offline learning, ``evaluate`` under a perturbation) and
records a SHA-256 of every resulting network's weights plus a few returns. Two code versions whose
fingerprints agree train and evaluate identically, so results measured with one stand for the other.

    python experiments/behaviour_fingerprint.py                       # writes experiments/results/fingerprint/<commit>.json
    python experiments/behaviour_fingerprint.py --compare experiments/results/fingerprint/OLD.json

One torch thread (bit-identity across thread counts is not promised by torch). About 2 minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from riskrl import evaluate
from riskrl.agents import BayesDQN, BayesMPC
from riskrl.bayes import BayesMLP, fit
from riskrl.data import collect
from riskrl.envs import make_vec
from riskrl.results import code_version, write_results

RESULTS = Path(__file__).resolve().parent / "results" / "fingerprint"


def digest(*modules: torch.nn.Module) -> str:
    """SHA-256 over every tensor of the modules' state dicts, in key order."""
    h = hashlib.sha256()
    for module in modules:
        for key, value in sorted(module.state_dict().items()):
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def returns_of(policy: Any, env_id: str, **kw: Any) -> list[float]:
    res = evaluate(policy, env_id, n_episodes=kw.pop("n_episodes", 10), seed=123, num_envs=5, **kw)
    return [round(float(r), 6) for r in res.returns]


def dqn_case(**cfg: Any) -> Callable[[], dict[str, Any]]:
    def run() -> dict[str, Any]:
        env_kw = cfg.pop("env_kwargs", None)
        steps = cfg.pop("steps", 2000)
        env: Any = "CartPole-v1"
        if env_kw:
            env = make_vec("CartPole-v1", num_envs=cfg.get("num_envs", 1), **env_kw)
        agent = BayesDQN(env, seed=0, learning_starts=300, **cfg)
        agent.learn(steps)
        return {"weights": digest(agent.q_net), "returns": returns_of(agent, "CartPole-v1")}

    return run


def mpc_case(env_id: str, steps: int, **cfg: Any) -> Callable[[], dict[str, Any]]:
    def run() -> dict[str, Any]:
        small = {"horizon": 8, "population": 40, "n_elites": 8, "cem_iterations": 2, "train_epochs": 3}
        agent = BayesMPC(env_id, seed=0, learning_starts=100, retrain_interval=100, **{**small, **cfg})
        agent.learn(steps)
        mods = [agent.model] + ([agent.value.net] if agent.value is not None else [])
        return {"weights": digest(*mods), "returns": returns_of(agent, env_id, n_episodes=5)}

    return run


def fit_case(family: str, likelihood: str) -> dict[str, Any]:
    torch.manual_seed(0)  # the model's initial weights come from torch's global generator
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 3, generator=g) * 4 - 2
    if likelihood == "gaussian":
        y = torch.sin(x.sum(1, keepdim=True)) + 0.1 * torch.randn(256, 1, generator=g)
        model = BayesMLP(3, 1, hidden=(32, 32), family=family, heteroscedastic=True)
    else:
        y = (x[:, 0] > x[:, 1]).long() + (x[:, 2] > 0.5).long()
        model = BayesMLP(3, 3, hidden=(32, 32), family=family, likelihood="categorical")
    hist = fit(model, x, y, epochs=5, batch_size=32, seed=1)
    pred = model.predict(x[:8], n_samples=8, generator=torch.Generator().manual_seed(2))
    mean = pred.mean if hasattr(pred, "mean") else pred.probs
    return {
        "weights": digest(model),
        "final_loss": round(hist.final_loss, 5),
        "pred_mean": hashlib.sha256(mean.numpy().tobytes()).hexdigest()[:16],
    }


def offline_case(kind: str) -> dict[str, Any]:
    if kind == "dqn":
        data = collect("random", "CartPole-v1", 1500, seed=0, num_envs=2)
        agent: Any = BayesDQN("CartPole-v1", seed=0, hidden=(32, 32))
        agent.learn_offline(data, 300)
        return {"weights": digest(agent.q_net), "returns": returns_of(agent, "CartPole-v1")}
    data = collect("random", "Pendulum-v1", 600, seed=0)
    agent = BayesMPC(
        "Pendulum-v1", seed=0, horizon=8, population=40, n_elites=8, cem_iterations=2, terminal_value=True
    )
    agent.learn_offline(data, 200)
    return {
        "weights": digest(agent.model, agent.value.net),
        "returns": returns_of(agent, "Pendulum-v1", n_episodes=5),
    }


CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "dqn_ensemble_default": dqn_case(steps=2500),
    "dqn_bbb": dqn_case(family="bbb", hidden=(32, 32), n_particles=4),
    "dqn_mc_dropout": dqn_case(family="mc_dropout", hidden=(32, 32), n_particles=4),
    "dqn_shared_torso_ucb": dqn_case(shared_torso=True, exploration="ucb", hidden=(64, 64)),
    "dqn_4envs_utd": dqn_case(num_envs=4, utd_ratio=0.25, n_step=3, hidden=(64, 64)),
    "dqn_same_step": dqn_case(hidden=(32, 32), env_kwargs={"autoreset_mode": "SameStep"}),
    "mpc_ensemble": mpc_case("Pendulum-v1", 400),
    "mpc_bbb": mpc_case("Pendulum-v1", 300, family="bbb"),
    "mpc_mc_dropout": mpc_case("Pendulum-v1", 300, family="mc_dropout"),
    "mpc_value_2envs": mpc_case(
        "MountainCarContinuous-v0", 400, terminal_value=True, value_steps=50, num_envs=2
    ),
    "mpc_discrete": mpc_case("CartPole-v1", 300),
    "fit_gaussian_ensemble": lambda: fit_case("ensemble", "gaussian"),
    "fit_gaussian_bbb": lambda: fit_case("bbb", "gaussian"),
    "fit_gaussian_mc_dropout": lambda: fit_case("mc_dropout", "gaussian"),
    "fit_categorical_ensemble": lambda: fit_case("ensemble", "categorical"),
    "fit_categorical_bbb": lambda: fit_case("bbb", "categorical"),
    "offline_dqn": lambda: offline_case("dqn"),
    "offline_mpc_value": lambda: offline_case("mpc"),
    "evaluate_heuristic_perturbed": lambda: {
        "returns": returns_of(
            lambda obs: (obs[:, 2] + 0.5 * obs[:, 3] > 0).long(),
            "CartPole-v1",
            n_episodes=20,
            perturb={"length": 1.7, "masspole": 0.3},
        )
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", type=Path, help="an earlier fingerprint JSON to compare with")
    parser.add_argument("--only", nargs="*", help="run only these cases")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    for name, case in CASES.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        out[name] = case()
        print(f"{name:32s} {time.perf_counter() - t0:6.1f} s  {out[name].get('weights', '')}", flush=True)
    version = code_version()
    stem = (version["git_commit"] or "nogit")[:7] + ("-dirty" if version["git_dirty"] else "")
    if not args.only:
        write_results(RESULTS, stem, {"cases": out}, config={"cases": list(CASES), "torch_threads": 1})
    if args.compare:
        old = json.loads(args.compare.read_text())["cases"]
        same = [k for k in out if k in old and old[k] == out[k]]
        diff = [k for k in out if k in old and old[k] != out[k]]
        print(f"\nidentical to {args.compare.name}: {len(same)}/{len(same) + len(diff)}")
        for k in diff:
            print(f"  DIFFERS {k}: {old[k]} -> {out[k]}")
        if diff:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
