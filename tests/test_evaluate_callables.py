"""riskrl.evaluate with plain callables: torch-style and numpy-style policies, detected or declared."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import riskrl


def numpy_policy(obs: np.ndarray) -> np.ndarray:
    return (obs[:, 2] > 0).astype(np.int64)  # numpy only: a torch tensor has no .astype


def torch_policy(obs: torch.Tensor) -> torch.Tensor:
    return (obs[:, 2] > 0).long()


def test_numpy_callables_are_detected_or_declared_and_match_torch_ones() -> None:
    kw = {"n_episodes": 30, "seed": 0, "bootstrap": False}
    ref = riskrl.evaluate(torch_policy, "CartPole-v1", **kw)
    seen: list[type] = []

    def spy(obs: np.ndarray) -> np.ndarray:
        seen.append(type(obs))
        return numpy_policy(obs)

    auto = riskrl.evaluate(spy, "CartPole-v1", **kw)
    assert seen[0] is torch.Tensor and set(seen[1:]) == {np.ndarray}  # one failed probe, then numpy
    declared = riskrl.evaluate(numpy_policy, "CartPole-v1", policy_input="numpy", **kw)
    for res in (auto, declared):
        np.testing.assert_array_equal(res.returns, ref.returns)
        np.testing.assert_array_equal(res.lengths, ref.lengths)
    assert ref.mean > 30  # the policy does something (random: ~22)
    listy = riskrl.evaluate(lambda obs: numpy_policy(obs).tolist(), "CartPole-v1", policy_input="numpy", **kw)
    np.testing.assert_array_equal(listy.returns, ref.returns)
    # continuous actions from numpy
    pend = riskrl.evaluate(
        lambda o: np.clip(-2.0 * o[:, 1:2], -2, 2), "Pendulum-v1", n_episodes=4, policy_input="numpy"
    )
    assert pend.lengths.tolist() == [200] * 4


def test_module_policies_called_with_autograd_on_evaluate() -> None:
    """An nn.Module policy returns actions attached to an autograd graph; evaluate detaches them
    (it used to fail converting the returns to numpy) and gets the same episodes as a no_grad call."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1), torch.nn.Tanh()
    )
    kw = {"n_episodes": 4, "seed": 0, "bootstrap": False}
    with_graph = riskrl.evaluate(lambda obs: 2 * net(obs.float()), "Pendulum-v1", **kw)
    with torch.no_grad():
        plain = riskrl.evaluate(lambda obs: 2 * net(obs.float()), "Pendulum-v1", **kw)
    np.testing.assert_array_equal(with_graph.returns, plain.returns)
    assert with_graph.returns.dtype == np.float64 and np.isfinite(with_graph.returns).all()


def test_callable_errors_are_clear() -> None:
    with pytest.raises(AttributeError, match="astype"):
        riskrl.evaluate(numpy_policy, "CartPole-v1", n_episodes=2, policy_input="torch")
    with pytest.raises(ValueError, match="policy_input"):
        riskrl.evaluate(numpy_policy, "CartPole-v1", n_episodes=2, policy_input="jax")
    with pytest.raises(TypeError, match=r"torch tensor .* numpy array"):
        riskrl.evaluate(lambda obs: obs.no_such_method(), "CartPole-v1", n_episodes=2)


def test_readme_callable_example_runs() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("A callable gets a batch of observations", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(code, scope)
    assert scope["result"].n_episodes == 100 and scope["result"].mean > 30
