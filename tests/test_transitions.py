"""Terminal observations and autoreset modes, shared by every agent's transition bookkeeping."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from riskrl.agents.transitions import terminal_next_obs, uses_same_step_autoreset
from riskrl.envs import make_vec


def test_terminal_obs_from_tensor_and_numpy_object_array() -> None:
    next_obs = torch.zeros(3, 2)
    done = torch.tensor([False, True, False])
    final = torch.full((3, 2), 7.0)
    out = terminal_next_obs(next_obs, done, {"final_obs": final, "_final_obs": done})
    assert out.tolist() == [[0, 0], [7, 7], [0, 0]]
    objs = np.array([None, np.array([5.0, 6.0]), None], dtype=object)
    out = terminal_next_obs(next_obs, done, {"final_obs": objs, "_final_obs": done.numpy()})
    assert out.tolist() == [[0, 0], [5, 6], [0, 0]]
    # nothing ended: next_obs unchanged (a tensor final_obs is masked on the device, no host sync)
    assert torch.equal(
        terminal_next_obs(next_obs, torch.zeros(3, dtype=torch.bool), {"final_obs": final}), next_obs
    )
    assert terminal_next_obs(next_obs, torch.zeros(3, dtype=torch.bool), {"final_obs": objs}) is next_obs


def test_autoreset_modes() -> None:
    assert not uses_same_step_autoreset(make_vec("CartPole-v1"))
    assert uses_same_step_autoreset(make_vec("CartPole-v1", autoreset_mode=AutoresetMode.SAME_STEP))

    disabled = SimpleNamespace(metadata={"autoreset_mode": AutoresetMode.DISABLED})
    with pytest.raises(ValueError, match="NEXT_STEP or SAME_STEP"):
        uses_same_step_autoreset(disabled)
