"""Hostile checkpoints: every crafted file is refused with a CheckpointError naming the problem,
within bounded memory (a memory-capped subprocess), without hanging and before anything is built."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import torch
from hostile_corpus import build_corpus, read_parts, write_parts

from riskrl import checkpoint
from riskrl.agents import BayesDQN, BayesMPC, load_agent, schema
from riskrl.checkpoint import MANIFEST, CheckpointError, load_checkpoint, read_manifest

MEMORY_LIMIT_MB = 200


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small trained BayesDQN (2 envs) and BayesMPC checkpoint, with filled buffers."""
    tmp = tmp_path_factory.mktemp("genuine")
    dqn = BayesDQN("CartPole-v1", seed=0, hidden=(8,), n_members=2, learning_starts=20, num_envs=2)
    dqn.learn(60)
    mpc = BayesMPC(
        "Pendulum-v1",
        seed=0,
        hidden=[8],
        n_members=2,
        n_particles=2,
        horizon=3,
        population=8,
        n_elites=2,
        keep_elites=1,
        cem_iterations=1,
        train_epochs=1,
        learning_starts=20,
        retrain_interval=20,
    )
    mpc.learn(30)
    mpc.predict([1.0, 0.0, 0.0])
    return dqn.save(tmp / "dqn.riskrl"), mpc.save(tmp / "mpc.riskrl")


@pytest.fixture(scope="module")
def corpus(
    genuine: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, str]]:
    return build_corpus(tmp_path_factory.mktemp("hostile"), *genuine)


def test_genuine_checkpoints_load(genuine: tuple[Path, Path]) -> None:
    dqn, mpc = genuine
    assert load_agent(dqn).buffer.size > 0
    agent = load_agent(mpc)
    assert agent._eval_dist is not None and agent.buffer.size > 0


_PROBE = r"""
import json, resource, sys
from riskrl.agents import load_agent
from riskrl.checkpoint import CheckpointError

good, paths = sys.argv[1], sys.argv[2:]
load_agent(good)  # warm up every code path once
vm_kb = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1])
cap = vm_kb * 1024 + 768 * 2**20  # a 1 GiB allocation cannot succeed
resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {}
for p in paths:
    try:
        load_agent(p)
        out[p] = ["loaded", ""]
    except CheckpointError as err:
        out[p] = ["CheckpointError", str(err)]
    except BaseException as err:
        out[p] = [type(err).__name__, str(err)[:300]]
    out[p].append((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
print(json.dumps(out))
"""


def test_hostile_corpus_refused_in_bounded_memory(
    genuine: tuple[Path, Path], corpus: dict[str, tuple[Path, str]]
) -> None:
    """Every crafted file: CheckpointError matching its pattern, peak RSS growth under 200 MB."""
    paths = [str(p) for p, _ in corpus.values()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(genuine[0]), *paths],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    problems = []
    for name, (path, pattern) in corpus.items():
        kind, message, grown_mb = results[str(path)]
        if kind != "CheckpointError" or not re.search(pattern, message):
            problems.append(f"{name}: {kind}: {message[:200]}")
        if grown_mb > MEMORY_LIMIT_MB:
            problems.append(f"{name}: peak RSS grew by {grown_mb:.0f} MB")
    assert not problems, "\n".join(problems)


def test_tensor_bomb_refused_before_reading_its_data(corpus: dict[str, tuple[Path, str]]) -> None:
    path, _ = corpus["tensor_bomb_1gib"]
    assert path.stat().st_size < 2 * 2**20  # a 1 MB file that inflates to 1 GiB
    with pytest.raises(CheckpointError, match=r"tensors\.safetensors inflates \d+-fold .*decompression bomb"):
        BayesDQN.load(path)
    with pytest.raises(CheckpointError, match="decompression bomb"):
        load_checkpoint(path)  # also without a config to derive a bound from
    with pytest.raises(
        CheckpointError, match=r"tensors\.safetensors declares 2147483648 bytes, more than the \d+"
    ):
        BayesDQN.load(corpus["tensor_declared_2gib"][0])


def test_config_injection_refused_before_allocation(corpus: dict[str, tuple[Path, str]]) -> None:
    with pytest.raises(CheckpointError, match=r"metadata\.config\.hidden\[0\] must be in \[1, 4096\]"):
        BayesDQN.load(corpus["hidden_20000"][0])
    with pytest.raises(CheckpointError, match=r"metadata\.config\.buffer_size must be an integer"):
        BayesDQN.load(corpus["buffer_5e7_float"][0])
    with pytest.raises(CheckpointError, match=r"max_memory"):
        BayesDQN.load(corpus["memory_cap"][0])


def test_duplicate_member_refused_not_last_wins(corpus: dict[str, tuple[Path, str]]) -> None:
    path, _ = corpus["duplicate_manifest"]
    with zipfile.ZipFile(path) as zf:
        assert [i.filename for i in zf.infolist()].count(MANIFEST) == 2
    with pytest.raises(CheckpointError, match="duplicate"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="duplicate"):
        read_manifest(path)


