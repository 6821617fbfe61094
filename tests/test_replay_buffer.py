"""Replay buffer episode links and n-step returns, checked against a hand-computed reference."""

from __future__ import annotations

import pytest
import torch

from riskrl.agents import ReplayBuffer


def _add_step(buf: ReplayBuffer, t: int, rewards, terminated, done, env_index=None) -> None:
    n = len(rewards)
    obs = torch.full((n, 1), float(t))
    envs = torch.arange(n) if env_index is None else env_index
    buf.add(
        obs,
        envs,  # the action records the env slot, so tests can tell rows apart
        torch.tensor(rewards, dtype=torch.float32),
        obs + 1,
        torch.tensor(terminated, dtype=torch.float32),
        done=torch.tensor(done),
        env_index=env_index,
    )


def _reference(episodes: list[list[tuple[float, bool, bool]]], n: int, gamma: float):
    """{(env, start step): (n-step return, gamma^m, terminated at the last step)} by direct summation."""
    out = {}
    for env, steps in enumerate(episodes):
        for i in range(len(steps)):
            ret, disc, term = 0.0, 1.0, False
            for k in range(n):
                r, term, done = steps[i + k]
                ret += disc * r
                disc *= gamma
                if done or i + k + 1 >= len(steps):
                    break
            out[(env, i)] = (ret, disc, term)
    return out


@pytest.mark.parametrize("n_step", [1, 3, 5])
def test_n_step_returns_match_direct_sums(n_step: int) -> None:
    gamma = 0.9
    buf = ReplayBuffer(1000, obs_dim=1, n_envs=2)
    gen = torch.Generator().manual_seed(0)
    # env 0: episode of 4 steps ending by termination, then 3 steps still running;
    # env 1: episode of 6 steps ending by truncation (done, not terminated), then 1 step.
    per_env = [[], []]
    term0 = [False, False, False, True, False, False, False]
    done0 = term0
    done1 = [False] * 5 + [True, False]
    for t in range(7):
        rewards = [float(t + 1), float(10 * (t + 1))]
        _add_step(buf, t, rewards, [term0[t], False], [done0[t], done1[t]])
        per_env[0].append((rewards[0], term0[t], done0[t]))
        per_env[1].append((rewards[1], False, done1[t]))
    ref = _reference(per_env, n_step, gamma)
    batch = buf.sample_n_step(2000, n_step, gamma, generator=gen)
    seen = set()
    rows = zip(
        batch["obs"][:, 0], batch["actions"], batch["rewards"], batch["discounts"], batch["terminated"]
    )
    for obs, env, r, disc, term in rows:
        t, env = int(obs), int(env)
        exp_r, exp_disc, exp_term = ref[(env, t)]
        assert float(r) == pytest.approx(exp_r, rel=1e-6)
        assert float(disc) == pytest.approx(exp_disc, rel=1e-6)
        assert bool(term) == exp_term
        seen.add((env, t))
    assert len(seen) == 14  # every stored transition was drawn and checked


def test_n_step_respects_masked_adds_and_overwrites() -> None:
    gamma = 0.5
    buf = ReplayBuffer(4, obs_dim=1, n_envs=2)
    _add_step(buf, 0, [1.0, 2.0], [False, False], [False, False])
    # only env 1 adds (env 0 was skipped, e.g. a NEXT_STEP reset step)
    _add_step(buf, 1, [4.0], [False], [False], env_index=torch.tensor([1]))
    _add_step(buf, 2, [8.0, 16.0], [False, False], [False, False])
    # buffer of 4 after 5 adds: env 0's first row (t=0) was overwritten by env 1's t=2 row
    batch = buf.sample_n_step(500, 3, gamma, generator=torch.Generator().manual_seed(1))
    got = {(float(o), float(r)) for o, r in zip(batch["obs"][:, 0], batch["rewards"])}
    # env 1 t=0: 2 + 0.5*4 + 0.25*16 = 8; env 1 t=1: 4 + 0.5*16 = 12; env 0 t=2: 8; env 1 t=2: 16
    assert got == {(0.0, 8.0), (1.0, 12.0), (2.0, 8.0), (2.0, 16.0)}


def test_n_step_links_survive_state_dict_round_trip() -> None:
    buf = ReplayBuffer(100, obs_dim=1, n_envs=2)
    for t in range(5):
        _add_step(buf, t, [1.0, 1.0], [False, False], [t == 2, False])
    copy = ReplayBuffer(100, obs_dim=1, n_envs=2)
    copy.load_state_dict(buf.state_dict())
    _add_step(buf, 5, [1.0, 1.0], [False, False], [False, False])
    _add_step(copy, 5, [1.0, 1.0], [False, False], [False, False])
    a = buf.sample_n_step(64, 4, 0.9, generator=torch.Generator().manual_seed(2))
    b = copy.sample_n_step(64, 4, 0.9, generator=torch.Generator().manual_seed(2))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_n_step_needs_links_and_valid_inputs() -> None:
    with pytest.raises(ValueError, match="n_envs"):
        ReplayBuffer(10, obs_dim=1).sample_n_step(4, 3, 0.9)
    buf = ReplayBuffer(10, obs_dim=1, n_envs=2)
    with pytest.raises(ValueError, match="done="):
        buf.add(torch.zeros(2, 1), torch.zeros(2), torch.zeros(2), torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="env_index"):
        buf.add(
            torch.zeros(1, 1),
            torch.zeros(1),
            torch.zeros(1),
            torch.zeros(1, 1),
            torch.zeros(1),
            done=torch.zeros(1),
        )
    _add_step(buf, 0, [1.0, 1.0], [False, False], [False, False])
    with pytest.raises(ValueError, match="n_step"):
        buf.sample_n_step(4, 0, 0.9)
