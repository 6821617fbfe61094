"""Step-by-step parity of the torch-batched envs with gymnasium's reference implementations."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskrl.envs import (
    AcrobotVecEnv,
    CartPoleVecEnv,
    MountainCarContinuousVecEnv,
    MountainCarVecEnv,
    PendulumVecEnv,
)

SETTINGS = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
STEPS = 40


def _f(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def _run_parity(cls, gym_id, state, actions, gym_action, state_atol=1e-8, obs_atol=1e-6, reset_seed=0):
    """Inject ``state`` into both, step ``actions``; on termination re-inject gymnasium's reset state."""
    env = cls(num_envs=1, dtype=torch.float64)
    env.reset(seed=reset_seed)
    ref = gym.make(gym_id).unwrapped
    ref.reset(seed=reset_seed)
    ref.state = np.array(state, dtype=np.float64)
    env.state = torch.tensor([state], dtype=torch.float64)
    resets = 0
    for a in actions:
        ref_obs, ref_r, ref_term, _, _ = ref.step(gym_action(a))
        obs, r, term, trunc, _ = env.step(torch.tensor([a]) if isinstance(a, int) else torch.tensor([[a]]))
        np.testing.assert_allclose(
            env.state[0].numpy(), np.asarray(ref.state, dtype=np.float64), rtol=0, atol=state_atol
        )
        np.testing.assert_allclose(obs[0].numpy().astype(np.float32), ref_obs, rtol=0, atol=obs_atol)
        assert r[0].item() == pytest.approx(float(ref_r), abs=1e-6)
        assert bool(term[0]) == bool(ref_term)
        assert not bool(trunc[0])
        if ref_term:
            resets += 1
            ref_obs, _ = ref.reset(seed=reset_seed + resets)
            env.state = torch.as_tensor(np.asarray(ref.state, dtype=np.float64)).reshape(1, -1)
    return resets


@SETTINGS
@given(
    state=st.tuples(_f(-2.3, 2.3), _f(-3, 3), _f(-0.2, 0.2), _f(-3, 3)),
    actions=st.lists(st.integers(0, 1), min_size=STEPS, max_size=STEPS),
)
def test_cartpole_parity(state, actions):
    _run_parity(CartPoleVecEnv, "CartPole-v1", state, actions, int)


@SETTINGS
@given(
    state=st.tuples(_f(-math.pi, math.pi), _f(-math.pi, math.pi), _f(-12, 12), _f(-28, 28)),
    actions=st.lists(st.integers(0, 2), min_size=STEPS, max_size=STEPS),
)
def test_acrobot_parity(state, actions):
    _run_parity(AcrobotVecEnv, "Acrobot-v1", state, actions, int)


@SETTINGS
@given(
    state=st.tuples(_f(-1.2, 0.49), _f(-0.07, 0.07)),
    actions=st.lists(st.integers(0, 2), min_size=STEPS, max_size=STEPS),
)
def test_mountain_car_parity(state, actions):
    _run_parity(MountainCarVecEnv, "MountainCar-v0", state, actions, int)


@SETTINGS
@given(
    state=st.tuples(_f(-math.pi, math.pi), _f(-8, 8)),
    actions=st.lists(_f(-3.0, 3.0), min_size=STEPS, max_size=STEPS),
)
def test_pendulum_parity(state, actions):
    actions = [float(np.float32(a)) for a in actions]
    _run_parity(PendulumVecEnv, "Pendulum-v1", state, actions, lambda a: np.array([a], dtype=np.float32))


@SETTINGS
@given(
    state=st.tuples(_f(-1.2, 0.44), _f(-0.07, 0.07)),
    actions=st.lists(_f(-1.5, 1.5), min_size=STEPS, max_size=STEPS),
)
def test_mountain_car_continuous_parity(state, actions):
    # The reference keeps a float32 state after a step (with float32 arithmetic): compare at float32 precision.
    actions = [float(np.float32(a)) for a in actions]
    state = tuple(float(np.float32(x)) for x in state)
    env = MountainCarContinuousVecEnv(num_envs=1, dtype=torch.float64)
    env.reset(seed=0)
    ref = gym.make("MountainCarContinuous-v0").unwrapped
    ref.reset(seed=0)
    ref.state = np.array(state, dtype=np.float32)
    env.state = torch.tensor([state], dtype=torch.float64)
    for a in actions:
        ref_obs, ref_r, ref_term, _, _ = ref.step(np.array([a], dtype=np.float32))
        obs, r, term, _, _ = env.step(torch.tensor([[a]]))
        np.testing.assert_allclose(env.state[0].numpy(), ref.state, rtol=0, atol=1e-6)
        np.testing.assert_allclose(obs[0].numpy(), ref_obs, rtol=0, atol=1e-6)
        if bool(term[0]) != bool(ref_term):  # only allowed within float32 rounding of the goal
            assert abs(ref.state[0] - 0.45) < 1e-6 or abs(ref.state[1]) < 1e-6
            return
        assert r[0].item() == pytest.approx(float(ref_r), abs=1e-5)
        if ref_term:
            return


