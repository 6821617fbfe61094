"""Provenance of experiment results (``riskrl.results.code_version``): the commit, and whether the code
differed from it; results files written earlier in the same checkout do not count as code changes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from riskrl.results import code_version

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_dirty_means_code_changed_not_results(tmp_path) -> None:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "experiments" / "results").mkdir(parents=True)
    (repo / "pkg" / "mod.py").write_text("x = 1\n")
    (repo / "experiments" / "results" / "run.json").write_text("{}\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    clean = code_version(repo / "pkg")
    assert clean["git_commit"] and len(clean["git_commit"]) == 40 and clean["git_dirty"] is False
    (repo / "experiments" / "results" / "run.json").write_text('{"new": 1}\n')  # a result rewritten
    (repo / "experiments" / "results" / "other.json").write_text("{}\n")  # and a new one
    assert code_version(repo / "pkg")["git_dirty"] is False
    (repo / "pkg" / "mod.py").write_text("x = 2\n")  # code changed
    assert code_version(repo / "pkg")["git_dirty"] is True
    assert code_version(tmp_path)["git_commit"] is None  # outside a checkout
