"""A corpus of hostile checkpoints, generated on the fly from small genuine ones (never committed).

Each case is a crafted file that loading must refuse with a CheckpointError naming the problem,
without executing anything, hanging or allocating what the file asks for: decompression bombs,
config injections, wrong dtypes/shapes with correct checksums, out-of-range indices, duplicate
zip members, deep JSON, malformed fields. ``build_corpus`` returns ``{name: (path, pattern)}``
where ``pattern`` is a regex the error message must match.
"""

from __future__ import annotations

import copy
import hashlib
import json
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from riskrl.checkpoint import MANIFEST, TENSORS

__all__ = ["build_corpus", "read_parts", "write_parts"]


def read_parts(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The manifest and tensors of a genuine checkpoint (trusted: our own file)."""
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read(MANIFEST)), st_load(zf.read(TENSORS))


def write_parts(
    path: Path,
    manifest: dict[str, Any],
    tensors: dict[str, torch.Tensor] | bytes,
    *,
    fix_checksum: bool = True,
    compression: int = zipfile.ZIP_STORED,
) -> Path:
    """Write a checkpoint from parts; the tensor checksum is made correct unless told otherwise."""
    data = tensors if isinstance(tensors, bytes) else st_save(tensors)
    manifest = copy.deepcopy(manifest)
    if fix_checksum:
        manifest["tensors_sha256"] = hashlib.sha256(data).hexdigest()
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest))
        zf.writestr(TENSORS, data)
    return path


def ref(manifest: dict[str, Any], *keys: str) -> str:
    """The tensor name a skeleton path refers to."""
    node: Any = manifest["state"]
    for k in keys:
        node = node[k]
    return node["__tensor__"]


def _optimizer_ref(manifest: dict[str, Any], param: int, key: str) -> str:
    items = manifest["state"]["training"]["optimizer"]["state"]["__items__"]
    return dict((k, v) for k, v in items)[param][key]["__tensor__"]


def _deflate_repeated(prefix: bytes, chunk: bytes, count: int, suffix: bytes) -> tuple[bytes, int, int]:
    """Raw deflate of ``prefix + chunk * count + suffix`` built from one compressed chunk (full
    flushes make every chunk's output identical), with its CRC-32 and size: a bomb in milliseconds."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.compress(suffix) + c.flush(zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(suffix, crc)
    return head + block * count + tail, crc, len(prefix) + len(chunk) * count + len(suffix)


def _raw_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip of ``(name, data, method, crc, uncompressed size)`` members, written by hand (the
    declared sizes are whatever the caller says)."""
    out, central = bytearray(), bytearray()
    for name, data, method, crc, size in members:
        raw = name.encode()
        offset = len(out)
        out += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data), size, len(raw), 0
        )
        out += raw + data
        central += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            0,
            method,
            0,
            0x21,
            crc,
            len(data),
            size,
            len(raw),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += raw
    cd_offset = len(out)
    out += central
    out += struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), cd_offset, 0
    )
    path.write_bytes(bytes(out))
    return path


def _bomb(path: Path, manifest: dict[str, Any], member: str, size: int, lie: int | None) -> Path:
    """A deflated member of ``size`` zero bytes (tensors) or spaces (manifest JSON), declaring its
    true size or ``lie``."""
    mib = 2**20
    if member == MANIFEST:
        data, crc, n = _deflate_repeated(b"{", b" " * mib, size // mib, b"}")
        other = st_save({})
        members = [
            (MANIFEST, data, 8, crc, n if lie is None else lie),
            (TENSORS, other, 0, zlib.crc32(other), len(other)),
        ]
    else:
        text = json.dumps(manifest).encode()
        data, crc, n = _deflate_repeated(b"", bytes(mib), size // mib, b"")
        members = [
            (MANIFEST, text, 0, zlib.crc32(text), len(text)),
            (TENSORS, data, 8, crc, n if lie is None else lie),
        ]
    return _raw_zip(path, members)


def build_corpus(tmp: Path, dqn: Path, mpc: Path) -> dict[str, tuple[Path, str]]:
    """Write every hostile case into ``tmp`` (from genuine ``dqn``/``mpc`` checkpoints)."""
    cases: dict[str, tuple[Path, str]] = {}
    dm, dt = read_parts(dqn)
    mm, mt = read_parts(mpc)

    def variant(name: str, pattern: str, edit: Callable[[dict, dict], Any], base: str = "dqn") -> None:
        m, t = (dm, dt) if base == "dqn" else (mm, mt)
        m, t = copy.deepcopy(m), dict(t)
        result = edit(m, t)
        write_parts(tmp / name, m, result if isinstance(result, bytes) else t)
        cases[name] = (tmp / name, pattern)

    # --- bombs: declared or actual sizes far beyond what the manifest implies
    cases["tensor_bomb_1gib"] = (_bomb(tmp / "tensor_bomb", dm, TENSORS, 2**30, None), "declares|bytes")
    cases["tensor_bomb_lying"] = (_bomb(tmp / "tensor_bomb_lie", dm, TENSORS, 2**30, 2**16), "")
    cases["manifest_bomb_60mib"] = (_bomb(tmp / "manifest_bomb", dm, MANIFEST, 60 * 2**20, None), "manifest")
    cases["manifest_bomb_lying"] = (_bomb(tmp / "manifest_bomb_lie", dm, MANIFEST, 60 * 2**20, 2**19), "")

    stored = st_save(dt)
    text = json.dumps({**dm, "tensors_sha256": hashlib.sha256(stored).hexdigest()}).encode()
    cases["tensor_declared_2gib"] = (
        _raw_zip(
            tmp / "tensor_declared_2gib",
            [
                (MANIFEST, text, 0, zlib.crc32(text), len(text)),
                (TENSORS, stored, 0, zlib.crc32(stored), 2**31),
            ],
        ),
        "declares",
    )

    # --- config injections: refused before anything is allocated
    def cfg(**kw: Any) -> Callable[[dict, dict], None]:
        return lambda m, t: m["metadata"]["config"].update(kw)

    variant("hidden_20000", r"hidden", cfg(hidden=[20000, 20000]))
    variant("buffer_5e7_float", r"buffer_size", cfg(buffer_size=5e7))
    variant("buffer_50m", r"buffer_size", cfg(buffer_size=50_000_000))
    variant("memory_cap", r"max_memory", cfg(hidden=[4096] * 8, n_members=64))
    variant("num_envs_huge", r"num_envs", lambda m, t: m["metadata"].update(num_envs=10**9))
    variant(
        "obs_dim_huge",
        r"observation_space",
        lambda m, t: m["metadata"].update(
            observation_space={"type": "Box", "shape": [10**7], "low": [0.0], "high": [1.0]}
        ),
    )
    variant("eval_dist_200000", r"eval_dist", _eval_dist_200000, base="mpc")
    variant(
        "horizon_huge", r"horizon", lambda m, t: m["metadata"]["config"].update(horizon=10**6), base="mpc"
    )

    # --- wrong dtypes / shapes with a correct checksum
    w = ref(dm, "policy", "q_net", "layers.0.weight")
    for dtype in (torch.int8, torch.bool, torch.float64):
        variant(f"weights_{str(dtype)[6:]}", r"dtype", lambda m, t, d=dtype: t.update({w: t[w].to(d)}))
    variant("weights_wrong_shape", r"shape", lambda m, t: t.update({w: t[w].reshape(-1)}))
    opt = _optimizer_ref(dm, 0, "exp_avg")
    variant("optimizer_shape", r"optimizer", lambda m, t: t.update({opt: torch.zeros(3)}))
    variant(
        "optimizer_fused_string",
        r"fused",
        lambda m, t: m["state"]["training"]["optimizer"]["param_groups"][0].update(fused="cuda:0"),
    )
    env_s = ref(dm, "training", "env", "state")
    variant(
        "env_state_shape", r"env", lambda m, t: t.update({env_s: torch.zeros(7, 7, dtype=t[env_s].dtype)})
    )
    rng = ref(dm, "training", "rng")
    variant("rng_wrong_length", r"rng", lambda m, t: t.update({rng: torch.zeros(100, dtype=torch.uint8)}))
    variant(
        "rng_invalid_state",
        r"generator state",
        lambda m, t: t.update({rng: torch.randint(0, 255, (5056,), dtype=torch.uint8)}),
    )

    # --- values out of range (load, then crash at the first learn)
    variant("buffer_pos", r"pos", lambda m, t: m["state"]["training"]["buffer"].update(pos=10**9))
    nxt = ref(dm, "training", "buffer", "next_index")
    variant("buffer_next_index", r"next_index", lambda m, t: t.update({nxt: torch.full_like(t[nxt], 10**9)}))
    act = ref(dm, "training", "buffer", "actions")
    variant("buffer_actions", r"actions", lambda m, t: t.update({act: torch.full_like(t[act], 7)}))
    th = ref(dm, "training", "thompson_idx")
    variant("thompson_idx", r"thompson_idx", lambda m, t: t.update({th: torch.full_like(t[th], 99)}))
    length = ref(dm, "training", "env", "params", "length")
    variant(
        "env_param_nan", r"length", lambda m, t: t.update({length: torch.full_like(t[length], float("nan"))})
    )
    variant("env_param_zero", r"length", lambda m, t: t.update({length: torch.zeros_like(t[length])}))

    # --- malformed manifests
    variant("kind_list", r"kind", lambda m, t: m.update(kind=["BayesDQN"]))
    variant("no_metadata", r"metadata", lambda m, t: m.pop("metadata"))
    variant("no_state", r"state", lambda m, t: m.pop("state"))
    variant("no_observation_space", r"observation_space", lambda m, t: m["metadata"].pop("observation_space"))
    variant("env_id_int", r"env_id", lambda m, t: m["metadata"].update(env_id=123))
    variant("env_id_unknown", r"env_id|NoSuchEnv", lambda m, t: m["metadata"].update(env_id="NoSuchEnv-v9"))
    variant(
        "risk_tolerance_nan",
        r"risk_tolerance",
        lambda m, t: m["metadata"].update(risk_tolerance=float("nan")),
    )
    variant("seed_negative", r"seed", lambda m, t: m["metadata"].update(seed=-5))
    variant("config_unknown_field", r"unknown", cfg(rm_rf=True))
    variant("config_family_list", r"family", cfg(family=["ensemble"]))
    variant("config_activation", r"activation|network", cfg(activation="rm -rf"))
    variant(
        "action_space_box_for_dqn",
        r"action_space",
        lambda m, t: m["metadata"].update(
            action_space={"type": "Box", "shape": [1], "low": [-1.0], "high": [1.0]}
        ),
    )
    variant("format_version_true", r"format version", lambda m, t: m.update(format_version=True))
    variant("tensor_ref_twice", r"second time", _ref_twice)
    variant("header_bomb", r"header", lambda m, t: struct.pack("<Q", 2**60) + b"{}")

    deep = tmp / "deep_json"  # 5000 nested lists: json.dumps itself could not write them
    with zipfile.ZipFile(deep, "w") as zf:
        text = json.dumps({**dm, "state": "__STATE__"}).replace('"__STATE__"', "[" * 5000 + "0" + "]" * 5000)
        zf.writestr(MANIFEST, text)
        zf.writestr(TENSORS, st_save(dt))
    cases["deep_json"] = (deep, "deeper")

    # --- zip-level tricks
    dup = tmp / "duplicate_manifest"
    with zipfile.ZipFile(dqn) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    evil = copy.deepcopy(dm)
    evil["metadata"]["risk_tolerance"] = 123.0
    with zipfile.ZipFile(dup, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we want
        zf.writestr(MANIFEST, members[MANIFEST])
        zf.writestr(TENSORS, members[TENSORS])
        zf.writestr(MANIFEST, json.dumps(evil))
    cases["duplicate_manifest"] = (dup, "duplicate")
    many = tmp / "many_members"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(1000):
            zf.writestr(f"m{i}", b"")
    cases["many_members"] = (many, "zip directory")
    return cases


def _eval_dist_200000(m: dict, t: dict) -> None:
    key = ref(m, "policy", "eval_dist")
    t[key] = torch.zeros(1, 200_000, 1)


def _ref_twice(m: dict, t: dict) -> None:
    q = m["state"]["policy"]["q_net"]
    q["layers.0.bias"] = dict(q["layers.0.weight"])
