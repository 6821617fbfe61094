"""TerminalValue (BayesMPC's learnt value beyond the horizon): n-step expectile TD on replay data."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from riskrl.agents import BayesMPC, ReplayBuffer
from riskrl.agents.value import TerminalValue


def _chain_buffer(episodes: int, length: int, final_reward) -> ReplayBuffer:
    """A 1-D chain ``x_t = t / length``; each episode ends by termination after ``length`` steps with
    ``final_reward(episode)`` on its last transition and 0 elsewhere."""
    buf = ReplayBuffer(episodes * length, obs_dim=1, n_envs=1)
    for e in range(episodes):
        for t in range(length):
            last = t == length - 1
            buf.add(
                torch.tensor([[t / length]]),
                torch.zeros(1, dtype=torch.int64),
                torch.tensor([final_reward(e) if last else 0.0]),
                torch.tensor([[(t + 1) / length]]),
                torch.tensor([float(last)]),
                done=torch.tensor([last]),
            )
    return buf


def _fit(buf: ReplayBuffer, expectile: float, gamma: float = 0.9) -> TerminalValue:
    torch.manual_seed(0)  # network init only; sampling uses the generator below
    value = TerminalValue(
        1,
        hidden=(32, 32),
        n_members=3,
        gamma=gamma,
        n_step=4,
        expectile=expectile,
        steps=1500,
        lr=3e-3,
        tau=0.05,
    )
    value.fit(buf, torch.Generator().manual_seed(0))
    return value


def test_value_recovers_discounted_chain_returns() -> None:
    length, gamma = 10, 0.9
    value = _fit(_chain_buffer(20, length, lambda e: 1.0), expectile=0.5, gamma=gamma)
    states = torch.arange(length, dtype=torch.float32).div(length).view(1, -1, 1).expand(3, -1, -1)
    with torch.no_grad():
        got = value.particles(3)(states)  # (3 members, 10 states)
    expected = gamma ** (length - 1 - torch.arange(length, dtype=torch.float32))
    torch.testing.assert_close(got.mean(0), expected, atol=0.05, rtol=0)


@pytest.mark.parametrize("expectile", [0.5, 0.8])
def test_expectile_leans_towards_the_best_outcomes(expectile: float) -> None:
    # Half of the episodes end with reward 1, half with 0: the tau-expectile of that Bernoulli(0.5)
    # is tau, so V(last state) = tau (mean TD would give 0.5 for every expectile).
    value = _fit(_chain_buffer(40, 3, lambda e: float(e % 2)), expectile=expectile, gamma=1.0)
    last = torch.tensor([[[2 / 3]]]).expand(3, 1, 1)
    with torch.no_grad():
        v_last = float(value.particles(3)(last).mean())
    assert v_last == pytest.approx(expectile, abs=0.06)


def test_value_target_moves_by_tau_and_its_adam_persists_across_fits() -> None:
    """Each gradient step moves the target by ``tau`` towards the net (``tau = 1``: a copy) and the
    target standardises like the net; the Adam state carries over between fits and through
    ``state_dict``, so a restored value continues exactly as the original."""
    buf = _chain_buffer(4, 5, lambda e: 1.0)
    torch.manual_seed(0)
    value = TerminalValue(1, hidden=(8,), n_members=2, steps=1, tau=0.5)
    net0 = [p.detach().clone() for p in value.net.parameters()]
    assert math.isfinite(value.fit(buf, torch.Generator().manual_seed(0)))
    for t, a, b in zip(value.target.parameters(), net0, value.net.parameters()):
        torch.testing.assert_close(t, a.lerp(b, 0.5))
        assert not torch.equal(a, b)
    for t, b in zip(value.target.buffers(), value.net.buffers()):
        assert torch.equal(t, b)  # the input standardiser fitted to the buffer, in both
    assert float(value.net.x_scaler.mean) != 0.0

    torch.manual_seed(1)
    value = TerminalValue(1, hidden=(8,), n_members=2, steps=3, tau=1.0)
    value.fit(buf, torch.Generator().manual_seed(0))
    assert all(torch.equal(t, p) for t, p in zip(value.target.parameters(), value.net.parameters()))
    restored = TerminalValue(1, hidden=(8,), n_members=2, steps=3, tau=1.0)
    restored.load_state_dict(copy.deepcopy(value.state_dict()))
    for v in (value, restored):
        v.fit(buf, torch.Generator().manual_seed(1))
        assert int(next(iter(v.trainer.optimizer.state.values()))["step"]) == 6
    for a, b in zip(value.net.parameters(), restored.net.parameters()):
        assert torch.equal(a, b)


def test_value_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="expectile"):
        TerminalValue(2, expectile=1.0)
    with pytest.raises(ValueError, match="n_step"):
        TerminalValue(2, n_step=0)
    with pytest.raises(ValueError, match="value_expectile"):
        BayesMPC("Pendulum-v1", terminal_value=True, value_expectile=0.3)
    with pytest.raises(ValueError, match="empty"):
        TerminalValue(1).fit(ReplayBuffer(4, obs_dim=1, n_envs=1), torch.Generator())


def test_mpc_terminal_value_is_added_to_plan_returns_and_saved(tmp_path) -> None:
    kw = dict(
        learning_starts=100,
        retrain_interval=100,
        horizon=4,
        population=20,
        n_elites=4,
        cem_iterations=2,
        value_steps=30,
    )
    agent = BayesMPC("Pendulum-v1", seed=0, terminal_value=True, **kw).learn(150)
    assert agent.value is not None and agent.trained
    obs = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.5]])
    acts = torch.zeros(2, 3, 4, 1)
    with_value = agent.predicted_returns(obs, acts, torch.Generator().manual_seed(0))
    value, agent.value = agent.value, None
    without = agent.predicted_returns(obs, acts, torch.Generator().manual_seed(0))
    agent.value = value
    # same rollouts (same generator): the difference is V of each particle's final predicted state
    assert not torch.allclose(with_value, without)
    agent.save(tmp_path / "mpc.zip")
    loaded = BayesMPC.load(tmp_path / "mpc.zip")
    assert loaded.value is not None
    for a, b in zip(loaded.value.net.parameters(), agent.value.net.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(
        loaded.predicted_returns(obs, acts, torch.Generator().manual_seed(0)), with_value, rtol=0, atol=0
    )
