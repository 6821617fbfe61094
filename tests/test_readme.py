"""The README's quick start and offline example run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _first_python_block(heading: str) -> str:
    section = README.read_text().split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import torch; torch.set_num_threads(1)\n" + code],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_quick_start_runs(tmp_path: Path) -> None:
    done = _run(_first_python_block("## Quick start"), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "EvalResult(n=200" in done.stdout
    assert (tmp_path / "cartpole.riskrl").exists()


@pytest.mark.slow
def test_offline_example_runs(tmp_path: Path) -> None:
    """The "Learning from a dataset" example: collect, save and load without pickle, learn offline at
    the defaults, evaluate (the expert data give 500), fine-tune online."""
    done = _run(_first_python_block("## Learning from a dataset"), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    mean = re.search(r"EvalResult\(n=20, mean=([-\d.]+)", done.stdout)
    assert mean is not None and float(mean.group(1)) >= 400, done.stdout  # 500.00 here
    assert (tmp_path / "cartpole_expert.riskrl").exists()
