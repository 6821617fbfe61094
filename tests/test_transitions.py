"""Terminal observations and autoreset modes, shared by every agent's transition bookkeeping."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from riskrl.envs import make_vec
from riskrl.envs.autoreset import AutoresetMask, terminal_next_obs, uses_same_step_autoreset


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


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_autoreset_mask_marks_exactly_the_reset_steps(mode: AutoresetMode) -> None:
    """Under NEXT_STEP the step after a done (and only it) is not live; under SAME_STEP every step is.
    Checked against the env itself: a NEXT_STEP reset step returns the reset obs, reward 0, no done."""
    env = make_vec("CartPole-v1", num_envs=3, autoreset_mode=mode)
    mask = AutoresetMask(env, 3, "cpu")
    env.reset(seed=0)
    push_right = torch.ones(3, dtype=torch.int64)  # falls over within ~10 steps
    saw_reset_step = False
    prev_done = torch.zeros(3, dtype=torch.bool)
    for _ in range(40):
        _, reward, term, trunc, _ = env.step(push_right)
        done = torch.as_tensor(term | trunc)
        expected_live = ~prev_done if mode == AutoresetMode.NEXT_STEP else torch.ones(3, dtype=torch.bool)
        assert torch.equal(mask.live, expected_live)
        if mode == AutoresetMode.NEXT_STEP and bool(prev_done.any()):
            saw_reset_step = True
            assert not bool(done[prev_done].any()) and bool((reward[prev_done] == 0).all())
        assert (mask.valid() is None) == (mode == AutoresetMode.SAME_STEP)
        mask.update(done)
        prev_done = done & expected_live
    assert saw_reset_step == (mode == AutoresetMode.NEXT_STEP)
