"""Checkpoints: round trip, atomic writes, and refusal of anything that could execute code."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import riskrl.atomic
from riskrl.checkpoint import (
    MANIFEST,
    TENSORS,
    CheckpointError,
    atomic_write_bytes,
    load_checkpoint,
    read_manifest,
    save_checkpoint,
)


def _optimizer_state() -> dict:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {"net": net.state_dict(), "opt": opt.state_dict()}


def test_round_trip_nested_state(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(3)
    state = {
        "model": _optimizer_state(),
        "rng": gen.get_state(),
        "np_rng": np.random.default_rng(5).bit_generator.state,
        "buffer": np.arange(6, dtype=np.float32).reshape(2, 3),
        "steps": 1234,
        "pair": (1.5, "x", None, True),
        "inf": float("inf"),
    }
    path = save_checkpoint(tmp_path / "a.riskrl", state, kind="Thing", metadata={"lr": 0.1})
    loaded, manifest = load_checkpoint(path, kind="Thing")
    assert manifest["metadata"] == {"lr": 0.1}
    assert manifest["versions"]["torch"] == torch.__version__
    for k, v in state["model"]["net"].items():
        torch.testing.assert_close(loaded["model"]["net"][k], v)
    opt_state = loaded["model"]["opt"]
    assert set(opt_state["state"]) == {0, 1}  # int keys survive
    torch.testing.assert_close(opt_state["state"][0]["exp_avg"], state["model"]["opt"]["state"][0]["exp_avg"])
    assert opt_state["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(loaded["rng"], state["rng"])
    assert loaded["np_rng"] == state["np_rng"]
    np.testing.assert_array_equal(loaded["buffer"], state["buffer"])
    assert loaded["steps"] == 1234 and loaded["pair"] == (1.5, "x", None, True)
    assert loaded["inf"] == float("inf")
    # the loaded optimizer state is usable
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net.load_state_dict(loaded["model"]["net"])
    opt.load_state_dict(opt_state)


class _Boom:
    marker: Path

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil(tmp_path: Path) -> _Boom:
    boom = _Boom()
    boom.marker = tmp_path / "PWNED"
    return boom


def test_refuses_torch_save_archive_without_executing(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"x": _evil(tmp_path)}, path)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


def test_refuses_raw_pickle(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_evil(tmp_path)))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


def test_refuses_sb3_zip(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, device="cpu")
    model.save(tmp_path / "ppo.zip")
    with pytest.raises(CheckpointError, match=r"stable-baselines3|pickle"):
        load_checkpoint(tmp_path / "ppo.zip")


def test_refuses_crafted_zip_with_extra_member(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path / "g", {"a": torch.ones(2)}, kind="K")
    with zipfile.ZipFile(good) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    bad = tmp_path / "bad"
    with zipfile.ZipFile(bad, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
        zf.writestr("payload.pkl", pickle.dumps(_evil(tmp_path)))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(bad)
    assert not (tmp_path / "PWNED").exists()


def _rewrite(src: Path, dst: Path, manifest_fn=None, tensors_fn=None) -> Path:
    with zipfile.ZipFile(src) as zf:
        manifest = json.loads(zf.read(MANIFEST))
        tensors = zf.read(TENSORS)
    if manifest_fn:
        manifest_fn(manifest)
    if tensors_fn:
        tensors = tensors_fn(tensors)
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr(MANIFEST, json.dumps(manifest))
        zf.writestr(TENSORS, tensors)
    return dst


def test_detects_checksum_mismatch_version_and_kind(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path / "g", {"w": torch.arange(10.0)}, kind="K")

    def flip_last_byte(b: bytes) -> bytes:
        return b[:-1] + bytes([b[-1] ^ 0xFF])

    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(_rewrite(good, tmp_path / "t", tensors_fn=flip_last_byte))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(_rewrite(good, tmp_path / "v", manifest_fn=lambda m: m.update(format_version=99)))
    with pytest.raises(CheckpointError, match="not a 'Other'"):
        load_checkpoint(good, kind="Other")


def test_truncated_and_garbage_files(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path / "g", {"w": torch.randn(1000)}, kind="K")
    data = good.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 5):
        trunc = tmp_path / f"trunc{cut}"
        trunc.write_bytes(data[:cut])
        with pytest.raises(CheckpointError):
            load_checkpoint(trunc)
    (tmp_path / "garbage").write_bytes(b"not a zip " + os.urandom(246))  # (a leading 0x80 reads as pickle)
    with pytest.raises(CheckpointError, match="not a riskrl checkpoint"):
        load_checkpoint(tmp_path / "garbage")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="directory"):
        load_checkpoint(tmp_path)


def test_unsupported_objects_are_refused_on_save(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="type"):
        save_checkpoint(tmp_path / "x", {"f": lambda: 1}, kind="K")
    assert not (tmp_path / "x").exists()


def test_crash_during_save_keeps_old_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(tmp_path / "ck", {"w": torch.zeros(3)}, kind="K")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("simulated power loss")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power loss"):
        save_checkpoint(path, {"w": torch.ones(3)}, kind="K")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temp files left behind
    state, _ = load_checkpoint(path)
    torch.testing.assert_close(state["w"], torch.zeros(3))


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two!")
    assert p.read_bytes() == b"two!"
    assert io.BytesIO(p.read_bytes()).read() == b"two!"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_permissions_follow_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "new.bin", b"x")
        with open(tmp_path / "plain.bin", "wb") as fh:
            fh.write(b"x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "new.bin").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode) == 0o666 & ~umask


def test_atomic_write_keeps_an_existing_files_mode(tmp_path: Path) -> None:
    p = tmp_path / "shared.bin"
    p.write_bytes(b"old")
    p.chmod(0o640)
    atomic_write_bytes(p, b"new")
    assert stat.S_IMODE(p.stat().st_mode) == 0o640 and p.read_bytes() == b"new"


def test_stale_temp_of_a_killed_writer_is_removed_on_the_next_write(tmp_path: Path) -> None:
    """SIGKILL during save leaves a hidden temp file; the next write to the same path removes it."""
    target = tmp_path / "ck.riskrl"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import importlib.util as u, os, sys, time; s = u.spec_from_file_location('atomic', sys.argv[2]); "
            "atomic = u.module_from_spec(s); s.loader.exec_module(atomic); "  # riskrl.atomic, without torch
            "os.replace = lambda *a: time.sleep(600); atomic.atomic_write_bytes(sys.argv[1], b'x' * 4_000_000)",
            str(target),
            str(Path(riskrl.atomic.__file__)),
        ]
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".ck.riskrl.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    leaked = list(tmp_path.glob(".ck.riskrl.*.tmp"))
    assert len(leaked) == 1  # what the issue saw: a leaked temp file
    mine = tmp_path / ".ck.riskrl.123.tmp"  # an old-style temp of another writer: kept while young
    mine.write_bytes(b"y")
    save_checkpoint(target, {"w": torch.zeros(2)}, kind="K")
    assert not leaked[0].exists() and mine.exists()
    os.utime(mine, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    save_checkpoint(target, {"w": torch.zeros(2)}, kind="K")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.riskrl"]


def test_save_refuses_manifests_that_loading_would_refuse(tmp_path: Path) -> None:
    deep: object = 0
    for _ in range(40):
        deep = [deep]
    with pytest.raises(CheckpointError, match="nesting"):
        save_checkpoint(tmp_path / "deep", {"x": deep}, kind="K")
    assert not (tmp_path / "deep").exists()


def test_read_manifest_reads_no_tensor_data(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m", {"w": torch.zeros(1000)}, kind="K", metadata={"a": 1})
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF  # damage the tensor bytes: read_manifest does not notice, load does
    path.write_bytes(bytes(data))
    assert read_manifest(path, kind="K")["metadata"] == {"a": 1}
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
