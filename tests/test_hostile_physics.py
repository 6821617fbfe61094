"""Physics that refuses nonsense: non-finite or non-physical parameters are refused by name, and
evaluate never reports a result computed from non-finite states."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import riskrl
from riskrl.envs import ENV_IDS, make_vec
from riskrl.envs.base import POSITIVE_PARAMS
from riskrl.envs.perturbation import Perturbation
from riskrl.sweep import SweepConfig

BAD_POSITIVE = [math.nan, math.inf, 0.0, -1.0]


def _cases() -> list[tuple[str, str, float]]:
    out = []
    for env_id, cls in ENV_IDS.items():
        for name in cls.param_defaults:
            values = BAD_POSITIVE if name in POSITIVE_PARAMS else [math.nan, -math.inf, -1.0]
            out += [(env_id, name, v) for v in values]
    return out


@pytest.mark.parametrize(("env_id", "name", "value"), _cases())
def test_perturb_and_constructor_refuse_nonphysical_values(env_id: str, name: str, value: float) -> None:
    env = make_vec(env_id, num_envs=3)
    before = env.params[name].clone()
    with pytest.raises(ValueError, match=name):
        env.perturb(**{name: value})
    torch.testing.assert_close(env.params[name], before)  # nothing half-applied
    with pytest.raises(ValueError, match=name):
        make_vec(env_id, num_envs=2, **{name: value})


def test_ranges_and_per_env_values_are_checked_too() -> None:
    env = make_vec("CartPole-v1", num_envs=3)
    with pytest.raises(ValueError, match="length"):
        env.perturb(length=(0.0, 1.0))  # could sample a zero-length pole
    with pytest.raises(ValueError, match="masspole"):
        env.perturb(masspole=np.array([0.1, math.nan, 0.1]))
    with pytest.raises(ValueError, match="tau"):
        env.perturb(tau=torch.tensor([0.02, 0.0, 0.02]))
    with pytest.raises(ValueError, match="obs_noise_std"):
        env.perturb(obs_noise_std=-0.1)
    with pytest.raises(ValueError, match="length must be a number"):
        env.perturb(length="abc")
    env.perturb(length=(0.5, 1.5), gravity=0.0, force_mag=0.0)  # zero gravity / force are physical
    assert bool((env.params["length"] >= 0.5).all())


def test_pendulum_with_zero_mass_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="m must be > 0"):
        riskrl.evaluate(
            lambda obs: torch.zeros(obs.shape[0], 1), "Pendulum-v1", n_episodes=2, perturb={"m": 0.0}
        )


def test_evaluate_refuses_nan_parameters_instead_of_a_perfect_score() -> None:
    def policy(obs: torch.Tensor) -> torch.Tensor:
        return (obs[:, 2] > 0).to(torch.int64)

    with pytest.raises(ValueError, match="length"):
        riskrl.evaluate(policy, "CartPole-v1", n_episodes=4, perturb={"length": math.nan})


def test_evaluate_refuses_results_from_nonfinite_states() -> None:
    """Valid-looking but extreme parameters that overflow the dynamics: refused, parameter named."""

    def policy(obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(obs.shape[0], dtype=torch.int64)

    with pytest.raises(ValueError, match=r"non-finite states.*length=1e-300"):
        riskrl.evaluate(policy, "CartPole-v1", n_episodes=4, perturb={"length": 1e-300, "masspole": 1e300})
    env = make_vec("CartPole-v1", num_envs=2, length=1e-300, masspole=1e300)
    with pytest.raises(ValueError, match=r"non-finite states.*(length|masspole)"):
        riskrl.evaluate(policy, env, n_episodes=2)
    # the same policy under sane physics evaluates normally
    assert riskrl.evaluate(policy, "CartPole-v1", n_episodes=4).n_episodes == 4


def test_sweep_config_refuses_bad_perturbations_before_training() -> None:
    for params, pattern in (
        ({"length": math.nan}, "length must be finite"),
        ({"length": -1.0}, "length must be > 0"),
        ({"tau": 0.0}, "tau must be > 0"),
        ({"no_such": 1.0}, "unknown parameter 'no_such'"),
    ):
        config = SweepConfig(perturbations=(Perturbation(), Perturbation("bad", params)))
        with pytest.raises(ValueError, match=pattern):
            config.validate()
