"""A training run killed with SIGKILL resumes from its last checkpoint with ``learn_until`` and ends
bit-identical to an uninterrupted run with the same seed (parameters, optimizer, replay buffer, RNG
states)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TOTAL = 2_400
SCRIPT = rf"""
import sys, time
from pathlib import Path
import torch
from safetensors.torch import save_file
from riskrl.agents import BayesDQN, BaseCallback, load_agent

torch.set_num_threads(1)
mode, workdir = sys.argv[1], Path(sys.argv[2])
kwargs = dict(learning_starts=300, buffer_size=5_000, n_members=4, hidden=(32, 32))

class HangAfter(BaseCallback):
    # Simulates a long job: after step 1500 it stops making progress and waits to be killed.
    def _on_step(self):
        if self.num_timesteps >= 1_500:
            (workdir / "hanging").write_text(str(self.num_timesteps))
            time.sleep(600)
        return True

if mode == "uninterrupted":
    agent = BayesDQN("CartPole-v1", seed=7, **kwargs)
    agent.learn({TOTAL})
elif mode == "killed":
    agent = BayesDQN("CartPole-v1", seed=7, **kwargs)
    agent.learn({TOTAL}, callback=HangAfter(), checkpoint_every=500, checkpoint_dir=workdir / "ckpt")
elif mode == "resume":
    agent = load_agent(workdir / "ckpt" / "agent_latest.riskrl")
    assert 0 < agent.num_timesteps < {TOTAL}, agent.num_timesteps
    (workdir / "resumed_from").write_text(str(agent.num_timesteps))
    agent.learn_until({TOTAL})
state = {{"q." + k: v for k, v in agent.q_net.state_dict().items()}}
state.update({{"target." + k: v for k, v in agent.target_net.state_dict().items()}})
state["buffer.obs"] = agent.buffer.obs[: agent.buffer.size].clone()
state["rng"] = agent.rng.get_state()
save_file({{k: v.contiguous() for k, v in state.items()}}, workdir / f"{{mode}}.safetensors")
"""


def _python(tmp_path: Path, *args: str, **kw) -> subprocess.Popen:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    return subprocess.Popen([sys.executable, str(script), *args, str(tmp_path)], **kw)


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path: Path) -> None:
    ref = _python(tmp_path, "uninterrupted")
    victim = _python(tmp_path, "killed")
    deadline = time.monotonic() + 240
    while not (tmp_path / "hanging").exists():
        assert victim.poll() is None, "the training process ended before it could be killed"
        assert time.monotonic() < deadline, "training did not reach the kill point in time"
        time.sleep(0.2)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    ckpt_dir = tmp_path / "ckpt"
    assert (ckpt_dir / "agent_latest.riskrl").exists()
    assert not [p for p in ckpt_dir.iterdir() if p.name.endswith(".tmp")]

    assert _python(tmp_path, "resume").wait(timeout=300) == 0
    assert ref.wait(timeout=300) == 0
    # the hang callback runs before the step-1500 checkpoint is written, so the last one is 1000
    assert int((tmp_path / "resumed_from").read_text()) == 1_000
    expected = load_file(tmp_path / "uninterrupted.safetensors")
    got = load_file(tmp_path / "resume.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
