"""make_vec(..., randomize={...}): parameters resampled per env at every reset, seeded, in range."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from riskrl.envs import SB3VecEnv, make_vec

RANGES = {"length": (0.25, 1.0), "masspole": (0.05, 0.3)}


@pytest.mark.parametrize(
    ("mode", "compile"),
    [(AutoresetMode.NEXT_STEP, False), (AutoresetMode.SAME_STEP, False), (AutoresetMode.NEXT_STEP, True)],
)
def test_resampled_in_range_at_resets_only(mode, compile) -> None:
    env = make_vec("CartPole-v1", 64, randomize=RANGES, autoreset_mode=mode, compile=compile)
    env.reset(seed=3)
    for name, (lo, hi) in RANGES.items():
        v = env.params[name]
        assert bool(((v >= lo) & (v <= hi)).all())
        assert len(torch.unique(v)) > 50  # differs across envs
    assert not torch.equal(env.params["length"], env.params["masspole"])
    before = {k: v.clone() for k, v in env.params.items()}
    started_total = 0
    for _ in range(120):
        prev_done = env._prev_done.clone()
        _, _, term, trunc, _ = env.step(torch.randint(0, 2, (64,)))
        started = prev_done if mode == AutoresetMode.NEXT_STEP else (term | trunc)
        for name in RANGES:
            changed = env.params[name] != before[name]
            assert bool((changed <= started).all()), "a parameter changed outside a reset"
            assert bool(((env.params[name] >= RANGES[name][0]) & (env.params[name] <= RANGES[name][1])).all())
        started_total += int(started.sum())
        assert bool((env.params["length"][started] != before["length"][started]).all())
        before = {k: v.clone() for k, v in env.params.items()}
    assert started_total > 50
    assert bool((env.params["gravity"] == 9.8).all())  # others untouched


def test_reproducible_from_the_seed_and_different_across_seeds() -> None:
    def trace(seed):
        env = make_vec("CartPole-v1", 16, randomize=RANGES)
        env.reset(seed=seed)
        out = [env.params["length"].clone()]
        for _ in range(60):
            env.step(torch.zeros(16, dtype=torch.int64))
            out.append(env.params["length"].clone())
        return torch.stack(out)

    assert torch.equal(trace(1), trace(1))
    assert not torch.equal(trace(1), trace(2))


def test_explicit_masked_reset_resamples_only_the_masked_envs() -> None:
    env = make_vec("Pendulum-v1", 8, randomize={"m": (0.5, 2.0)})
    env.reset(seed=0)
    m0 = env.params["m"].clone()
    mask = torch.tensor([True, False] * 4)
    env.reset(options={"reset_mask": mask})
    assert bool((env.params["m"][~mask] == m0[~mask]).all())
    assert bool((env.params["m"][mask] != m0[mask]).all())


def test_dynamics_use_the_drawn_parameters() -> None:
    """A randomized env steps exactly like an env perturbed with the values it drew."""
    env = make_vec("Pendulum-v1", 32, randomize={"m": (0.5, 2.0), "l": (0.5, 1.5)})
    env.reset(seed=5)
    ref = make_vec("Pendulum-v1", 32, m=env.params["m"], l=env.params["l"])
    ref.reset(seed=0)
    ref.state = env.state
    actions = torch.linspace(-2, 2, 32).reshape(32, 1)
    for _ in range(10):
        obs, *_ = env.step(actions)
        ref_obs, *_ = ref.step(actions)
        torch.testing.assert_close(obs, ref_obs)


def test_sb3_sees_the_randomized_physics() -> None:
    venv = SB3VecEnv(make_vec("CartPole-v1", 8, randomize=RANGES, autoreset_mode=AutoresetMode.SAME_STEP))
    venv.seed(0)
    venv.reset()
    lengths = venv.env.params["length"].clone()
    dones = 0
    for _ in range(200):
        *_, done, _ = venv.step(np.ones(8, dtype=np.int64))
        dones += int(done.sum())
    assert dones > 8  # always pushing right: episodes end fast, and each new one draws new physics
    assert bool((venv.env.params["length"] != lengths).all())


@pytest.mark.parametrize(
    ("randomize", "match"),
    [
        ({"lenght": (0.1, 1.0)}, "lenght"),
        ({"length": (0.0, 1.0)}, "length"),
        ({"length": (-1.0, 1.0)}, "length"),
        ({"length": (0.5, math.nan)}, "length"),
        ({"length": (1.0, 0.5)}, "length"),
        ({"length": 0.5}, "length"),
        ({"length": (0.1, 0.2, 0.3)}, "length"),
        ([("length", (0.1, 1.0))], "randomize"),
    ],
)
def test_bad_ranges_are_refused_naming_the_parameter(randomize, match) -> None:
    with pytest.raises(ValueError, match=match):
        make_vec("CartPole-v1", 4, randomize=randomize)
