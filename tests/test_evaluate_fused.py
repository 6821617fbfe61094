"""evaluate(..., fuse=k): the fused rollout gives what the call-by-call loop gives (issue #20)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from riskrl import evaluate
from riskrl.agents import BayesDQN
from riskrl.envs import make_vec


def _lean(obs: torch.Tensor) -> torch.Tensor:
    return (obs[:, 2] > 0).long()


def _swing(obs: torch.Tensor) -> torch.Tensor:
    return (-2.0 * obs[:, 2:3] - obs[:, 1:2]).clamp(-2.0, 2.0)


@pytest.mark.parametrize(
    ("env_id", "policy", "mode"),
    [
        ("CartPole-v1", _lean, AutoresetMode.NEXT_STEP),
        ("CartPole-v1", _lean, AutoresetMode.SAME_STEP),
        ("Pendulum-v1", _swing, AutoresetMode.NEXT_STEP),
    ],
)
def test_fused_evaluation_equals_call_by_call(env_id, policy, mode) -> None:
    """Same episodes, same per-slot quotas (more episodes than envs, several per program run and some
    across program boundaries), returns to float rounding, lengths exactly."""
    horizon = 60 if env_id == "CartPole-v1" else 23  # CartPole: terminations and truncations
    kw = {"num_envs": 5, "autoreset_mode": mode, "compile": False, "max_episode_steps": horizon}
    plain = evaluate(policy, make_vec(env_id, **kw), n_episodes=13, seed=7, bootstrap=False)
    fused = evaluate(policy, make_vec(env_id, **kw), n_episodes=13, seed=7, bootstrap=False, fuse=8)
    assert fused.n_episodes == plain.n_episodes == 13
    np.testing.assert_array_equal(fused.lengths, plain.lengths)
    np.testing.assert_allclose(fused.returns, plain.returns, rtol=1e-9, atol=1e-9)
    if env_id == "CartPole-v1":  # episodes of different lengths: quotas and restarts mid-program
        assert len(set(plain.lengths.tolist())) > 5 and plain.lengths.max() == horizon


def test_fused_evaluation_of_an_agent_reports_the_same_epistemic_std() -> None:
    agent = BayesDQN("CartPole-v1", seed=3, hidden=(16, 16), n_members=3)
    kw = {"num_envs": 4, "compile": False}
    plain = evaluate(agent, make_vec("CartPole-v1", **kw), n_episodes=6, seed=11, bootstrap=False)
    fused = evaluate(agent, make_vec("CartPole-v1", **kw), n_episodes=6, seed=11, bootstrap=False, fuse=16)
    np.testing.assert_array_equal(fused.lengths, plain.lengths)
    np.testing.assert_allclose(fused.returns, plain.returns)
    assert fused.mean_epistemic_std == pytest.approx(plain.mean_epistemic_std, rel=1e-5)
    assert fused.mean_epistemic_std > 0


def test_fused_evaluation_refuses_what_it_cannot_compile() -> None:
    env = make_vec("CartPole-v1", num_envs=2)
    with pytest.raises(ValueError, match="fuse must be a non-negative integer"):
        evaluate(_lean, env, n_episodes=2, fuse=-1)
    agent = BayesDQN("CartPole-v1", seed=0, hidden=(8,), n_members=2)
    with pytest.raises(ValueError, match="deterministic=True"):
        evaluate(agent, env, n_episodes=2, fuse=4, deterministic=False)
    with pytest.raises(ValueError, match="riskrl batched env"):
        evaluate(_lean, gym.make_vec("CartPole-v1", num_envs=2), n_episodes=2, fuse=4)