def test_batched_parity_with_perturbed_params():
    """N envs with different per-env physical parameters vs N reference envs with those attributes."""
    n = 6
    gravity = np.linspace(5.0, 15.0, n)
    length = np.linspace(0.3, 0.9, n)
    env = CartPoleVecEnv(
        num_envs=n, dtype=torch.float64, gravity=torch.tensor(gravity), length=torch.tensor(length)
    )
    env.reset(seed=1)
    refs = []
    for i in range(n):
        r = gym.make("CartPole-v1").unwrapped
        r.reset(seed=i)
        r.gravity, r.length = gravity[i], length[i]
        r.polemass_length = r.masspole * r.length
        refs.append(r)
    env.state = torch.tensor(np.stack([r.state for r in refs]))
    rng = np.random.default_rng(0)
    alive = np.ones(n, dtype=bool)
    for _ in range(60):
        a = rng.integers(0, 2, n)
        obs, _, term, _, _ = env.step(torch.as_tensor(a))
        for i in np.flatnonzero(alive):
            ref_obs, _, ref_term, _, _ = refs[i].step(int(a[i]))
            np.testing.assert_allclose(obs[i].numpy(), ref_obs, atol=1e-6)
            assert bool(term[i]) == ref_term
            alive[i] &= not ref_term
    assert not alive.all()  # some terminated, exercising the masks

    # Pendulum with different gravity / mass / length
    g = np.array([2.0, 9.81, 10.0, 15.0])
    env = PendulumVecEnv(num_envs=4, dtype=torch.float64, g=torch.tensor(g), m=(0.5, 1.5), l=1.2)
    env.reset(seed=0)
    refs = []
    for i in range(4):
        r = gym.make("Pendulum-v1").unwrapped
        r.reset(seed=10 + i)
        r.g, r.m, r.l = g[i], env.params["m"][i].item(), 1.2
        refs.append(r)
    env.state = torch.tensor(np.stack([r.state for r in refs]))
    for _ in range(50):
        a = rng.uniform(-2.5, 2.5, (4, 1)).astype(np.float32)
        obs, rew, _, _, _ = env.step(torch.as_tensor(a))
        for i in range(4):
            ref_obs, ref_r, _, _, _ = refs[i].step(a[i])
            np.testing.assert_allclose(obs[i].numpy(), ref_obs, atol=1e-6)
            assert rew[i].item() == pytest.approx(float(ref_r), abs=1e-9)
            np.testing.assert_allclose(env.state[i].numpy(), refs[i].state, atol=1e-8)


@pytest.mark.parametrize(
    "cls, low, high",
    [
        (CartPoleVecEnv, [-0.05] * 4, [0.05] * 4),
        (AcrobotVecEnv, [-0.1] * 4, [0.1] * 4),
        (MountainCarVecEnv, [-0.6, 0.0], [-0.4, 0.0]),
        (MountainCarContinuousVecEnv, [-0.6, 0.0], [-0.4, 0.0]),
        (PendulumVecEnv, [-math.pi, -1.0], [math.pi, 1.0]),
    ],
)
def test_initial_state_distribution(cls, low, high):
    env = cls(num_envs=4096, dtype=torch.float64)
    env.reset(seed=0)
    s = env.state.numpy()
    low, high = np.array(low), np.array(high)
    assert (s >= low).all() and (s <= high).all()
    wide = high > low
    # uniform: mean at the centre, std = width / sqrt(12)
    np.testing.assert_allclose(
        s.mean(0)[wide], ((low + high) / 2)[wide], atol=0.05 * (high - low)[wide].max()
    )
    np.testing.assert_allclose(s.std(0)[wide], ((high - low) / math.sqrt(12))[wide], rtol=0.05)
    np.testing.assert_array_equal(s[:, ~wide], np.broadcast_to(low[~wide], s[:, ~wide].shape))
    if cls is AcrobotVecEnv:  # the reference draws in float32
        np.testing.assert_array_equal(s, s.astype(np.float32).astype(np.float64))
    # the autoreset distribution (hash RNG) matches too
    env2 = cls(num_envs=4096, dtype=torch.float64, max_episode_steps=1)
    env2.reset(seed=0)
    a = torch.zeros(4096, dtype=torch.int64) if env2._discrete else torch.zeros(4096, 1)
    env2.step(a)
    _, rew, *_ = env2.step(a)  # NEXT_STEP: this step resets every env
    s2 = env2.state.numpy()
    assert (s2 >= low).all() and (s2 <= high).all()
    np.testing.assert_allclose(s2.std(0)[wide], ((high - low) / math.sqrt(12))[wide], rtol=0.05)
    assert (rew == 0).all()
