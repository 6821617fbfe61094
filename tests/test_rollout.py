"""``env.rollout(policy, n)`` gives exactly what stepping call by call gives (issue #20)."""

from __future__ import annotations

import pytest
import torch
from gymnasium.vector import AutoresetMode

from riskrl.envs import CartPoleVecEnv, PendulumVecEnv


def _cart_policy(obs: torch.Tensor) -> torch.Tensor:
    return (obs[:, 2] + 0.3 * obs[:, 3] > 0).long()


def _pend_policy(obs: torch.Tensor) -> torch.Tensor:
    return (-2.0 * obs[:, 2:3] - obs[:, 1:2]).clamp(-2.0, 2.0)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize(("cls", "policy"), [(CartPoleVecEnv, _cart_policy), (PendulumVecEnv, _pend_policy)])
def test_rollout_equals_step_by_step(cls, policy, mode) -> None:
    kw = {"num_envs": 16, "max_episode_steps": 25, "autoreset_mode": mode, "obs_noise_std": 0.01}
    a, b = cls(**kw), cls(**kw)
    obs_a, _ = a.reset(seed=3)
    obs_b, _ = b.reset(seed=3)
    ro = a.rollout(policy, 70, obs=obs_a)
    o = obs_b
    n_done = 0
    for t in range(70):
        act = policy(o)
        o, r, term, trunc, info = b.step(act)
        torch.testing.assert_close(ro.actions[t], act.to(ro.actions.dtype), rtol=0, atol=0)
        torch.testing.assert_close(ro.obs[t], o, rtol=0, atol=0)
        torch.testing.assert_close(ro.rewards[t], r, rtol=0, atol=0)
        assert torch.equal(ro.terminated[t], term) and torch.equal(ro.truncated[t], trunc)
        done = term | trunc
        n_done += int(done.sum())
        if mode == AutoresetMode.SAME_STEP:
            want = torch.where(done.unsqueeze(-1), info["final_obs"], 0.0) if done.any() else 0 * o
            torch.testing.assert_close(ro.final_obs[t], want, rtol=0, atol=0)
        else:
            assert ro.final_obs is None
    assert n_done >= 16 * 2  # truncations at 25 steps: autoresets were exercised
    # both envs end in the same state and continue identically
    torch.testing.assert_close(a.state, b.state, rtol=0, atol=0)
    ro2 = a.rollout(policy, 5, obs=ro.obs[-1])
    for t in range(5):
        o, r, *_ = b.step(policy(o))
        torch.testing.assert_close(ro2.obs[t], o, rtol=0, atol=0)


def test_rollout_refuses_invalid_actions_and_bad_arguments() -> None:
    env = CartPoleVecEnv(num_envs=4)
    with pytest.raises(RuntimeError, match="reset"):
        env.rollout(_cart_policy, 3)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must be in \[0, 2\)"):
        env.rollout(lambda o: torch.full((4,), 2), 3)
    with pytest.raises(ValueError, match="n_steps"):
        env.rollout(_cart_policy, 0)
    pend = PendulumVecEnv(num_envs=4)
    pend.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        pend.rollout(lambda o: torch.full((4, 1), float("nan")), 2)


def test_rollout_checks_each_steps_actions_once(monkeypatch) -> None:
    """Eager (or above the in-program threshold) a rollout checks each step's action values once,
    not once in the rollout and again in the step; a bad action at step 3 is still refused."""
    env = CartPoleVecEnv(num_envs=4, compile=False)
    env.reset(seed=0)
    calls = []
    check = env._validate_action_values
    monkeypatch.setattr(env, "_validate_action_values", lambda a: (calls.append(1), check(a))[1])
    env.rollout(_cart_policy, 6)
    assert len(calls) == 6
    seen = []

    def late_bad(o: torch.Tensor) -> torch.Tensor:
        seen.append(1)
        return torch.full((4,), 2) if len(seen) == 3 else _cart_policy(o)

    with pytest.raises(ValueError, match=r"actions must be in \[0, 2\)"):
        env.rollout(late_bad, 5)
    assert len(seen) == 3


