"""The wheel installs riskrl, riskrl.envs and riskrl.agents, and never top-level envs/agents."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        cwd=out,
    )
    (whl,) = out.glob("riskrl-*.whl")
    return whl


def test_wheel_contents_have_no_top_level_envs_or_agents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_levels = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_levels == {"riskrl"}
    assert "riskrl/envs/__init__.py" in names
    assert "riskrl/agents/__init__.py" in names
    assert "riskrl/bayes/__init__.py" in names
    assert "riskrl/py.typed" in names


def test_wheel_installs_into_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # Dependencies come from the current environment's site-packages (no network needed); a path
    # added through a .pth line does not run that directory's own .pth files, so the editable
    # install of the checkout stays invisible.
    fresh_site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(fresh_site, "parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)

    neutral = tmp_path / "neutral"
    neutral.mkdir()
    probe = (
        "import riskrl, riskrl.envs, riskrl.agents, riskrl.bayes; "
        "print(riskrl.__version__); print(riskrl.__file__)"
    )
    done = subprocess.run([str(py), "-c", probe], cwd=neutral, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    version, location = done.stdout.split()
    assert str(env_dir) in location
    import riskrl

    assert version == riskrl.__version__
    for module in ("envs", "agents"):
        failed = subprocess.run(
            [str(py), "-c", f"import {module}"], cwd=neutral, capture_output=True, text=True
        )
        assert failed.returncode != 0
        assert "ModuleNotFoundError" in failed.stderr


def test_console_script_version_and_help() -> None:
    exe = Path(sys.executable).parent / "riskrl"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    import riskrl

    assert out.stdout.strip() == f"riskrl {riskrl.__version__}"
    assert subprocess.run([str(exe), "--help"], capture_output=True).returncode == 0
    bad = subprocess.run([str(exe), "--no-such-flag"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