def test_wrong_dtypes_are_not_cast(corpus: dict[str, tuple[Path, str]]) -> None:
    for dtype in ("int8", "bool", "float64"):
        with pytest.raises(CheckpointError, match=rf"layers\.0\.weight must have dtype float32, got {dtype}"):
            BayesDQN.load(corpus[f"weights_{dtype}"][0])


def test_rng_state_of_wrong_length_is_refused_not_reseeded(corpus: dict[str, tuple[Path, str]]) -> None:
    with pytest.raises(CheckpointError, match=r"state\.training\.rng must be a uint8 generator state"):
        BayesDQN.load(corpus["rng_wrong_length"][0])


def test_fields_are_named(corpus: dict[str, tuple[Path, str]]) -> None:
    expected = {
        "buffer_pos": r"state\.training\.buffer\.pos",
        "thompson_idx": r"state\.training\.thompson_idx",
        "optimizer_shape": r"state\.training\.optimizer\.state\.0\.exp_avg must have shape",
        "env_state_shape": r"state\.training\.env\.state must have shape",
        "env_param_nan": r"state\.training\.env\.params\.length",
        "no_observation_space": r"metadata\.observation_space",
        "env_id_int": r"metadata\.env_id must be a \(short\) string",
        "eval_dist_200000": r"state\.policy\.eval_dist must have shape \(1\.\.4096, 3, 1\)",
    }
    for name, pattern in expected.items():
        cls = BayesMPC if name == "eval_dist_200000" else BayesDQN
        with pytest.raises(CheckpointError, match=pattern):
            cls.load(corpus[name][0])


@pytest.mark.parametrize("device", ["cuda:99", "banana", None, "meta"])
def test_bad_device_is_refused_before_the_env_is_built(genuine: tuple[Path, Path], device: object) -> None:
    with pytest.raises(ValueError, match="device"):
        BayesDQN.load(genuine[0], device=device)  # type: ignore[arg-type]


def _finishes(fn, timeout: float = 10.0) -> BaseException | None:
    box: list[BaseException | None] = [None]

    def run() -> None:
        try:
            fn()
        except BaseException as err:
            box[0] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "loading hung"
    return box[0]


def test_fifo_and_devices_are_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.riskrl"
    os.mkfifo(fifo)
    link = tmp_path / "zero.riskrl"
    link.symlink_to("/dev/zero")
    for path in (fifo, Path("/dev/zero"), link, tmp_path):
        err = _finishes(lambda p=path: load_checkpoint(p))
        assert isinstance(err, CheckpointError) and ("regular file" in str(err) or "directory" in str(err))


def test_tampered_tensor_with_valid_checksum_but_mismatched_manifest(
    genuine: tuple[Path, Path], tmp_path: Path
) -> None:
    """An unreferenced extra tensor (checksum recomputed) is refused, not ignored."""
    manifest, tensors = read_parts(genuine[0])
    tensors["extra"] = torch.zeros(10)
    path = write_parts(tmp_path / "extra", manifest, tensors)
    with pytest.raises(CheckpointError, match="unreferenced"):
        BayesDQN.load(path)


def test_checksum_still_guards_the_data(genuine: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, tensors = read_parts(genuine[0])
    # a float tensor changed in value only (same dtype and shape): only the checksum can tell. (Not
    # the first tensor read: safetensors returns them in a per-process random order, and a bool
    # tensor + 1 changes dtype, which the schema refuses before the checksum is compared.)
    name = min(n for n, t in tensors.items() if t.is_floating_point() and t.numel() > 0)
    tensors[name] = tensors[name] + 1
    path = write_parts(tmp_path / "flipped", manifest, tensors, fix_checksum=False)
    with pytest.raises(CheckpointError, match="SHA-256"):
        BayesDQN.load(path)


def test_readme_safety_section_states_the_enforced_bounds() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    safety = readme[readme.index("## Safety") : readme.index("## Determinism")]
    limits = schema.CONFIG_LIMITS
    stated = {
        "1 MiB": checkpoint.MAX_MANIFEST_BYTES == 2**20,
        "32 levels": checkpoint.MAX_JSON_DEPTH == 32,
        "4 GiB for loads without a": checkpoint.MAX_TENSOR_BYTES == 4 * 2**30,
        "at most 10,000 tensors": checkpoint.MAX_TENSORS == 10_000,
        "at most 64 members": checkpoint._MAX_ZIP_ENTRIES == 64,
        "100-fold": checkpoint._MAX_DEFLATE_RATIO == 100,
        "at most 16 of width at most 4096": limits["hidden_layers"][1] == 16 and limits["hidden"][1] == 4096,
        "`buffer_size` <= 10,000,000": limits["buffer_size"][1] == 10_000_000,
        "`n_members` <= 64": limits["n_members"][1] == 64,
        "`max_memory` (2 GiB": schema.DEFAULT_MAX_MEMORY == 2 * 2**30,
        "`horizon` <= 1000": BayesMPC._checkpoint_limits()["horizon"][1] == 1000,
    }
    for text, holds in stated.items():
        assert text in " ".join(safety.split()) and holds, text