@pytest.mark.parametrize(
    ("cls", "policy", "mode"),
    [
        (CartPoleVecEnv, _cart_policy, AutoresetMode.NEXT_STEP),
        (CartPoleVecEnv, _cart_policy, AutoresetMode.SAME_STEP),
        (PendulumVecEnv, _pend_policy, AutoresetMode.NEXT_STEP),
    ],
)
def test_fused_rollout_matches_call_by_call(cls, policy, mode) -> None:
    """``fuse=k``: k steps of policy + env as one compiled scan, run ``n_steps / k`` times; flags and
    actions identical to call-by-call stepping, observations / rewards / final observations to float
    rounding (fused kernels may reorder float operations), autoresets inside and across programs."""
    kw = {"num_envs": 8, "max_episode_steps": 5, "compile": False, "autoreset_mode": mode}
    a, b = cls(**kw), cls(**kw)
    oa, _ = a.reset(seed=2)
    ob, _ = b.reset(seed=2)
    ro = a.rollout(policy, 12, obs=oa, fuse=4)
    for t in range(12):
        act = policy(ob)
        ob, r, term, trunc, info = b.step(act)
        assert torch.equal(ro.actions[t], act.to(ro.actions.dtype))
        assert torch.equal(ro.terminated[t], term) and torch.equal(ro.truncated[t], trunc)
        torch.testing.assert_close(ro.obs[t], ob, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ro.rewards[t], r)
        if mode == AutoresetMode.SAME_STEP:
            done = term | trunc
            want = torch.where(done.unsqueeze(-1), info["final_obs"], 0.0) if done.any() else 0 * ob
            torch.testing.assert_close(ro.final_obs[t], want, rtol=1e-6, atol=1e-6)
        else:
            assert ro.final_obs is None
    assert ro.truncated[4:8].any() and ro.truncated[8:].any()  # autoresets in two program runs
    # the env's own buffers were carried through: both continue identically, call by call
    torch.testing.assert_close(a.state, b.state, rtol=1e-9, atol=1e-9)
    oa = ro.obs[-1]
    for _ in range(3):
        oa, ra, ta, ua, _ = a.step(policy(oa))
        ob, rb, tb, ub, _ = b.step(policy(ob))
        assert torch.equal(ta, tb) and torch.equal(ua, ub)
        torch.testing.assert_close(oa, ob, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ra, rb)


def test_fused_rollout_refuses_invalid_actions_and_unsupported_envs() -> None:
    """One invalid action anywhere in a program run raises and leaves the env where it was; noise,
    randomize and a ``fuse`` that does not divide ``n_steps`` are refused by name."""
    shift = torch.zeros((), dtype=torch.long)

    def policy(o: torch.Tensor) -> torch.Tensor:
        return (o[:, 2] + 0.3 * o[:, 3] > 0).long() + shift

    env = CartPoleVecEnv(num_envs=8, max_episode_steps=5, compile=False)
    env.reset(seed=2)
    ro = env.rollout(policy, 8, fuse=4)
    before = env.state
    shift.fill_(2)  # every action out of range: refused, env unchanged
    with pytest.raises(ValueError, match=r"actions must be in \[0, 2\).*restored"):
        env.rollout(policy, 4, obs=ro.obs[-1], fuse=4)
    torch.testing.assert_close(env.state, before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="divide"):
        env.rollout(policy, 6, fuse=4)
    for kw, what in (({"obs_noise_std": 0.1}, "noise"), ({"randomize": {"length": (0.4, 0.6)}}, "randomize")):
        other = CartPoleVecEnv(num_envs=4, compile=False, **kw)
        other.reset(seed=0)
        with pytest.raises(ValueError, match=what):
            other.rollout(_cart_policy, 4, fuse=4)
    with pytest.raises(ValueError, match="shape"):  # the policy's output is checked before compiling
        env.rollout(lambda o: torch.zeros(3, dtype=torch.long), 4, fuse=4)


@pytest.mark.parametrize("fuse", [0, 4])
def test_rollout_records_what_the_policy_returns_beside_its_actions(fuse) -> None:
    """A policy returning ``(actions, extra)`` gets ``extra`` back per step, call by call and fused."""

    def policy(o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _cart_policy(o), o[:, 2].abs()

    env = CartPoleVecEnv(num_envs=6, max_episode_steps=5, compile=False)
    obs, _ = env.reset(seed=4)
    ro = env.rollout(policy, 8, obs=obs, fuse=fuse)
    assert ro.policy_extra is not None and ro.policy_extra.shape == (8, 6)
    seen = torch.cat((obs.unsqueeze(0), ro.obs[:-1]))  # the observation each action was chosen from
    torch.testing.assert_close(ro.policy_extra, seen[:, :, 2].abs())
    assert torch.equal(ro.actions, (seen[:, :, 2] + 0.3 * seen[:, :, 3] > 0).long())
    assert env.rollout(_cart_policy, 4, fuse=fuse).policy_extra is None
