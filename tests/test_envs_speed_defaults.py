"""Fast defaults (issue #20): the step's own thread count, automatic compilation, cheap action checks,
and no change to torch's global state as seen by the caller."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from riskrl.envs import CartPoleVecEnv, PendulumVecEnv, make_vec


@pytest.fixture
def two_threads():
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(prev)


def test_step_and_rollout_never_change_the_callers_thread_count(two_threads) -> None:
    env = make_vec("CartPole-v1", 8)
    assert env.num_threads == 1  # CPU default: one thread inside the step
    env.reset(seed=0)
    seen = []

    def policy(obs):
        seen.append(torch.get_num_threads())
        return (obs[:, 2] > 0).long()

    env.step(torch.zeros(8, dtype=torch.long))
    assert torch.get_num_threads() == 2
    env.rollout(policy, 3)
    assert torch.get_num_threads() == 2
    assert seen == [1, 1, 1]  # the policy runs under the env's setting, inside the call
    with pytest.raises(ValueError):  # restored on errors too
        env.step(torch.full((8,), 5))
    assert torch.get_num_threads() == 2
    forced = make_vec("CartPole-v1", 8, num_threads=2)
    forced.reset(seed=0)
    forced.step(np.zeros(8, dtype=np.int64))
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="num_threads"):
        make_vec("CartPole-v1", 8, num_threads=0)


def test_step_leaves_global_rng_and_grad_mode_alone() -> None:
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    env = make_vec("Pendulum-v1", 4, obs_noise_std=0.1)
    env.reset(seed=1)
    env.rollout(lambda o: torch.zeros(4, 1), 5)
    assert torch.equal(torch.rand(3), want)
    assert torch.is_grad_enabled()


def test_invalid_actions_refused_clearly_by_default() -> None:
    env = make_vec("CartPole-v1", 4)
    env.reset(seed=0)
    for bad in (torch.tensor([0, 1, 2, 0]), np.array([0, -1, 0, 0])):
        with pytest.raises(ValueError, match=r"actions must be in \[0, 2\)"):
            env.step(bad)
    with pytest.raises(TypeError, match="integers"):
        env.step(torch.zeros(4))
    pend = make_vec("Pendulum-v1", 4)
    pend.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        pend.step(torch.tensor([[0.0], [float("nan")], [0.0], [0.0]]))


class _EagerlyAutoCompiled(CartPoleVecEnv):
    """Auto mode with the thresholds lowered so that a short test sees the switch."""

    AUTO_COMPILE_SECONDS = 20 * (
        CartPoleVecEnv.EAGER_STEP_OVERHEAD_S + 64 * CartPoleVecEnv.EAGER_STEP_PER_ENV_S
    )


def test_default_path_switches_to_compiled_and_matches_eager() -> None:
    """Auto mode compiles after its env-step budget and keeps the eager trajectory: flags identical,
    float64 states within 1e-9 (fused kernels may reorder float operations)."""
    auto = _EagerlyAutoCompiled(num_envs=64, max_episode_steps=40)
    eager = CartPoleVecEnv(num_envs=64, max_episode_steps=40, compile=False)
    assert auto._compile_mode is None and not auto._compiled
    auto.reset(seed=5)
    eager.reset(seed=5)
    gen = torch.Generator().manual_seed(0)
    for t in range(90):
        act = torch.randint(0, 2, (64,), generator=gen)
        oa, ra, ta, ua, _ = auto.step(act)
        oe, re, te, ue, _ = eager.step(act)
        assert torch.equal(ta, te) and torch.equal(ua, ue), t
        torch.testing.assert_close(ra, re, rtol=0, atol=0)
        torch.testing.assert_close(oa, oe, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(auto.state, eager.state, rtol=1e-9, atol=1e-9)
    assert auto._compiled  # switched after 20 steps
    assert not eager._compiled


def test_auto_compile_thresholds() -> None:
    after = CartPoleVecEnv.auto_compile_after
    assert 10_000 < after(1) and after(64) <= after(1)  # short runs of small batches stay eager
    assert 3_000 < after(4096) < 6_000 and 200 < after(65536) < 500
    assert CartPoleVecEnv(num_envs=4096)._auto_left == after(4096)
    assert CartPoleVecEnv(num_envs=4096, compile=False)._auto_left == -1
    assert PendulumVecEnv(num_envs=4096, compile=True)._compiled


def test_auto_compile_countdown_survives_a_checkpoint() -> None:
    """A resumed env switches to the compiled step where the original would have (bit-identical resumes)."""
    env = CartPoleVecEnv(num_envs=4096)
    env.reset(seed=0)
    for _ in range(3):
        env.step(torch.zeros(4096, dtype=torch.long))
    sd = env.state_dict()
    assert sd["auto_compile_left"] == env.auto_compile_after(4096) - 3
    fresh = CartPoleVecEnv(num_envs=4096)
    fresh.load_state_dict(sd)
    assert fresh._auto_left == sd["auto_compile_left"]
    sd["auto_compile_left"] = 0  # saved after the switch: the resumed env is compiled too
    fresh.load_state_dict(sd)
    assert fresh._compiled
    eager = CartPoleVecEnv(num_envs=4096, compile=False)
    eager.load_state_dict(sd)  # an explicit compile=False is kept
    assert not eager._compiled
