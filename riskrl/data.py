"""Learning from data: :class:`Dataset` of transitions, :func:`collect`, safe save/load, Minari interop.

A :class:`Dataset` holds transitions as tensors on one device: ``observations``, ``actions``,
``rewards``, ``next_observations``, ``terminations`` and ``truncations`` (as gymnasium marks them)
and ``episode_ids``, plus the observation and action spaces it was recorded in. Every dataset is
validated when it is built (shapes, finite values, actions inside the action space, not empty), so a
bad one fails with one clear :class:`DatasetError` before any agent trains on it.

* :func:`collect` records exactly ``n_steps`` transitions of any policy riskrl can evaluate (a riskrl
  agent, a stable-baselines3 model, a callable or ``"random"``) on the batched envs.
* :meth:`Dataset.save` / :meth:`Dataset.load` use riskrl's checkpoint format (safetensors + a JSON
  manifest in one zip, written atomically; loading never unpickles and refuses whatever is not a
  riskrl dataset).
* :func:`to_minari` / :func:`from_minari` convert to and from Farama's Minari format (local datasets
  only; ``pip install riskrl[offline]``).
* :func:`replay_dataset` exports an agent's replay buffer (the "replay" dataset kind).

Episodes: rows of one episode are kept in time order; :meth:`Dataset.next_index` links every row to
the next row of the same episode (``-1`` at an episode's end), which agents use for n-step targets.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from riskrl.agents.base import space_to_json
from riskrl.checkpoint import (
    CheckpointError,
    JsonSpec,
    Opt,
    TensorSpec,
    check_spec,
    load_checkpoint,
    save_checkpoint,
)
from riskrl.devices import resolve_device
from riskrl.envs import make_vec
from riskrl.envs.autoreset import AutoresetMask
from riskrl.evaluation import PolicyLike, _policy_fn

__all__ = [
    "MAX_TRANSITIONS",
    "Dataset",
    "DatasetError",
    "collect",
    "from_minari",
    "replay_dataset",
    "to_minari",
]

#: largest dataset :meth:`Dataset.load` accepts (rows)
MAX_TRANSITIONS = 2**31 - 1
#: what :meth:`Dataset.save` writes as the checkpoint ``kind``
DATASET_KIND = "riskrl.Dataset"
_FIELDS = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminations",
    "truncations",
    "episode_ids",
)


class DatasetError(ValueError):
    """A dataset is malformed (shapes, values, spaces) or does not fit the env or agent it is used with."""


# --------------------------------------------------------------------------- spaces <-> JSON


def _space_from_json(desc: Any, where: str) -> gym.spaces.Box | gym.spaces.Discrete:
    """The inverse of :func:`riskrl.agents.base.space_to_json` (Box and Discrete), checked."""
    if not isinstance(desc, dict) or desc.get("type") not in ("Box", "Discrete"):
        raise DatasetError(f"{where} must describe a Box or Discrete space, got {str(desc)[:80]}")
    try:
        if desc["type"] == "Discrete":
            check_spec(
                {
                    "type": "Discrete",
                    "n": JsonSpec("int", 1, 2**31),
                    "start": JsonSpec("int", -(2**31), 2**31),
                },
                desc,
                where,
            )
            return gym.spaces.Discrete(int(desc["n"]), start=int(desc["start"]))
        shape = desc.get("shape")
        if not (
            isinstance(shape, list)
            and 1 <= len(shape) <= 4
            and all(isinstance(d, int) and 0 < d <= 2**20 for d in shape)
        ):
            raise DatasetError(f"{where}.shape must be a list of positive sizes, got {str(shape)[:80]}")
        size = math.prod(shape)
        low, high = desc.get("low"), desc.get("high")
        for name, bound in (("low", low), ("high", high)):
            if (
                not isinstance(bound, list)
                or len(bound) != size
                or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
                    for v in bound
                )
            ):
                raise DatasetError(f"{where}.{name} must be {size} numbers")
        if set(desc) != {"type", "shape", "low", "high"}:
            raise DatasetError(
                f"{where} has unexpected fields {sorted(set(desc) - {'type', 'shape', 'low', 'high'})}"
            )
        return gym.spaces.Box(
            np.asarray(low, dtype=np.float32).reshape(shape),
            np.asarray(high, dtype=np.float32).reshape(shape),
            dtype=np.float32,
        )
    except CheckpointError as err:
        raise DatasetError(str(err)) from None


def _same_space(a: gym.Space, b: gym.Space) -> bool:
    try:
        return space_to_json(a) == space_to_json(b)
    except ValueError:
        return False


# --------------------------------------------------------------------------- the Dataset


@dataclasses.dataclass(eq=False)
class Dataset:
    """Transitions as tensors on one device, validated on construction.

    Attributes:
        observations, next_observations: ``(N, obs_dim)`` float32.
        actions: ``(N,)`` int64 for a ``Discrete`` action space, ``(N, act_dim)`` float32 for a ``Box``.
        rewards: ``(N,)`` float32.
        terminations, truncations: ``(N,)`` bool, as gymnasium returns them from ``step``; an episode
            cut by the end of the data has neither on its last row.
        episode_ids: ``(N,)`` int64; rows of one episode are in time order.
        observation_space, action_space: the spaces the data were recorded in (a flat ``Box``
            observation space; a ``Discrete`` or flat ``Box`` action space).
        env_id: the gymnasium id of the env, when known.
        metadata: JSON-serialisable facts about the data (policy, seed, kind, ...).

    Raises :class:`DatasetError` (one clear message) for an empty dataset, wrong shapes or dtypes,
    NaN or inf values, or actions outside the action space.
    """

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    next_observations: Tensor
    terminations: Tensor
    truncations: Tensor
    episode_ids: Tensor
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Discrete | gym.spaces.Box
    env_id: str | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        obs_space, act_space = self.observation_space, self.action_space
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise DatasetError(f"observation_space must be a flat Box, got {obs_space}")
        if isinstance(act_space, gym.spaces.Box):
            if len(act_space.shape) != 1:
                raise DatasetError(f"a Box action_space must be flat, got {act_space}")
        elif not isinstance(act_space, gym.spaces.Discrete):
            raise DatasetError(f"action_space must be a Discrete or flat Box space, got {act_space}")
        tensors = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if not isinstance(value, Tensor):
                try:
                    value = torch.as_tensor(np.asarray(value))
                except (TypeError, ValueError) as err:
                    raise DatasetError(f"{name} must be an array of numbers ({err})") from None
            tensors[name] = value
        device = tensors["observations"].device
        n = tensors["observations"].shape[0] if tensors["observations"].dim() else 0
        if n == 0:
            raise DatasetError(
                "the dataset is empty (0 transitions); a dataset needs at least one transition"
            )
        obs_dim = int(obs_space.shape[0])
        discrete = isinstance(act_space, gym.spaces.Discrete)
        want = {
            "observations": (n, obs_dim),
            "next_observations": (n, obs_dim),
            "actions": (n,) if discrete else (n, int(act_space.shape[0])),
            "rewards": (n,),
            "terminations": (n,),
            "truncations": (n,),
            "episode_ids": (n,),
        }
        for name, shape in want.items():
            t = tensors[name]
            if tuple(t.shape) != shape:
                raise DatasetError(
                    f"{name} must have shape {shape} for {n} transitions and the dataset's spaces, "
                    f"got {tuple(t.shape)}"
                )
            if t.device != device:
                raise DatasetError(
                    f"{name} is on {t.device}, observations on {device}: one device per dataset"
                )
        for name in ("observations", "next_observations", "rewards") + (() if discrete else ("actions",)):
            t = tensors[name]
            if not (
                t.is_floating_point()
                or t.dtype in (torch.int32, torch.int64, torch.uint8, torch.int16, torch.int8)
            ):
                raise DatasetError(f"{name} must be numeric, got dtype {t.dtype}")
            t = t.to(torch.float32)
            bad = ~torch.isfinite(t)
            if bool(bad.any()):
                row = int(bad.reshape(n, -1).any(1).nonzero()[0, 0])
                raise DatasetError(f"{name} holds NaN or inf (first at row {row}); datasets must be finite")
            tensors[name] = t
        for name in ("terminations", "truncations"):
            t = tensors[name]
            if t.dtype != torch.bool:
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    raise DatasetError(f"{name} holds NaN or inf")
                if not bool(((t == 0) | (t == 1)).all()):
                    raise DatasetError(f"{name} must be booleans (0 or 1)")
                t = t != 0
            tensors[name] = t
        if tensors["episode_ids"].is_floating_point() or tensors["episode_ids"].dtype == torch.bool:
            raise DatasetError(f"episode_ids must be integers, got dtype {tensors['episode_ids'].dtype}")
        tensors["episode_ids"] = tensors["episode_ids"].to(torch.int64)
        actions = tensors["actions"]
        if discrete:
            if actions.is_floating_point():
                if not bool(torch.isfinite(actions).all()):
                    raise DatasetError("actions hold NaN or inf; datasets must be finite")
                if not bool((actions == actions.round()).all()):
                    raise DatasetError(f"actions must be integers for the action space {act_space}")
            elif actions.dtype == torch.bool:
                raise DatasetError("actions must be integers, got booleans")
            actions = actions.to(torch.int64)
            lo, hi = int(act_space.start), int(act_space.start) + int(act_space.n)
            outside = (actions < lo) | (actions >= hi)
        else:
            low = torch.as_tensor(act_space.low, dtype=torch.float32, device=device)
            high = torch.as_tensor(act_space.high, dtype=torch.float32, device=device)
            outside = ((actions < low) | (actions > high)).any(-1)
        if bool(outside.any()):
            row = int(outside.nonzero()[0, 0])
            raise DatasetError(
                f"actions lie outside the action space {act_space} (first at row {row}: "
                f"{actions[row].tolist()}); a dataset for another env?"
            )
        tensors["actions"] = actions
        for name, t in tensors.items():
            object.__setattr__(self, name, t)
        if self.env_id is not None:
            self.env_id = str(self.env_id).removeprefix("riskrl/")
        self.metadata = dict(self.metadata or {})

    # ------------------------------------------------------------------ basics

    def __len__(self) -> int:
        return int(self.observations.shape[0])

    @property
    def device(self) -> torch.device:
        """The device all tensors live on."""
        return self.observations.device

    @property
    def n_episodes(self) -> int:
        """Number of distinct episode ids."""
        return int(torch.unique(self.episode_ids).numel())

    def _replace(self, **tensors: Tensor) -> Dataset:
        fields = {name: tensors.get(name, getattr(self, name)) for name in _FIELDS}
        return Dataset(
            **fields,
            observation_space=self.observation_space,
            action_space=self.action_space,
            env_id=self.env_id,
            metadata=dict(self.metadata),
        )

    def to(self, device: str | torch.device) -> Dataset:
        """A copy on ``device``."""
        dev = resolve_device(device)
        return self._replace(**{name: getattr(self, name).to(dev) for name in _FIELDS})

    def __getitem__(self, index: slice | int | Tensor | np.ndarray | list[int]) -> Dataset:
        """Rows ``index`` (a slice, integer array or boolean mask) as a new dataset."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        if not isinstance(index, slice):
            index = torch.as_tensor(
                np.asarray(index) if not isinstance(index, Tensor) else index, device=self.device
            )
        return self._replace(**{name: getattr(self, name)[index] for name in _FIELDS})

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """``batch_size`` rows drawn uniformly with replacement (reproducible with ``generator``)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        idx = torch.randint(0, len(self), (int(batch_size),), device=self.device, generator=generator)
        return {name: getattr(self, name)[idx] for name in _FIELDS}

    def next_index(self) -> Tensor:
        """``(N,)`` int64: the row of the next transition of the same episode, ``-1`` where none follows.

        Row ``i + 1`` follows row ``i`` when both carry the same episode id and row ``i`` neither
        terminated nor was truncated.
        """
        n = len(self)
        nxt = torch.arange(1, n + 1, device=self.device)
        same = torch.zeros(n, dtype=torch.bool, device=self.device)
        same[:-1] = self.episode_ids[1:] == self.episode_ids[:-1]
        ok = same & ~self.terminations & ~self.truncations
        return torch.where(ok, nxt, torch.full_like(nxt, -1))

    def episode_returns(self) -> Tensor:
        """Undiscounted return of each episode (in order of first appearance), float64."""
        _, inverse = torch.unique_consecutive(self.episode_ids, return_inverse=True)
        out = torch.zeros(int(inverse.max()) + 1, dtype=torch.float64, device=self.device)
        return out.index_add_(0, inverse, self.rewards.to(torch.float64))

    def check_spaces(
        self, observation_space: gym.Space, action_space: gym.Space, what: str = "the env"
    ) -> None:
        """DatasetError unless the dataset's spaces are ``observation_space`` and ``action_space``."""
        for name, mine, theirs in (
            ("observation space", self.observation_space, observation_space),
            ("action space", self.action_space, action_space),
        ):
            if not _same_space(mine, theirs):
                raise DatasetError(
                    f"the dataset was recorded in {self.env_id or 'an env'} whose {name} is {mine}; "
                    f"{what} has {theirs}: a dataset for another env's spaces"
                )

    def summary(self) -> dict[str, Any]:
        """Size, episodes and return statistics (JSON-ready). ``mean_complete_return`` averages the
        episodes that end inside the data (terminated or truncated); NaN when none does."""
        returns = self.episode_returns()
        _, inverse = torch.unique_consecutive(self.episode_ids, return_inverse=True)
        ended = torch.zeros(returns.numel(), dtype=torch.bool, device=self.device)
        ended[inverse[self.terminations | self.truncations]] = True
        complete = returns[ended]
        return {
            "env_id": self.env_id,
            "n_transitions": len(self),
            "n_episodes": int(returns.numel()),
            "n_complete_episodes": int(complete.numel()),
            "mean_complete_return": float(complete.mean()) if complete.numel() else math.nan,
            "terminations": int(self.terminations.sum()),
            "truncations": int(self.truncations.sum()),
        }

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save atomically in riskrl's checkpoint format (safetensors + JSON manifest; no pickle)."""
        state = {name: getattr(self, name) for name in _FIELDS}
        meta = {
            "n": len(self),
            "env_id": self.env_id,
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "dataset": dict(self.metadata),
        }
        return save_checkpoint(path, state, kind=DATASET_KIND, metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Dataset:
        """Load a dataset written by :meth:`save`; never executes code from the file.

        The same refusal rules as agent checkpoints apply (no pickle, regular files only, bounded
        sizes, checksum); the manifest's spaces and size and every tensor's dtype and shape are
        checked before any tensor data is read, and the values are validated as for a new dataset.
        Raises :class:`riskrl.checkpoint.CheckpointError` for a file that is not a riskrl dataset.
        """
        dev = resolve_device(device)
        spaces: dict[str, Any] = {}

        def check_manifest(manifest: dict[str, Any]) -> int:
            meta = manifest["metadata"]
            fields = {"n", "env_id", "observation_space", "action_space", "dataset"}
            if set(meta) != fields:
                raise CheckpointError(
                    f"metadata must hold exactly {sorted(fields)} for a dataset, got {sorted(meta)[:8]}"
                )
            check_spec(JsonSpec("int", 1, MAX_TRANSITIONS), meta["n"], "metadata.n")
            check_spec(Opt(JsonSpec("str")), meta["env_id"], "metadata.env_id")
            if not isinstance(meta["dataset"], dict):
                raise CheckpointError("metadata.dataset must be a mapping")
            try:
                obs_space = _space_from_json(meta["observation_space"], "metadata.observation_space")
                act_space = _space_from_json(meta["action_space"], "metadata.action_space")
            except DatasetError as err:
                raise CheckpointError(str(err)) from None
            if len(obs_space.shape) != 1:
                raise CheckpointError("metadata.observation_space must be a flat Box")
            n, d = int(meta["n"]), int(obs_space.shape[0])
            discrete = isinstance(act_space, gym.spaces.Discrete)
            floats = (torch.float32,)
            spec = {
                "observations": TensorSpec(floats, (n, d)),
                "next_observations": TensorSpec(floats, (n, d)),
                "actions": TensorSpec((torch.int64,), (n,))
                if discrete
                else TensorSpec(floats, (n, int(act_space.shape[0]))),
                "rewards": TensorSpec(floats, (n,)),
                "terminations": TensorSpec((torch.bool,), (n,)),
                "truncations": TensorSpec((torch.bool,), (n,)),
                "episode_ids": TensorSpec((torch.int64,), (n,)),
            }
            spaces.update(obs=obs_space, act=act_space, spec=spec)
            return sum(s.max_bytes() for s in spec.values())

        def check_tensors(manifest: dict[str, Any], info_state: Any) -> None:
            check_spec(spaces["spec"], info_state, "state")

        state, manifest = load_checkpoint(
            path, kind=DATASET_KIND, check_manifest=check_manifest, check_tensors=check_tensors
        )
        meta = manifest["metadata"]
        try:
            out = cls(
                **{name: state[name] for name in _FIELDS},
                observation_space=spaces["obs"],
                action_space=spaces["act"],
                env_id=meta.get("env_id"),
                metadata=meta.get("dataset") or {},
            )
        except DatasetError as err:
            raise CheckpointError(f"{path}: {err}") from None
        return out.to(dev) if dev.type != "cpu" else out


# --------------------------------------------------------------------------- collecting


def _random_actions(space: gym.Space, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    if isinstance(space, gym.spaces.Discrete):
        return torch.randint(0, int(space.n), (n,), generator=generator, device=device) + int(space.start)
    low = torch.as_tensor(space.low, dtype=torch.float32, device=device)
    high = torch.as_tensor(space.high, dtype=torch.float32, device=device)
    return low + (high - low) * torch.rand((n, *space.shape), generator=generator, device=device)


def collect(
    policy: PolicyLike | str,
    env_id: str,
    n_steps: int,
    *,
    seed: int = 0,
    num_envs: int = 1,
    epsilon: float = 0.0,
    perturb: Mapping[str, Any] | None = None,
    deterministic: bool = True,
    device: str | torch.device = "cpu",
    policy_input: str = "auto",
    metadata: Mapping[str, Any] | None = None,
) -> Dataset:
    """Record exactly ``n_steps`` transitions of ``policy`` on ``num_envs`` batched envs of ``env_id``.

    Args:
        policy: anything :func:`riskrl.evaluate` takes (a riskrl agent, a stable-baselines3 model or
            a callable ``obs -> actions``), or ``"random"`` for uniformly random actions.
        env_id: a gymnasium id (riskrl's batched env where one exists, else gymnasium's).
        n_steps: transitions to record, summed over envs. The steps that only reset an env after
            an episode end (gymnasium's NEXT_STEP autoreset) are not transitions and are not counted.
        seed: seeds the env's resets and the random actions; the same seed gives the same dataset.
        epsilon: with this probability each action is replaced by a uniformly random one.
        perturb: physical parameters for ``env.perturb`` (e.g. ``{"length": 1.5}``), applied after
            the seeded reset as :func:`riskrl.evaluate` does.
        deterministic: passed to the policy (riskrl agents and SB3 models).
        metadata: JSON facts stored with the dataset (kind, policy description, ...).

    Terminations and truncations are stored as the env returns them; ``next_observations`` hold the
    true final observation of an ended episode. Episodes are stored contiguously (per env, in time
    order); the last episode of each env is cut where the data end (neither flag set).
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    epsilon = float(epsilon)
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    dev = resolve_device(device)
    env = make_vec(env_id, num_envs=int(num_envs), device=dev)
    obs_space, act_space = env.single_observation_space, env.single_action_space
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    if isinstance(policy, str):
        if policy != "random":
            raise ValueError(f'policy must be a policy object or "random", got {policy!r}')
        act = None
    else:
        act, _ = _policy_fn(policy, deterministic, policy_input)
    obs, _ = env.reset(seed=int(seed))
    if perturb:
        env.perturb(**dict(perturb))
        obs, _ = env.reset(seed=int(seed))
    n_env = int(num_envs)
    autoreset = AutoresetMask(env, n_env, dev)
    episode = torch.zeros(n_env, dtype=torch.int64, device=dev)
    rows: dict[str, list[Tensor]] = {
        k: [] for k in ("obs", "act", "rew", "next", "term", "trunc", "ep", "valid")
    }
    count = 0
    low = high = None
    if isinstance(act_space, gym.spaces.Box):
        low = torch.as_tensor(act_space.low, dtype=torch.float32, device=dev)
        high = torch.as_tensor(act_space.high, dtype=torch.float32, device=dev)
    max_iters = 100 * (int(n_steps) // n_env + 2) + 100_000
    for _ in range(max_iters):
        obs_t = torch.as_tensor(obs, device=dev, dtype=torch.float32)
        if act is None:
            actions = _random_actions(act_space, n_env, gen, dev)
        else:
            actions = torch.as_tensor(act(obs_t)[0], device=dev)
            if epsilon > 0.0:
                explore = torch.rand(n_env, generator=gen, device=dev) < epsilon
                random = _random_actions(act_space, n_env, gen, dev).to(actions.dtype)
                mask = explore.view(-1, *([1] * (actions.dim() - 1)))
                actions = torch.where(mask, random, actions)
        if low is not None:
            actions = torch.clamp(actions.to(torch.float32).reshape(n_env, -1), low, high)
        else:
            actions = actions.reshape(n_env).to(torch.int64)
        next_obs, reward, terminated, truncated, info = env.step(actions)
        next_t = torch.as_tensor(next_obs, device=dev, dtype=torch.float32)
        term = torch.as_tensor(terminated, device=dev).to(torch.bool)
        trunc = torch.as_tensor(truncated, device=dev).to(torch.bool)
        done = term | trunc
        real_next = autoreset.real_next_obs(next_t, done, info)
        valid = autoreset.live
        rows["obs"].append(obs_t)
        rows["act"].append(actions)
        rows["rew"].append(torch.as_tensor(reward, device=dev).to(torch.float32))
        rows["next"].append(real_next.to(torch.float32))
        rows["term"].append(term)
        rows["trunc"].append(trunc)
        rows["ep"].append(episode.clone())
        rows["valid"].append(valid)
        episode = episode + (done & valid).to(torch.int64)
        autoreset.update(done)
        count += int(valid.sum())  # one host sync per vectorised step
        obs = next_obs
        if count >= n_steps:
            break
    else:  # pragma: no cover - an env that never steps
        raise RuntimeError(f"collect did not reach {n_steps} transitions")
    stacked = {k: torch.stack(v) for k, v in rows.items()}  # (T, n_env, ...)
    env_idx = torch.arange(n_env, device=dev).expand(stacked["valid"].shape)
    valid = stacked["valid"].reshape(-1)
    flat = {k: v.reshape(-1, *v.shape[2:])[valid][:n_steps] for k, v in stacked.items() if k != "valid"}
    env_of = env_idx.reshape(-1)[valid][:n_steps]
    # Episodes contiguous: env-major, then episode, then time (a stable sort keeps time order).
    key = env_of * (int(flat["ep"].max()) + 1) + flat["ep"]
    order = torch.sort(key, stable=True).indices
    _, episode_ids = torch.unique_consecutive(key[order], return_inverse=True)
    meta = {
        "collect": {"seed": int(seed), "num_envs": n_env, "epsilon": epsilon, "perturb": dict(perturb or {})}
    }
    meta.update(dict(metadata or {}))
    return Dataset(
        observations=flat["obs"][order],
        actions=flat["act"][order],
        rewards=flat["rew"][order],
        next_observations=flat["next"][order],
        terminations=flat["term"][order],
        truncations=flat["trunc"][order],
        episode_ids=episode_ids,
        observation_space=obs_space,
        action_space=act_space,
        env_id=str(env_id),
        metadata=meta,
    )


# --------------------------------------------------------------------------- replay buffers


def replay_dataset(agent: Any, metadata: Mapping[str, Any] | None = None) -> Dataset:
    """An agent's whole replay buffer as a :class:`Dataset` (the "replay" dataset kind).

    Rows come out in the order they were written (oldest first), grouped by episode through the
    buffer's episode links. A transition after which its episode continued nowhere in the buffer
    and which did not terminate is marked truncated (the env's time limit); the unfinished episode
    of each env at the end of training is left unmarked.
    """
    buffer = agent.buffer
    n = len(buffer)
    if n == 0:
        raise DatasetError("the replay buffer is empty; train the agent first")
    if getattr(buffer, "n_envs", None) is None:
        raise DatasetError("the replay buffer keeps no episode links (built without n_envs)")
    dev = buffer.device
    cap = buffer.capacity
    if n < cap:
        chrono = torch.arange(n, device=dev)
    else:  # full: the oldest row is at pos
        chrono = (buffer.pos + torch.arange(n, device=dev)) % cap
    rank = torch.empty(n, dtype=torch.int64, device=dev)
    rank[chrono] = torch.arange(n, device=dev)  # chronological position of each stored row
    nxt = buffer.next_index[:n]
    has_next = nxt >= 0
    prev = torch.full((n,), -1, dtype=torch.int64, device=dev)
    prev[nxt[has_next]] = has_next.nonzero().squeeze(1)
    root = torch.where(prev >= 0, prev, torch.arange(n, device=dev))
    while True:  # pointer doubling: O(log n) gathers to each row's episode start
        new = root[root]
        if bool((new == root).all()):
            break
        root = new
    terminated = buffer.terminated[:n] != 0
    in_flight = torch.zeros(n, dtype=torch.bool, device=dev)
    live = buffer.last_row >= 0
    rows_live = buffer.last_row[live]
    alive = buffer.write_id[rows_live] == buffer.last_write_id[live]
    in_flight[rows_live[alive]] = True
    truncated = ~has_next & ~terminated & ~in_flight
    key = rank[root] * n + rank
    order = torch.sort(key).indices
    _, episode_ids = torch.unique_consecutive(rank[root][order], return_inverse=True)
    data = buffer.all()
    meta = {"kind": "replay", "agent": type(agent).__name__, "num_timesteps": int(agent.num_timesteps)}
    meta.update(dict(metadata or {}))
    return Dataset(
        observations=data["obs"][order],
        actions=data["actions"][order],
        rewards=data["rewards"][order],
        next_observations=data["next_obs"][order],
        terminations=terminated[order],
        truncations=truncated[order],
        episode_ids=episode_ids,
        observation_space=agent.observation_space,
        action_space=agent.action_space,
        env_id=getattr(agent, "env_id", None),
        metadata=meta,
    )


# --------------------------------------------------------------------------- Minari (optional)


def _minari() -> Any:
    try:
        import minari
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "Minari interop needs the optional dependency: pip install 'riskrl[offline]'"
        ) from None
    return minari


def to_minari(
    dataset: Dataset, dataset_id: str, *, algorithm_name: str | None = None, author: str | None = None
) -> Any:
    """Write ``dataset`` as a local Minari dataset ``dataset_id`` (e.g. ``"cartpole/random-v0"``).

    Minari stores each episode's ``T + 1`` observations, so every episode's rows must be contiguous
    and chained (``next_observations[i] == observations[i + 1]`` inside an episode), as
    :func:`collect` writes them. Nothing is uploaded; the dataset goes under Minari's local root
    (``MINARI_DATASETS_PATH``). Returns the ``MinariDataset``.
    """
    minari = _minari()
    data = dataset.to("cpu")
    ids = data.episode_ids
    starts = torch.ones(len(data), dtype=torch.bool)
    starts[1:] = ids[1:] != ids[:-1]
    if int(starts.sum()) != data.n_episodes:
        raise DatasetError("to_minari needs each episode's rows to be contiguous (as collect writes them)")
    inside = ~starts[1:]
    if not bool(torch.equal(data.next_observations[:-1][inside], data.observations[1:][inside])):
        raise DatasetError("to_minari needs next_observations[i] == observations[i + 1] inside each episode")
    bounds = torch.cat([starts.nonzero().squeeze(1), torch.tensor([len(data)])]).tolist()
    discrete = isinstance(data.action_space, gym.spaces.Discrete)
    episodes = []
    for k, (a, b) in enumerate(itertools.pairwise(bounds)):  # a loop over episodes (Minari's format)
        obs = torch.cat([data.observations[a:b], data.next_observations[b - 1 : b]]).numpy()
        episodes.append(
            minari.data_collector.EpisodeBuffer(
                id=k,
                observations=list(obs),
                actions=list(data.actions[a:b].numpy().astype(np.int64 if discrete else np.float32)),
                rewards=data.rewards[a:b].numpy().tolist(),
                terminations=data.terminations[a:b].numpy().tolist(),
                truncations=data.truncations[a:b].numpy().tolist(),
                infos={},
            )
        )
    obs_space = gym.spaces.Box(data.observation_space.low, data.observation_space.high, dtype=np.float32)
    kwargs: dict[str, Any] = {
        "dataset_id": dataset_id,
        "buffer": episodes,
        "observation_space": obs_space,
        "action_space": data.action_space,
        "algorithm_name": algorithm_name or str(data.metadata.get("kind", "riskrl.collect")),
        "author": author or "riskrl",
        "author_email": "riskrl@localhost",
        "code_permalink": "riskrl.data.collect",
        "description": f"riskrl dataset: {data.metadata}"[:1000],
    }
    if data.env_id is not None:
        try:
            kwargs["env"] = kwargs["eval_env"] = gym.spec(data.env_id)
        except gym.error.Error:
            pass
    return minari.create_dataset_from_buffers(**kwargs)


def from_minari(dataset_or_id: Any) -> Dataset:
    """A :class:`Dataset` from a local Minari dataset (a ``MinariDataset`` or its id; never downloads)."""
    minari = _minari()
    if isinstance(dataset_or_id, str):
        try:
            mds = minari.load_dataset(dataset_or_id, download=False)
        except Exception as err:  # Minari raises several types for a missing local dataset
            raise DatasetError(f"no local Minari dataset {dataset_or_id!r} ({str(err)[:200]})") from None
    else:
        mds = dataset_or_id
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "next", "act", "rew", "term", "trunc", "ep")}
    for i, ep in enumerate(mds.iterate_episodes()):
        obs = np.asarray(ep.observations, dtype=np.float32)
        t = len(ep.actions)
        parts["obs"].append(obs[:t])
        parts["next"].append(obs[1 : t + 1])
        parts["act"].append(np.asarray(ep.actions))
        parts["rew"].append(np.asarray(ep.rewards, dtype=np.float32))
        parts["term"].append(np.asarray(ep.terminations, dtype=bool))
        parts["trunc"].append(np.asarray(ep.truncations, dtype=bool))
        parts["ep"].append(np.full(t, i, dtype=np.int64))
    if not parts["obs"]:
        raise DatasetError("the Minari dataset holds no episodes")
    env_id = None
    env_spec = getattr(mds.spec, "env_spec", None)
    if env_spec is not None:
        env_id = getattr(env_spec, "id", None)
    act_space = mds.action_space
    actions = np.concatenate(parts["act"])
    if isinstance(act_space, gym.spaces.Discrete):
        actions = actions.astype(np.int64).reshape(-1)
    return Dataset(
        observations=torch.from_numpy(np.concatenate(parts["obs"])),
        actions=torch.from_numpy(actions),
        rewards=torch.from_numpy(np.concatenate(parts["rew"])),
        next_observations=torch.from_numpy(np.concatenate(parts["next"])),
        terminations=torch.from_numpy(np.concatenate(parts["term"])),
        truncations=torch.from_numpy(np.concatenate(parts["trunc"])),
        episode_ids=torch.from_numpy(np.concatenate(parts["ep"])),
        observation_space=mds.observation_space,
        action_space=act_space,
        env_id=env_id,
        metadata={"minari_id": getattr(mds.spec, "dataset_id", None)},
    )
