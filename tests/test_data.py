"""riskrl.data: Dataset validation, save/load refusal rules, collect vs a plain gymnasium loop,
replay-buffer export and Minari round trips."""

from __future__ import annotations

import dataclasses
import importlib.util
import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from riskrl.agents import BayesDQN
from riskrl.checkpoint import CheckpointError, save_checkpoint
from riskrl.data import Dataset, DatasetError, collect, from_minari, replay_dataset, to_minari

ROOT = Path(__file__).resolve().parents[1]

FIELDS = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminations",
    "truncations",
    "episode_ids",
)


def balance(obs: torch.Tensor) -> torch.Tensor:
    """A scripted CartPole controller that keeps the pole up for 500 steps."""
    return ((obs[:, 2] * 10 + obs[:, 3] * 2 + obs[:, 0] * 0.5 + obs[:, 1]) > 0).long()


@pytest.fixture(scope="module")
def cartpole() -> Dataset:
    return collect("random", "CartPole-v1", 600, seed=3, num_envs=3)


def assert_same(a: Dataset, b: Dataset) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and torch.equal(x.cpu(), y.cpu()), name


# ----------------------------------------------------------------------------- collect


@pytest.mark.parametrize("n_steps, num_envs", [(1, 1), (537, 4)])
def test_collect_returns_exactly_n_steps(n_steps: int, num_envs: int) -> None:
    data = collect("random", "CartPole-v1", n_steps, seed=0, num_envs=num_envs)
    assert len(data) == n_steps
    assert data.observations.dtype == torch.float32 and data.actions.dtype == torch.int64
    assert_same(data, collect("random", "CartPole-v1", n_steps, seed=0, num_envs=num_envs))  # seeded


@pytest.mark.parametrize("policy, n_steps", [("random", 400), (balance, 1100)])
def test_collect_flags_match_a_plain_gymnasium_loop(policy, n_steps: int) -> None:
    """Every episode, replayed in gymnasium's own CartPole from its stored states with its actions,
    terminates / truncates exactly where the dataset says, with the same rewards and observations."""
    data = collect(policy, "CartPole-v1", n_steps, seed=1, num_envs=2)
    ids = data.episode_ids
    assert bool((ids[1:] >= ids[:-1]).all())  # episodes stored contiguously
    env = gym.make("CartPole-v1")
    n_trunc = 0
    for e in torch.unique(ids).tolist():
        rows = (ids == e).nonzero().squeeze(1)
        env.reset(seed=0)
        for i in rows.tolist():  # from each stored state (float32 observations drift over 500 steps)
            env.unwrapped.state = data.observations[i].double().numpy()
            obs, reward, terminated, truncated, _ = env.step(int(data.actions[i]))
            assert bool(data.terminations[i]) == terminated and bool(data.truncations[i]) == truncated
            assert float(data.rewards[i]) == reward
            np.testing.assert_allclose(data.next_observations[i].numpy(), obs, atol=1e-5)
            if terminated or truncated:
                assert i == int(rows[-1])  # an episode's flag is its last row
            n_trunc += truncated
    if policy is balance:
        assert n_trunc == 2 and not bool(data.terminations.any())  # both envs reached the 500-step limit
    else:
        assert int(data.terminations.sum()) > 10


def test_collect_epsilon_perturb_and_continuous_actions() -> None:
    data = collect(
        lambda o: torch.full((o.shape[0], 1), 5.0), "Pendulum-v1", 300, seed=0, num_envs=3, epsilon=0.5
    )
    assert data.actions.shape == (300, 1)
    assert float(data.actions.max()) == 2.0  # clipped into the action space
    assert 0.3 < float((data.actions < 2.0).float().mean()) < 0.7  # about half random
    nominal = collect("random", "CartPole-v1", 50, seed=0)
    heavy = collect("random", "CartPole-v1", 50, seed=0, perturb={"length": 2.0})
    assert torch.equal(nominal.observations[0], heavy.observations[0])
    assert not torch.equal(nominal.next_observations, heavy.next_observations)
    with pytest.raises(ValueError, match="n_steps"):
        collect("random", "CartPole-v1", 0)
    with pytest.raises(ValueError, match="epsilon"):
        collect("random", "CartPole-v1", 5, epsilon=1.5)


