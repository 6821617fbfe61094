"""Reference offline datasets, built deterministically from seeds (never downloaded).

Kinds, per env:

* ``random``: uniformly random actions.
* ``expert``: a scripted controller (below; its return is measured and recorded) with 10% of its
  actions replaced by random ones.
* ``medium``: the same controller with a larger share of random actions, chosen per env so that
  the return lies between a third and a half of the way from random to expert (a stand-in for
  D4RL's partially trained policy: measured and recorded with the dataset, not asserted).
* ``replay``: the whole replay buffer of a riskrl agent trained online for ``size`` steps.

The scripted experts are simple physics controllers (written here; CartPole: a linear state
feedback, Acrobot: energy pumping along the second joint's velocity, Pendulum: energy pumping and
a PD controller near the top, MountainCarContinuous: push along the velocity).

Usage::

    python experiments/make_datasets.py --envs CartPole-v1,Pendulum-v1 --kinds random,medium,expert \\
        --sizes 1000,10000 --out experiments/results/offline/datasets

Each dataset is ``<env>_<kind>_<size>.riskrl`` (riskrl's safe format, ``riskrl.data.Dataset.load``)
plus a ``datasets.json`` index with every dataset's size, episodes and mean episode return.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch

from riskrl.atomic import atomic_write_bytes
from riskrl.data import Dataset, collect, replay_dataset
from riskrl.results import provenance

ENVS = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCarContinuous-v0")
KINDS = ("random", "medium", "expert", "replay")
SIZES = (1_000, 10_000, 100_000)
#: share of random actions of the expert (10%) and of the medium policy, per env
EXPERT_EPSILON = 0.1
#: (CartPole 0.45: about 200 of 500; Pendulum 0.7: about 40% of the way from random to expert;
#: Acrobot and MountainCarContinuous: not calibrated yet)
MEDIUM_EPSILON = {"CartPole-v1": 0.45, "Acrobot-v1": 0.9, "Pendulum-v1": 0.7, "MountainCarContinuous-v0": 0.9}
#: fixed seed offset of each kind, so kinds never share a random stream
KIND_SEED = {"random": 0, "medium": 1000, "expert": 2000, "replay": 3000}


def cartpole_expert(obs: torch.Tensor) -> torch.Tensor:
    """Linear state feedback: push towards where the pole falls (return 500)."""
    return ((obs[:, 2] * 10 + obs[:, 3] * 2 + obs[:, 0] * 0.5 + obs[:, 1]) > 0).long()


def acrobot_expert(obs: torch.Tensor) -> torch.Tensor:
    """Torque along the second joint's angular velocity (energy pumping; return about -80)."""
    return torch.where(obs[:, 5] > 0, 2, 0).long()


def pendulum_expert(obs: torch.Tensor) -> torch.Tensor:
    """Energy pumping at full torque below the top; PD control near the top (return about -120)."""
    c, s, w = obs[:, 0], obs[:, 1], obs[:, 2]
    energy = 0.5 * w**2 + 10 * (c - 1)
    pd = torch.clamp(-10 * torch.atan2(s, c) - 2 * w, -2, 2)
    return torch.where(c > 0.85, pd, torch.sign(w) * 2.0 * (energy < 0)).unsqueeze(1)


def mountaincar_expert(obs: torch.Tensor) -> torch.Tensor:
    """Full push along the velocity (a push right from rest)."""
    return torch.where(obs[:, 1] >= 0, 1.0, -1.0).unsqueeze(1)


EXPERTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "CartPole-v1": cartpole_expert,
    "Acrobot-v1": acrobot_expert,
    "Pendulum-v1": pendulum_expert,
    "MountainCarContinuous-v0": mountaincar_expert,
}


def _learn_until_buffer_holds(agent, size: int) -> None:
    """Train ``agent`` online until its replay buffer holds ``size`` transitions.

    ``learn(n)`` counts env steps, and an autoreset step stores no transition, so ``learn(size)``
    alone leaves the buffer a few rows short (Acrobot 10k: 9935). Training goes on, in steps of
    what is missing, until the buffer (of capacity ``size``) is full; a step adds at most one row per
    env and the agents here run one env, so the buffer ends at exactly ``size``.
    """
    agent.learn(size)
    while len(agent.buffer) < size:
        agent.learn(size - len(agent.buffer), reset_num_timesteps=False)


def build(env_id: str, kind: str, size: int, seed: int = 0, num_envs: int = 4) -> Dataset:
    """The ``kind`` dataset of ``size`` transitions for ``env_id``, from ``seed`` (deterministic)."""
    s = seed + KIND_SEED[kind]
    meta = {"kind": kind, "size": size, "seed": seed}
    if kind == "random":
        return collect("random", env_id, size, seed=s, num_envs=num_envs, metadata=meta)
    if kind in ("medium", "expert"):
        eps = EXPERT_EPSILON if kind == "expert" else MEDIUM_EPSILON[env_id]
        meta.update(policy=EXPERTS[env_id].__name__, epsilon=eps)
        return collect(EXPERTS[env_id], env_id, size, seed=s, num_envs=num_envs, epsilon=eps, metadata=meta)
    if kind == "replay":
        from riskrl.agents import BayesDQN, BayesMPC

        if env_id in ("CartPole-v1", "Acrobot-v1"):
            agent = BayesDQN(env_id, seed=s, buffer_size=size, learning_starts=min(1000, size // 2))
        else:
            agent = BayesMPC(env_id, seed=s, buffer_size=size)
        _learn_until_buffer_holds(agent, size)
        meta.update(agent=type(agent).__name__)
        return replay_dataset(agent, metadata=meta)
    raise ValueError(f"unknown dataset kind {kind!r}; valid: {KINDS}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", default=",".join(ENVS))
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/results/offline/datasets")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / "datasets.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    index.pop("_provenance", None)
    for env_id in args.envs.split(","):
        for kind in args.kinds.split(","):
            for size in map(int, args.sizes.split(",")):
                data = build(env_id, kind, size, seed=args.seed)
                name = f"{env_id}_{kind}_{size}"
                data.save(out / f"{name}.riskrl")
                index[name] = {**data.summary(), "metadata": data.metadata}
                print(name, index[name], flush=True)
    index["_provenance"] = provenance()
    atomic_write_bytes(index_path, (json.dumps(index, indent=1, sort_keys=True, default=str) + "\n").encode())


if __name__ == "__main__":
    main()
