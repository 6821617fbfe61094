"""The step compiled ahead of time (``riskrl.envs.aot``): same trajectories as eager, live parameters,
one program per configuration, a disk cache that is reused and survives a broken file (issue #20)."""

from __future__ import annotations

import pytest
import torch
from gymnasium.vector import AutoresetMode

from riskrl.envs import CartPoleVecEnv, PendulumVecEnv
from riskrl.envs import aot as aot_module
from riskrl.envs import base as base_module
from riskrl.envs.aot import AotStep


def _run_pair(eager, comp, steps: int, seed: int = 0) -> None:
    """Step both envs with the same actions; flags and counters exactly equal, floats to rounding."""
    eager.reset(seed=seed)
    comp.reset(seed=seed)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        if eager._discrete:
            a = torch.randint(0, 2, (eager.num_envs,), generator=gen)
        else:
            a = torch.rand(eager.num_envs, 1, generator=gen, dtype=torch.float64) * 4 - 2
        oe, re, te, ue, _ = eager.step(a)
        oc, rc, tc, uc, _ = comp.step(a)
        assert torch.equal(te, tc) and torch.equal(ue, uc)
        torch.testing.assert_close(oc, oe, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(rc, re, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(comp.state, eager.state, rtol=1e-9, atol=1e-9)


def test_aot_step_follows_parameters_set_after_compiling_and_randomization() -> None:
    """perturb() after the program was compiled reaches it (the env's tensors are its inputs), and
    domain randomization's per-reset draws (written by the program itself) match eager."""
    kw = {"num_envs": 16, "max_episode_steps": 20}
    eager, comp = CartPoleVecEnv(**kw, compile=False), CartPoleVecEnv(**kw, compile=True)
    _run_pair(eager, comp, 5)
    assert isinstance(comp._core_fn, AotStep) and comp._core_fn._run is not None
    for env in (eager, comp):
        env.perturb(length=torch.linspace(0.2, 1.5, 16, dtype=torch.float64), force_mag=4.0)
    _run_pair(eager, comp, 60, seed=3)
    kw = {"num_envs": 8, "max_episode_steps": 7, "randomize": {"m": (0.5, 2.0), "l": (0.5, 1.5)}}
    eager, comp = PendulumVecEnv(**kw, compile=False), PendulumVecEnv(**kw, compile=True)
    _run_pair(eager, comp, 30)
    torch.testing.assert_close(comp.params["m"], eager.params["m"], rtol=0, atol=0)
    assert comp._core_fn._run is not None


def test_action_noise_takes_the_torch_compile_step_with_the_same_draws() -> None:
    kw = {"num_envs": 8, "max_episode_steps": 30, "action_noise_std": 0.2}
    eager, comp = CartPoleVecEnv(**kw, compile=False), CartPoleVecEnv(**kw, compile=True)
    _run_pair(eager, comp, 40)
    assert comp._core_fn._run is None  # never needed the ahead-of-time program


def test_disk_cache_is_reused_and_a_broken_file_is_replaced(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RISKRL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(aot_module, "_PROGRAMS", {})
    env = CartPoleVecEnv(num_envs=5, compile=True)
    env.reset(seed=0)
    env.step(torch.zeros(5, dtype=torch.long))
    (cached,) = (tmp_path / "aot").glob("*.pt2")
    want = env.step(torch.ones(5, dtype=torch.long))

    # a new process (empty in-memory cache) loads the file: no compile happens
    monkeypatch.setattr(aot_module, "_PROGRAMS", {})

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled although the program was cached on disk")

    with monkeypatch.context() as m:
        m.setattr(torch._inductor, "aoti_compile_and_package", no_compile)
        again = CartPoleVecEnv(num_envs=5, compile=True)
        again.reset(seed=0)
        again.step(torch.zeros(5, dtype=torch.long))
        got = again.step(torch.ones(5, dtype=torch.long))
    assert again._core_fn._run is not None and not again._core_fn._failed
    for x, y in zip(want[:4], got[:4], strict=True):
        torch.testing.assert_close(y, x, rtol=0, atol=0)

    # a broken file is compiled again and replaced
    cached.write_bytes(b"not a package")
    monkeypatch.setattr(aot_module, "_PROGRAMS", {})
    third = CartPoleVecEnv(num_envs=5, compile=True)
    third.reset(seed=0)
    third.step(torch.zeros(5, dtype=torch.long))
    assert third._core_fn._run is not None and cached.stat().st_size > 1000


def test_no_disk_cache_when_the_cache_dir_is_empty(monkeypatch) -> None:
    monkeypatch.setenv("RISKRL_CACHE_DIR", "")
    env = CartPoleVecEnv(num_envs=6, compile=True)
    assert env._core_fn._cache_file(env._core_fn.key()) is None


@pytest.mark.parametrize("n", [1, 6])
def test_aot_step_refuses_invalid_actions_like_eager(n) -> None:
    env = CartPoleVecEnv(num_envs=n, compile=True)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must be in \[0, 2\)"):
        env.step(torch.full((n,), 2))


def _env_buffers(env) -> list[torch.Tensor]:
    return [t.clone() for t in (env._s, env._steps, env._prev_u8, env._ep_ret, env._ep_len, env._counter)]


#: configurations the first test of this file compiles: the tests below reuse their programs
_CARTPOLE_KW = {"num_envs": 16, "max_episode_steps": 20}
_PENDULUM_KW = {"num_envs": 8, "max_episode_steps": 7, "randomize": {"m": (0.5, 2.0), "l": (0.5, 1.5)}}


@pytest.mark.parametrize(("cls", "kw"), [(CartPoleVecEnv, _CARTPOLE_KW), (PendulumVecEnv, _PENDULUM_KW)])
def test_compiled_step_refuses_invalid_actions_inside_its_program_and_changes_nothing(cls, kw) -> None:
    """The compiled step checks the actions in its own program (no separate reduction): an invalid
    batch raises the eager path's error, leaves every buffer (state, step counts, episode sums, the
    autoreset flag, the random stream's counter, randomized physics) as it was, and the trajectory
    continues exactly as in an env that never saw it; also right after episodes end (Pendulum's
    7-step horizon: the refused step is the one that would autoreset, and the pending reset survives)."""
    clean, comp = cls(**kw, compile=True), cls(**kw, compile=True)
    for env in (clean, comp):
        env.reset(seed=4)
    n, discrete = comp.num_envs, comp._discrete
    gen = torch.Generator().manual_seed(0)
    if discrete:
        bad = torch.zeros(n, dtype=torch.long)
        bad[2] = -1
    else:
        bad = torch.zeros(n, 1, dtype=torch.float64)
        bad[3, 0] = float("nan")
    refused = 0
    for t in range(8):
        if discrete:
            a = torch.randint(0, 2, (n,), generator=gen)
        else:
            a = (torch.rand(n, 1, generator=gen) * 4 - 2).to(torch.float64)
        if t % 2:  # every other step first tries an invalid batch (t = 7: right after episodes end)
            if t == 7 and not discrete:
                assert bool(comp._prev_done.all())  # every episode ended at step 7: resets pending
            before = [*_env_buffers(comp), *(v.clone() for v in comp.params.values())]
            with pytest.raises(ValueError, match=r"actions must be in \[0, 2\)" if discrete else "NaN"):
                comp.step(bad)
            after = [*_env_buffers(comp), *comp.params.values()]
            for x, y in zip(before, after, strict=True):
                assert torch.equal(x, y)
            refused += 1
        oc, rc, tc, uc, _ = comp.step(a)
        oe, re, te, ue, _ = clean.step(a)
        assert torch.equal(oc, oe) and torch.equal(rc, re) and torch.equal(tc, te) and torch.equal(uc, ue)
    assert refused == 4 and isinstance(comp._core_fn, AotStep) and comp._core_fn._run is not None
    for name, value in comp.params.items():
        assert torch.equal(value, clean.params[name])


def test_validation_switched_off_after_compiling_gets_its_own_program() -> None:
    """``validate_actions`` is baked into the compiled program (its check is one of the outputs):
    switching it recompiles, and with it off the program has no check left (nothing raises)."""
    env = CartPoleVecEnv(**_CARTPOLE_KW, compile=True)
    env.reset(seed=0)
    env.step(torch.zeros(16, dtype=torch.long))
    assert env._core_fn._keep[-1] == 8
    unchecked = torch.zeros(16, dtype=torch.long)
    unchecked[5] = 2
    env.validate_actions = False
    env.step(unchecked)  # unchecked, as asked (CartPole treats 2 as "not 1")
    assert 8 not in env._core_fn._keep
    env.validate_actions = True
    with pytest.raises(ValueError, match=r"actions must be in \[0, 2\)"):
        env.step(unchecked)


def test_large_batches_check_actions_before_the_compiled_step(monkeypatch) -> None:
    """Above ``_IN_PROGRAM_CHECK_MAX_ENVS`` envs the check inside the program costs more than it saves:
    the program has no check (the validation-off program of the test above is reused) and one
    reduction before the step refuses an invalid batch with the same error, the env untouched."""
    monkeypatch.setattr(base_module, "_IN_PROGRAM_CHECK_MAX_ENVS", 8)
    env = CartPoleVecEnv(**_CARTPOLE_KW, compile=True)
    env.reset(seed=0)
    env.step(torch.zeros(16, dtype=torch.long))
    assert not env._check_in_program and env._core_fn._keep == (0, 1, 2, 3)
    bad = torch.zeros(16, dtype=torch.long)
    bad[9] = 2
    before = _env_buffers(env)
    with pytest.raises(ValueError, match=r"actions must be in \[0, 2\)"):
        env.step(bad)
    for x, y in zip(before, _env_buffers(env), strict=True):
        assert torch.equal(x, y)


def _episode_info(info: dict) -> tuple[torch.Tensor, ...] | None:
    if "episode" not in info:
        return None
    return info["episode"]["r"], info["episode"]["l"], info["_episode"]


@pytest.mark.parametrize("n", [16, 300])
def test_episode_statistics_switched_on_after_compiling_reach_the_step(n) -> None:
    """The compiled program leaves out ``done`` and the episode sums while statistics are off (the
    default); switching them on later (as agents do) recompiles the step, and its ``info["episode"]``
    equals eager's, on both sides of the bool / uint8 flag threshold."""
    kw = {"num_envs": n, "max_episode_steps": 9}
    eager, comp = CartPoleVecEnv(**kw, compile=False), CartPoleVecEnv(**kw, compile=True)
    _run_pair(eager, comp, 4)
    assert comp._core_fn._keep == (0, 1, 2, 3, 8)
    eager.episode_statistics = comp.episode_statistics = True
    gen = torch.Generator().manual_seed(5)
    seen = 0
    for _ in range(20):
        a = torch.randint(0, 2, (n,), generator=gen)
        oe, _, te, ue, ie = eager.step(a)
        oc, _, tc, uc, ic = comp.step(a)
        assert tc.dtype == torch.bool and uc.dtype == torch.bool
        assert torch.equal(te, tc) and torch.equal(ue, uc)
        torch.testing.assert_close(oc, oe, rtol=1e-6, atol=1e-6)
        want, got = _episode_info(ie), _episode_info(ic)
        assert (want is None) == (got is None)
        if want is not None:
            seen += 1
            torch.testing.assert_close(got[0], want[0], rtol=1e-9, atol=1e-9)
            assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])
    assert seen >= 2  # the 9-step horizon ends episodes in the window
    assert comp._core_fn._keep == (0, 1, 2, 3, 4, 5, 6, 8)


def test_same_step_autoreset_without_statistics_matches_eager_at_a_large_batch() -> None:
    """SAME_STEP without episode statistics: the program returns ``done`` and ``final_obs`` but not the
    episode sums; with 300 envs its flags come back as uint8 and the step reinterprets them."""
    kw = {"num_envs": 300, "max_episode_steps": 8, "autoreset_mode": AutoresetMode.SAME_STEP}
    eager, comp = CartPoleVecEnv(**kw), CartPoleVecEnv(**kw, compile=True)
    _run_pair(eager, comp, 3)
    assert comp._core_fn._keep == (0, 1, 2, 3, 4, 7, 8)
    gen = torch.Generator().manual_seed(2)
    for _ in range(12):
        a = torch.randint(0, 2, (300,), generator=gen)
        ie, ic = eager.step(a)[4], comp.step(a)[4]
        assert set(ie) == set(ic)
        if "_final_obs" in ic:
            assert ic["_final_obs"].dtype == torch.bool and torch.equal(ie["_final_obs"], ic["_final_obs"])
            torch.testing.assert_close(ic["final_obs"], ie["final_obs"], rtol=1e-6, atol=1e-6)


def test_disk_cache_keeps_only_the_most_recently_used_programs(tmp_path) -> None:
    """Every riskrl / torch version and env configuration writes its own program: the cache folder
    keeps the newest ones (by last use) and deletes the rest instead of growing without bound."""
    import os

    for i in range(6):
        f = tmp_path / f"CartPoleVecEnv-{i}.pt2"
        f.write_bytes(b"x")
        os.utime(f, (1_000_000 + i, 1_000_000 + i))
    (tmp_path / "notes.txt").write_text("not a program")
    os.utime(tmp_path / "CartPoleVecEnv-1.pt2")  # used just now
    aot_module._prune(tmp_path, keep=3)
    left = sorted(f.name for f in tmp_path.iterdir())
    assert left == ["CartPoleVecEnv-1.pt2", "CartPoleVecEnv-4.pt2", "CartPoleVecEnv-5.pt2", "notes.txt"]
