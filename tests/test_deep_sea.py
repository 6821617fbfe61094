"""The torch-batched deep_sea equals bsuite's ``DeepSea`` step for step (deterministic and stochastic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from riskrl.envs import make_vec
from riskrl.envs.deep_sea import DeepSeaVecEnv, bsuite_action_mapping

deep_sea_mod = pytest.importorskip("bsuite.environments.deep_sea")


class _FedRng:
    """Stands in for bsuite's ``np.random.RandomState``: returns the numbers the batched env drew."""

    def __init__(self) -> None:
        self.u = 0.0
        self.z = 0.0

    def rand(self) -> float:
        return self.u

    def randn(self) -> float:
        return self.z


def _run_lockstep(size: int, deterministic: bool, num_envs: int, n_steps: int, seed: int) -> None:
    env = DeepSeaVecEnv(num_envs=num_envs, size=size, deterministic=deterministic, mapping_seed=seed + 7)
    refs = [
        deep_sea_mod.DeepSea(size=size, deterministic=deterministic, mapping_seed=seed + 7)
        for _ in range(num_envs)
    ]
    feeds = [_FedRng() for _ in refs]
    for ref, feed in zip(refs, feeds):
        ref._rng = feed
    obs, _ = env.reset(seed=seed)
    ts = [ref.reset() for ref in refs]
    assert obs.dtype == torch.float32 and obs.shape == (num_envs, size * size)
    np.testing.assert_array_equal(obs.numpy(), np.stack([t.observation.reshape(-1) for t in ts]))
    rng = np.random.default_rng(seed)
    # mostly follow each cell's "right" action, so that episodes reach the rewarding corner often
    mapping = env.action_mapping.numpy().reshape(size, size)
    for _ in range(n_steps):
        u, z = env.peek_noise()
        rows_cols = [(ref._row, ref._column) for ref in refs]
        actions = np.array(
            [mapping[min(r, size - 1), c] if rng.random() < 0.8 else rng.integers(2) for r, c in rows_cols]
        )
        for i, feed in enumerate(feeds):
            feed.u, feed.z = float(u[i]), float(z[i])
        obs, reward, term, trunc, _ = env.step(torch.as_tensor(actions))
        ts = [ref.step(int(a)) for ref, a in zip(refs, actions)]
        np.testing.assert_array_equal(obs.numpy(), np.stack([t.observation.reshape(-1) for t in ts]))
        ref_reward = np.array([0.0 if t.reward is None else t.reward for t in ts])
        np.testing.assert_array_equal(reward.numpy(), ref_reward)  # float64, same order of operations
        ref_discount = np.array([1.0 if t.discount is None else t.discount for t in ts])
        np.testing.assert_array_equal(term.numpy(), ref_discount == 0.0)
        assert not trunc.any()
        np.testing.assert_array_equal(
            env.total_bad_episodes.numpy(), [ref.bsuite_info()["total_bad_episodes"] for ref in refs]
        )
        np.testing.assert_array_equal(
            env.denoised_return.numpy(), [ref.bsuite_info()["denoised_return"] for ref in refs]
        )


@pytest.mark.parametrize("size", [2, 5, 10])
def test_deterministic_matches_bsuite(size: int) -> None:
    _run_lockstep(size, deterministic=True, num_envs=16, n_steps=12 * (size + 1), seed=size)


@pytest.mark.parametrize("size", [3, 8])
def test_stochastic_matches_bsuite_with_the_same_draws(size: int) -> None:
    _run_lockstep(size, deterministic=False, num_envs=32, n_steps=12 * (size + 1), seed=100 + size)


def test_action_mapping_is_bsuites() -> None:
    ref = deep_sea_mod.DeepSea(size=12, mapping_seed=42)
    np.testing.assert_array_equal(bsuite_action_mapping(12, 42), ref._action_mapping)
    env = DeepSeaVecEnv(size=12, mapping_seed=42)
    np.testing.assert_array_equal(env.action_mapping.numpy().reshape(12, 12), ref._action_mapping)


def test_optimal_policy_and_stochastic_draws() -> None:
    size, n = 10, 4096
    env = DeepSeaVecEnv(num_envs=n, size=size, deterministic=False)
    env.reset(seed=0)
    mapping = env.action_mapping.view(size, size)
    slips, normals, returns = [], [], torch.zeros(n, dtype=torch.float64)
    for _ in range(size):
        u, z = env.peek_noise()
        slips.append(u <= 1 / size)
        normals.append(z)
        s = env.state.long()
        _, r, term, _, _ = env.step(mapping[s[:, 0], s[:, 1]])
        returns += r
    assert term.all()
    slip_rate = torch.stack(slips).double().mean().item()
    assert abs(slip_rate - 1 / size) < 0.01  # 40960 Bernoulli(0.1) draws: SD 0.0015
    z = torch.cat(normals)
    assert abs(z.mean().item()) < 0.03 and abs(z.std().item() - 1) < 0.03
    # always "right": reaches the corner unless a move slipped; bsuite's optimal return is the mean
    assert abs(returns.mean().item() - env.optimal_return) < 0.05
    det = DeepSeaVecEnv(num_envs=3, size=size)
    det.reset(seed=1)
    total = torch.zeros(3, dtype=torch.float64)
    for _ in range(size):
        s = det.state.long()
        _, r, _, _, _ = det.step(det.action_mapping.view(size, size)[s[:, 0], s[:, 1]])
        total += r
    torch.testing.assert_close(total, torch.full((3,), det.optimal_return, dtype=torch.float64))
    assert det.total_bad_episodes.sum() == 0 and (det.denoised_return == 1).all()


def test_same_step_autoreset_and_model_functions() -> None:
    size = 6
    env = DeepSeaVecEnv(num_envs=5, size=size, autoreset_mode=AutoresetMode.SAME_STEP, deterministic=False)
    obs, _ = env.reset(seed=3)
    gen = torch.Generator().manual_seed(0)
    for t in range(3 * size):
        a = torch.randint(0, 2, (5,), generator=gen)
        next_obs, r, term, _, info = env.step(a)
        assert bool(term.all()) == ((t + 1) % size == 0)
        target = info["final_obs"] if term.any() else next_obs
        # the expected reward model equals the reward except for the corner noise (mean 0)
        corner = obs.view(5, size, size)[:, size - 1, [0, size - 1]].sum(-1) > 0
        expected = env.reward_fn(obs, a, target)
        same = ~corner
        torch.testing.assert_close(expected[same], r[same].to(expected.dtype))
        assert torch.equal(env.termination_fn(obs, a, target), term)
        obs = next_obs
    assert (env.total_bad_episodes <= 3).all()


def test_make_vec_and_errors() -> None:
    env = make_vec("deep_sea", num_envs=2, size=8)
    assert isinstance(env, DeepSeaVecEnv) and env.single_observation_space.shape == (64,)
    with pytest.raises(ValueError, match="size"):
        DeepSeaVecEnv(size=1)
    with pytest.raises(ValueError, match="max_episode_steps"):
        DeepSeaVecEnv(size=4, max_episode_steps=10)
    with pytest.raises(ValueError, match="action_mapping"):
        DeepSeaVecEnv(size=4, action_mapping=np.full((4, 4), 2))
    env = DeepSeaVecEnv(size=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="actions"):
        env.step(torch.tensor([2]))
