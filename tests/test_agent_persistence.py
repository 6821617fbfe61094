"""Saved agents: determinism, and clear errors for checkpoints that do not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from riskrl.agents import BayesDQN, BayesMPC, load_agent
from riskrl.checkpoint import CheckpointError
from riskrl.envs import make_vec

TINY = {"learning_starts": 100, "n_members": 3, "hidden": (16, 16)}


def _params(agent: BayesDQN) -> list[torch.Tensor]:
    return [p.detach().clone() for p in agent.q_net.parameters()]


def test_same_seed_same_training_different_seed_differs() -> None:
    a = BayesDQN("CartPole-v1", seed=5, **TINY).learn(400)
    b = BayesDQN("CartPole-v1", seed=5, **TINY).learn(400)
    c = BayesDQN("CartPole-v1", seed=6, **TINY).learn(400)
    assert all(torch.equal(x, y) for x, y in zip(_params(a), _params(b)))
    assert not all(torch.equal(x, y) for x, y in zip(_params(a), _params(c)))


def test_training_does_not_touch_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    BayesDQN("CartPole-v1", seed=1, **TINY).learn(300)
    assert torch.equal(torch.rand(3), expected)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    agent = BayesDQN("CartPole-v1", seed=0, **TINY).learn(300)
    return agent.save(tmp_path_factory.mktemp("agent") / "dqn.riskrl")


def test_load_agent_dispatches_on_the_recorded_class(saved: Path) -> None:
    agent = load_agent(saved, risk_tolerance=1.5)
    assert isinstance(agent, BayesDQN) and agent.risk_tolerance == 1.5 and agent.num_timesteps == 300


def test_env_with_other_spaces_is_refused(saved: Path) -> None:
    with pytest.raises(ValueError, match="observation_space"):
        BayesDQN.load(saved, env=make_vec("Acrobot-v1"))


def test_other_agent_class_is_refused(saved: Path) -> None:
    with pytest.raises(CheckpointError, match="BayesMPC"):
        BayesMPC.load(saved)


def test_truncated_agent_checkpoint(saved: Path, tmp_path: Path) -> None:
    data = saved.read_bytes()
    (tmp_path / "cut.riskrl").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError):
        load_agent(tmp_path / "cut.riskrl")


def test_bad_overrides_and_learn_arguments(saved: Path) -> None:
    with pytest.raises(ValueError, match="only overrides risk_tolerance"):
        BayesDQN.load(saved, gamma=0.5)
    with pytest.raises(ValueError, match="risk_tolerance"):
        load_agent(saved, risk_tolerance=float("inf"))
    agent = load_agent(saved)
    for bad in (-1, 2.5, "10"):
        with pytest.raises(ValueError, match="total_timesteps"):
            agent.learn(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="checkpoint_dir"):
        agent.learn(10, checkpoint_every=5)


def test_resume_on_an_env_with_more_envs(saved: Path) -> None:
    agent = BayesDQN.load(saved, env=make_vec("CartPole-v1", num_envs=3))
    agent.learn_until(360)
    assert agent.num_timesteps >= 360


def test_evaluate_perturbation_ranges_are_seeded(saved: Path) -> None:
    from riskrl import evaluate

    agent = load_agent(saved)
    runs = [
        evaluate(agent, "CartPole-v1", n_episodes=20, seed=0, perturb={"length": (0.2, 3.0)})
        for _ in range(2)
    ]
    assert runs[0].returns.tolist() == runs[1].returns.tolist()


def test_buffer_refuses_more_than_capacity_at_once() -> None:
    from riskrl.agents import ReplayBuffer

    buf = ReplayBuffer(4, obs_dim=2)
    z = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="capacity"):
        buf.add(z, torch.zeros(5, dtype=torch.int64), torch.zeros(5), z, torch.zeros(5))


def test_generator_state_from_another_device_reseeds_with_a_warning() -> None:
    from riskrl.agents.base import restore_generator

    gen = torch.Generator()
    cuda_like_state = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state is 16 bytes
    with pytest.warns(RuntimeWarning, match="another device"):
        assert not restore_generator(gen, cuda_like_state, fallback_seed=3)
    assert torch.equal(
        torch.rand(2, generator=gen), torch.rand(2, generator=torch.Generator().manual_seed(3))
    )
    assert restore_generator(gen, torch.Generator().manual_seed(1).get_state(), fallback_seed=0)
