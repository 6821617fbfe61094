"""The riskrl command: help everywhere, one-line errors with status 2, a train/evaluate round trip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from riskrl.cli import main

COMMANDS = ["train", "evaluate", "sweep", "bench", "plot", "demo"]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "riskrl", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_exits_zero(command: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["frobnicate"],
        ["train", "--steps", "-3"],
        ["train", "--risk-tolerance", "nan"],
        ["sweep", "--risk-tolerances", "a,b"],
        ["sweep", "--seeds", "1.5"],
        ["sweep", "--backend", "slurm"],
        ["bench", "--shift", "bad:length"],
        ["evaluate"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err and "Traceback" not in err


def test_errors_after_parsing_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tmp_path / "missing.riskrl")]) == 2
    assert main(["train", "--agent", "NoSuchAgent", "--steps", "10", "--out", str(tmp_path / "x")]) == 2
    assert main(["train", "--env", "NoSuchEnv-v9", "--steps", "10", "--out", str(tmp_path / "y")]) == 2
    assert main(["train", "--set", "no_such_param=1", "--steps", "10", "--out", str(tmp_path / "z")]) == 2
    assert main(["plot", str(tmp_path)]) == 2
    assert main(["train", "--device", "banana", "--steps", "10", "--out", str(tmp_path / "w")]) == 2
    (tmp_path / "evil.pt").write_bytes(b"\x80\x04K\x01.")
    assert main(["evaluate", str(tmp_path / "evil.pt")]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 7 and all(ln.startswith("riskrl ") and "error" in ln for ln in lines)


def test_train_evaluate_plot_round_trip(tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = _run(
        "train", "--steps", "600", "--seed", "1", "--out", str(run), "--quiet", "--set", "learning_starts=200"
    )
    assert done.returncode == 0, done.stderr
    assert (run / "model.riskrl").exists() and (run / "learning_curve.png").exists()
    assert (run / "episodes.csv").read_text().startswith("timestep,return,length")
    done = _run(
        "evaluate",
        str(run / "model.riskrl"),
        "--episodes",
        "12",
        "--risk-tolerance",
        "0",
        "--risk-tolerance",
        "1",
        "--perturb",
        "length=1.0",
        "--out",
        str(tmp_path / "ev"),
    )
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert set(data["results"]) == {"0.0", "1.0"} and data["perturb"] == {"length": 1.0}
    assert all(r["n_episodes"] == 12 for r in data["results"].values())
    assert "| 1 |" in (tmp_path / "ev" / "evaluation.md").read_text()
    done = _run("plot", str(run))
    assert done.returncode == 0, done.stderr