# ----------------------------------------------------------------------------- the Dataset


def test_len_slicing_sampling_and_links(cartpole: Dataset) -> None:
    part = cartpole[100:200]
    assert len(part) == 100 and torch.equal(part.rewards, cartpole.rewards[100:200])
    mask = cartpole.actions == 1
    assert len(cartpole[mask]) == int(mask.sum())
    a = cartpole.sample(32, torch.Generator().manual_seed(0))
    b = cartpole.sample(32, torch.Generator().manual_seed(0))
    assert all(torch.equal(a[k], b[k]) for k in a) and a["observations"].shape == (32, 4)
    nxt = cartpole.next_index()
    linked = nxt >= 0
    assert torch.equal(cartpole.next_observations[linked], cartpole.observations[nxt[linked]])
    ended = cartpole.terminations | cartpole.truncations
    assert not bool((linked & ended).any())
    assert cartpole.n_episodes == int(torch.unique(cartpole.episode_ids).numel())
    assert float(cartpole.episode_returns().sum()) == pytest.approx(float(cartpole.rewards.sum()))


def test_save_load_round_trip(tmp_path, cartpole: Dataset) -> None:
    path = cartpole.save(tmp_path / "cp.riskrl")
    loaded = Dataset.load(path)
    assert_same(cartpole, loaded)
    assert loaded.env_id == "CartPole-v1" and loaded.metadata == cartpole.metadata
    assert loaded.action_space == cartpole.action_space
    pend = collect("random", "Pendulum-v1", 64, seed=0)
    assert_same(pend, Dataset.load(pend.save(tmp_path / "p.riskrl")))


def test_load_refuses_pickles_and_non_datasets(tmp_path, cartpole: Dataset) -> None:
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"observations": [1, 2]}))
    with pytest.raises(CheckpointError, match="pickle"):
        Dataset.load(raw)
    torch_file = tmp_path / "t.pt"
    torch.save({name: getattr(cartpole, name) for name in FIELDS}, torch_file)
    with pytest.raises(CheckpointError, match="pickle"):
        Dataset.load(torch_file)
    agent = BayesDQN("CartPole-v1", seed=0, hidden=(8,), buffer_size=10)
    with pytest.raises(CheckpointError, match=r"not a 'riskrl\.Dataset'"):
        Dataset.load(agent.save(tmp_path / "agent.riskrl"))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a riskrl checkpoint"):
        Dataset.load(text)
    # a riskrl checkpoint of kind Dataset whose tensors lie about their shapes
    state = {name: getattr(cartpole, name) for name in FIELDS}
    state["rewards"] = state["rewards"][:5]
    meta = {
        "n": len(cartpole),
        "env_id": "CartPole-v1",
        "observation_space": {"type": "Box", "shape": [4], "low": [-1.0] * 4, "high": [1.0] * 4},
        "action_space": {"type": "Discrete", "n": 2, "start": 0},
        "dataset": {},
    }
    save_checkpoint(tmp_path / "lie.riskrl", state, kind="riskrl.Dataset", metadata=meta)
    with pytest.raises(CheckpointError, match=r"state\.rewards must have shape \(600\), got \(5,\)"):
        Dataset.load(tmp_path / "lie.riskrl")
    state["rewards"] = torch.full((600,), float("nan"))
    save_checkpoint(tmp_path / "nan.riskrl", state, kind="riskrl.Dataset", metadata=meta)
    with pytest.raises(CheckpointError, match="NaN"):
        Dataset.load(tmp_path / "nan.riskrl")


def _fields(data: Dataset, **change) -> dict:
    out = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
    out.update(change)
    return out


