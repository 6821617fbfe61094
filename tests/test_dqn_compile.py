"""BayesDQN's ``compile=True`` path: the same Q values, TD losses and actions as the eager path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from riskrl.agents import BayesDQN
from riskrl.risk import lcb

OBS = torch.tensor(np.random.default_rng(0).normal(0.0, 0.5, size=(257, 4)), dtype=torch.float32)


@pytest.fixture(scope="module")
def compiled_agent() -> BayesDQN:
    """An agent trained briefly with compile=True (so its compiled TD loss has run)."""
    torch.manual_seed(0)
    agent = BayesDQN("CartPole-v1", seed=3, hidden=(32, 32), learning_starts=200, compile=True)
    agent.learn(400)
    return agent


def test_compile_true_goes_through_torch_compile(compiled_agent: BayesDQN) -> None:
    """The fast path really is compiled (so the equality tests below compare two paths)."""
    agent = compiled_agent
    for fn, eager in ((agent._q_members_fn, agent._q_members), (agent._td_errors_fn, agent._td_errors)):
        assert fn is not eager
        assert fn._torchdynamo_orig_callable == eager
    plain = BayesDQN("CartPole-v1", seed=3, hidden=(32, 32))
    assert plain._q_members_fn is None and plain._td_errors_fn == plain._td_errors


def test_compiled_and_eager_give_the_same_q_values_and_actions(compiled_agent: BayesDQN) -> None:
    agent = compiled_agent
    with torch.no_grad():
        compiled = agent._q_members_fn(OBS)
        eager = agent._q_members(OBS)
    assert compiled.shape == (agent.config.n_members, len(OBS), 2)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    # predict goes through the compiled forward; its actions are the eager scores' argmax
    mean, std = eager.mean(0), eager.std(0, correction=0)
    for k in (0.0, 1.0, -1.0):
        agent.risk_tolerance = k
        actions, _ = agent.predict(OBS.numpy(), deterministic=True)
        score = lcb(mean, std, k)
        expected = score.argmax(-1).numpy()
        clear = (
            (score[:, 0] - score[:, 1]).abs() > 1e-4
        ).numpy()  # rows whose choice is not a float-rounding tie
        assert clear.mean() > 0.9
        np.testing.assert_array_equal(actions[clear], expected[clear])
    agent.risk_tolerance = 0.0


def test_compiled_td_loss_equals_eager(compiled_agent: BayesDQN) -> None:
    agent = compiled_agent
    batch = agent.buffer.sample_n_step(64, 1, agent.config.gamma, generator=torch.Generator().manual_seed(1))
    args = [batch[k] for k in ("obs", "actions", "rewards", "discounts", "terminated", "next_obs")]
    for beta in (None, 1.0):
        compiled = agent._td_errors_fn(*args, beta)
        eager = agent._td_errors(*args, beta)
        assert compiled.shape == (agent.config.n_members, 64)
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
        # gradients through the compiled graph match the eager ones
        agent.q_net.zero_grad(set_to_none=True)
        compiled.sum().backward()
        grads_c = [p.grad.clone() for p in agent.q_net.parameters() if p.grad is not None]
        agent.q_net.zero_grad(set_to_none=True)
        eager.sum().backward()
        grads_e = [p.grad.clone() for p in agent.q_net.parameters() if p.grad is not None]
        agent.q_net.zero_grad(set_to_none=True)
        assert len(grads_c) == len(grads_e) > 0
        for gc, ge in zip(grads_c, grads_e, strict=True):
            torch.testing.assert_close(gc, ge, rtol=1e-4, atol=1e-5)


def test_compiled_agent_saves_and_loads(compiled_agent: BayesDQN, tmp_path) -> None:
    path = tmp_path / "compiled.riskrl"
    compiled_agent.save(path)
    loaded = BayesDQN.load(path)
    assert loaded.config.compile is True
    np.testing.assert_array_equal(
        loaded.predict(OBS.numpy(), deterministic=True)[0],
        compiled_agent.predict(OBS.numpy(), deterministic=True)[0],
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"compile": True, "family": "bbb"}, ValueError, "compile=True needs family='ensemble'"),
        ({"compile": True, "family": "mc_dropout"}, ValueError, "compile=True needs family='ensemble'"),
        ({"compile": "yes"}, TypeError, "compile must be a bool"),
    ],
)
def test_bad_compile_settings_are_refused(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        BayesDQN("CartPole-v1", **kwargs)
