"""CLI errors are never tracebacks: user errors one line / exit 2, internal errors one line / exit 1
pointing to --debug; crafted files, bad values, unreachable Ray clusters and SIGTERM handled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_corpus import read_parts, write_parts

from riskrl.agents import BayesDQN
from riskrl.cli import main
from riskrl.envs.perturbation import Perturbation
from riskrl.sweep import SweepConfig


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    agent = BayesDQN("CartPole-v1", seed=0, hidden=(8,), n_members=2, learning_starts=10, buffer_size=100)
    agent.learn(20)
    return agent.save(tmp_path_factory.mktemp("model") / "model.riskrl")


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_bad_perturb_value_is_a_one_line_user_error(model: Path, capsys) -> None:
    assert main(["evaluate", str(model), "--episodes", "2", "--perturb", "length=abc"]) == 2
    assert "--perturb length: expected a number, got 'abc'" in _one_line(capsys)
    assert main(["evaluate", str(model), "--episodes", "2", "--perturb", "length=-1"]) == 2
    assert "length must be > 0" in _one_line(capsys)
    assert main(["evaluate", str(model), "--episodes", "2", "--perturb", "wheels=3"]) == 2
    assert "unknown parameter" in _one_line(capsys)


def test_crafted_files_never_print_a_traceback(model: Path, tmp_path: Path, capsys) -> None:
    manifest, tensors = read_parts(model)
    manifest["kind"] = ["BayesDQN"]
    kind_list = write_parts(tmp_path / "kind_list.riskrl", manifest, tensors)
    deep = tmp_path / "deep.riskrl"
    deep.write_bytes(b"PK" + b"[" * 100_000)
    os.mkfifo(tmp_path / "fifo.riskrl")
    for path in (kind_list, deep, tmp_path / "fifo.riskrl", Path("/dev/zero"), tmp_path):
        assert main(["evaluate", str(path), "--episodes", "2"]) == 2
        assert "riskrl evaluate: error:" in _one_line(capsys)


def test_internal_errors_exit_1_and_point_to_debug(model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise ValueError("an internal bug, not the user's input")

    monkeypatch.setattr(BayesDQN, "learn", broken)
    argv = ["train", "--steps", "10", "--out", str(tmp_path / "run"), "--quiet"]
    assert main(argv) == 1  # a ValueError from inside riskrl is not a usage error
    line = _one_line(capsys)
    assert (
        "internal error: ValueError: an internal bug" in line and "--debug" in line and "RISKRL_DEBUG" in line
    )
    assert not (tmp_path / "run").exists()  # nothing left behind
    with pytest.raises(ValueError, match="internal bug"):
        main(["--debug", *argv])
    with pytest.raises(ValueError, match="internal bug"):
        main([*argv, "--debug"])
    monkeypatch.setenv("RISKRL_DEBUG", "1")
    with pytest.raises(ValueError, match="internal bug"):
        main(argv)


def test_set_names_the_key_and_the_list_syntax(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--set", "hidden=abc", "--steps", "10", "--out", str(out), "--quiet"]) == 2
    line = _one_line(capsys)
    assert "--set hidden=abc: expected a list of integers, e.g. --set hidden=64,64" in line
    assert not out.exists()  # no empty checkpoint folder
    assert main(["train", "--set", "learning_starts=ten", "--steps", "10", "--out", str(out), "--quiet"]) == 2
    assert "--set learning_starts=ten: expected an integer" in _one_line(capsys)
    assert main(["train", "--set", "n_members=0", "--steps", "10", "--out", str(out), "--quiet"]) == 2
    assert "n_members" in _one_line(capsys) and not out.exists()


def test_set_accepts_comma_lists(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["train", "--set", "hidden=8,8", "--set", "n_members=2", "--set", "learning_starts=10"]
    assert main([*argv, "--steps", "20", "--out", str(out), "--quiet"]) == 0
    assert BayesDQN.load(out / "model.riskrl").config.hidden == (8, 8)


def test_train_out_onto_an_existing_file(tmp_path: Path, capsys) -> None:
    target = tmp_path / "taken"
    target.write_text("not a directory")
    assert main(["train", "--steps", "10", "--out", str(target), "--quiet"]) == 2
    assert f"--out {target} is an existing file, not a directory" in _one_line(capsys)
    assert main(["train", "--steps", "10", "--out", str(target / "sub"), "--quiet"]) == 2
    assert "is an existing file" in _one_line(capsys)


def test_evaluate_on_an_env_with_other_spaces(model: Path, capsys) -> None:
    assert main(["evaluate", str(model), "--env", "Acrobot-v1", "--episodes", "2"]) == 2
    line = _one_line(capsys)
    assert "model and env spaces differ" in line and "Box(4,)" in line and "Box(6,)" in line


def test_evaluations_are_not_overwritten_silently(model: Path, tmp_path: Path, capsys) -> None:
    local = tmp_path / "m" / "model.riskrl"
    local.parent.mkdir()
    local.write_bytes(model.read_bytes())
    base = ["evaluate", str(local), "--episodes", "2"]
    assert main(base) == 0 and main(base) == 0
    first = json.loads((local.parent / "evaluation" / "evaluation.json").read_text())
    assert (local.parent / "evaluation-2" / "evaluation.json").exists() and first["results"]
    out = str(tmp_path / "ev")
    assert main([*base, "--out", out]) == 0
    capsys.readouterr()
    assert main([*base, "--out", out]) == 2
    assert "already holds an evaluation; pass --overwrite" in _one_line(capsys)
    assert main([*base, "--out", out, "--overwrite"]) == 0


def test_unreachable_ray_address_fails_within_the_timeout(tmp_path: Path, capsys) -> None:
    start = time.monotonic()
    argv = ["sweep", "--backend", "ray", "--address", "127.0.0.1:1", "--ray-timeout", "5", "--seeds", "0"]
    assert main([*argv, "--steps", "10", "--episodes", "1", "--out", str(tmp_path / "sw")]) == 2
    assert time.monotonic() - start < 5
    assert "cannot reach a Ray cluster at '127.0.0.1:1'" in _one_line(capsys)
    assert not (tmp_path / "sw").exists()


def test_ray_probe_is_killed_after_the_timeout() -> None:
    """An address that accepts TCP but is no Ray cluster: ConnectionError within the timeout."""
    import socket

    from riskrl.sweep import check_ray_address

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        start = time.monotonic()
        with pytest.raises(ConnectionError, match="Ray cluster"):
            check_ray_address(f"127.0.0.1:{server.getsockname()[1]}", timeout=3.0)
        assert time.monotonic() - start < 10


def test_sigterm_stops_a_sweep_and_its_workers(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskrl", "sweep", "--seeds", "0,1", "--workers", "2", "--steps", "1000000",
         "--episodes", "1", "--quiet", "--out", str(tmp_path / "sw")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:  # the pool's workers exist
        time.sleep(0.2)
    time.sleep(1.0)
    children = _children(proc.pid)
    assert len(children) >= 2
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    deadline = time.monotonic() + 20
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(c) for c in children)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"seeds": (-1,)}, "seed must be an integer >= 0"),
        ({"seeds": (True,)}, "seed must be an integer"),
        ({"n_eval_episodes": 0}, "n_eval_episodes"),
        ({"total_timesteps": 2.5}, "total_timesteps"),
        ({"env_id": "NoSuchEnv-v9"}, "unknown env id"),
        ({"device": "banana"}, "invalid device"),
        ({"agent_kwargs": {"hidden": "abc"}}, "agent_kwargs"),
        ({"agent_kwargs": {"no_such": 1}}, "unknown hyperparameter"),
        ({"alpha": 0.0}, "alpha"),
        ({"failure_threshold": float("nan")}, "failure_threshold"),
        (
            {"perturbations": (Perturbation(), Perturbation("x", {"length": float("inf")}))},
            "length must be finite",
        ),
    ],
)
def test_sweep_config_validates_everything_before_training(overrides: dict, match: str) -> None:
    config = SweepConfig(**overrides)
    with pytest.raises(ValueError, match=match):
        config.validate()