def test_bad_datasets_get_one_clear_error_each(cartpole: Dataset) -> None:
    n = len(cartpole)
    cases = {
        "observations must have shape": dict(observations=cartpole.observations[:, :3]),
        "rewards must have shape": dict(rewards=cartpole.rewards[:-1]),
        "next_observations holds NaN or inf": dict(
            next_observations=torch.where(
                torch.arange(n).unsqueeze(1) == 7, float("inf"), cartpole.next_observations
            )
        ),
        "rewards holds NaN": dict(rewards=torch.full((n,), float("nan"))),
        "actions lie outside the action space": dict(actions=cartpole.actions + 1),
        "dataset is empty": {name: getattr(cartpole, name)[:0] for name in FIELDS},
        "terminations must be booleans": dict(terminations=torch.full((n,), 2)),
    }
    for message, change in cases.items():
        with pytest.raises(DatasetError, match=message):
            Dataset(**_fields(cartpole, **change))
    pend = collect("random", "Pendulum-v1", 20, seed=0)
    with pytest.raises(DatasetError, match="outside the action space"):
        Dataset(**_fields(pend, actions=pend.actions * 3))
    with pytest.raises(DatasetError, match="another env's spaces"):
        pend.check_spaces(cartpole.observation_space, cartpole.action_space)
    agent = BayesDQN("Acrobot-v1", seed=0, hidden=(8,), buffer_size=1000)
    with pytest.raises(DatasetError, match="another env's spaces"):
        agent.learn_offline(cartpole, 1)
    small = BayesDQN("CartPole-v1", seed=0, hidden=(8,), buffer_size=100)
    with pytest.raises(ValueError, match="buffer_size >= 600"):
        small.learn_offline(cartpole, 1)
    with pytest.raises(ValueError, match=r"riskrl\.data\.Dataset"):
        small.learn_offline({"observations": 1}, 1)


# ----------------------------------------------------------------------------- replay buffers


def test_replay_buffer_exports_as_a_dataset() -> None:
    agent = BayesDQN("CartPole-v1", seed=0, hidden=(16,), num_envs=3, learning_starts=10_000, buffer_size=250)
    agent.learn(600)  # random actions; the buffer wraps around
    data = replay_dataset(agent)
    assert len(data) == 250 and data.metadata["kind"] == "replay"
    assert torch.equal(torch.sort(data.rewards).values, torch.sort(agent.buffer.rewards).values)
    assert int(data.terminations.sum()) == int(agent.buffer.terminated.sum())
    nxt = data.next_index()
    linked = nxt >= 0
    assert torch.equal(data.next_observations[linked], data.observations[nxt[linked]])
    # every episode ends in a termination, a truncation, or (one per env at most) is still running
    last = torch.ones(len(data), dtype=torch.bool)
    last[:-1] = data.episode_ids[1:] != data.episode_ids[:-1]
    open_ended = last & ~data.terminations & ~data.truncations
    assert int(open_ended.sum()) <= 3
    fresh = BayesDQN("CartPole-v1", seed=0, hidden=(16,))
    with pytest.raises(DatasetError, match="empty"):
        replay_dataset(fresh)


# ----------------------------------------------------------------------------- Minari


@pytest.mark.skipif(importlib.util.find_spec("minari") is None, reason="needs riskrl[offline] (minari)")
def test_minari_round_trip(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    for env_id, ds_id in (
        ("CartPole-v1", "riskrl/cartpole-random-v0"),
        ("Pendulum-v1", "riskrl/pendulum-random-v0"),
    ):
        data = collect("random", env_id, 300, seed=0, num_envs=2)
        mds = to_minari(data, ds_id)
        assert mds.total_steps == 300
        back = from_minari(ds_id)
        assert back.env_id == env_id
        for name in FIELDS[:-1]:
            assert torch.equal(getattr(back, name), getattr(data, name)), name
        # the same episodes, renumbered from 0
        assert torch.equal(
            torch.unique_consecutive(back.episode_ids, return_counts=True)[1],
            torch.unique_consecutive(data.episode_ids, return_counts=True)[1],
        )
    with pytest.raises(DatasetError, match="no local Minari dataset"):
        from_minari("riskrl/missing-v0")


def test_reference_replay_dataset_holds_exactly_its_nominal_size() -> None:
    """The reference "replay" kind is a whole training buffer of ``size`` transitions; autoreset
    steps store none, so training must go on past ``learn(size)`` until the buffer is full."""
    spec = importlib.util.spec_from_file_location("make_datasets", ROOT / "experiments" / "make_datasets.py")
    make_datasets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_datasets)
    data = make_datasets.build("CartPole-v1", "replay", 300)
    assert len(data) == 300
    assert int(data.terminations.sum()) >= 3  # several episodes ended inside it, so autoresets happened
