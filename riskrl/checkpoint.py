"""Safe, atomic checkpoints: safetensors + a JSON manifest in one zip file. Never pickle.

A checkpoint file is a zip archive holding exactly two members:

* ``manifest.json``: format name and version, what was saved (e.g. the agent class), free-form
  JSON metadata (hyperparameters, spaces, library versions), the SHA-256 of the tensor member and
  a JSON *skeleton* of the saved state in which every tensor is replaced by a reference;
* ``tensors.safetensors``: every tensor of the state, in the safetensors format.

Loading reads JSON and safetensors only: no code in a checkpoint is ever executed, and pickle-based
files (``torch.save`` archives, stable-baselines3 ``.zip`` files, raw pickles) are refused before
anything in them is interpreted. Saving writes a temporary file in the destination's directory,
fsyncs it and renames it over the destination (:mod:`riskrl.atomic`), so a crash never leaves a
half-written checkpoint.

Loading is bounded (see the README's Safety section): only regular files are opened (never FIFOs
or devices); the zip directory must be small and hold each member once; the manifest is at most
:data:`MAX_MANIFEST_BYTES` and :data:`MAX_JSON_DEPTH` deep; the tensor member is read once, streamed
straight into the tensors its safetensors header declares, and may not exceed a bound that the
caller derives from the manifest (``check_manifest``; :data:`MAX_TENSOR_BYTES` without one). Every
tensor's dtype and shape can be checked against a :class:`Spec` tree (``check_tensors``) before any
tensor data is read. Every failure is a :class:`CheckpointError` naming the offending field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import platform
import re
import stat
import struct
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as st_save

from riskrl._version import __version__
from riskrl.atomic import atomic_write_bytes

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_JSON_DEPTH",
    "MAX_MANIFEST_BYTES",
    "MAX_TENSOR_BYTES",
    "CheckpointError",
    "JsonSpec",
    "Opt",
    "Spec",
    "TensorInfo",
    "TensorSpec",
    "atomic_write_bytes",
    "check_spec",
    "load_checkpoint",
    "pack_state",
    "read_manifest",
    "save_checkpoint",
    "spec_max_bytes",
    "unpack_state",
]

FORMAT_NAME = "riskrl-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
#: largest manifest member accepted (real manifests are a few KB)
MAX_MANIFEST_BYTES = 1 * 2**20
#: deepest JSON nesting accepted in the manifest (real ones nest about 8 deep)
MAX_JSON_DEPTH = 32
#: tensor-member bound when the caller derives none from the manifest
MAX_TENSOR_BYTES = 4 * 2**30
#: most tensors one checkpoint may hold
MAX_TENSORS = 10_000
#: most members in the zip directory, and its largest size (before the member names are checked)
_MAX_ZIP_ENTRIES = 64
_MAX_ZIP_DIRECTORY = 64 * 2**10
_CHUNK = 2**20
#: a deflated member may inflate at most this many times (riskrl writes members uncompressed)
_MAX_DEFLATE_RATIO = 100
_PICKLE_HINTS = (".pkl", ".pth", ".pt", "data", "version", "byteorder")


class CheckpointError(ValueError):
    """A checkpoint could not be written or is not a valid, trusted riskrl checkpoint."""


# --------------------------------------------------------------------------- state <-> JSON + tensors


def pack_state(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state into a JSON-able skeleton and a flat ``{name: tensor}`` dict.

    Supports dicts (any int/str/float/bool keys), lists, tuples, str, int, float, bool, None,
    torch tensors and numpy arrays. Tensors are moved to CPU and made contiguous.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = obj.detach().to("cpu").contiguous().clone()
            return {"__tensor__": key}
        if isinstance(obj, np.ndarray):
            key = f"t{len(tensors)}"
            tensors[key] = torch.from_numpy(np.ascontiguousarray(obj)).clone()
            return {"__tensor__": key, "numpy": True}
        if isinstance(obj, np.generic):
            return walk(obj.item())
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, tuple):
            return {"__tuple__": [walk(v) for v in obj]}
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        if isinstance(obj, Mapping):
            if all(isinstance(k, str) for k in obj) and not any(k.startswith("__") for k in obj):
                return {k: walk(v) for k, v in obj.items()}
            items = []
            for k, v in obj.items():
                if not isinstance(k, (str, int, float, bool)) or k is None:
                    raise CheckpointError(f"cannot save a dict key of type {type(k).__name__}")
                items.append([k, walk(v)])
            return {"__items__": items}
        raise CheckpointError(
            f"cannot save an object of type {type(obj).__name__} (only tensors and JSON data)"
        )

    return walk(state), tensors


def unpack_state(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`pack_state`."""

    def leaf(ref: dict[str, Any]) -> Any:
        key = ref["__tensor__"]
        if key not in tensors:
            raise CheckpointError(f"checkpoint references a missing tensor {key!r}")
        return tensors[key].numpy() if ref.get("numpy") else tensors[key]

    return _rebuild(skeleton, leaf)


def _rebuild(skeleton: Any, leaf: Callable[[dict[str, Any]], Any]) -> Any:
    """The state a :func:`pack_state` skeleton describes, each ``{"__tensor__": name}`` node given by ``leaf``."""

    def walk(obj: Any) -> Any:
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        if isinstance(obj, dict):
            if "__tensor__" in obj:
                return leaf(obj)
            if "__tuple__" in obj:
                return tuple(walk(v) for v in obj["__tuple__"])
            if "__items__" in obj:
                return {k: walk(v) for k, v in obj["__items__"]}
            return {k: walk(v) for k, v in obj.items()}
        return obj

    return walk(skeleton)


def _versions() -> dict[str, str]:
    return {
        "riskrl": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def save_checkpoint(
    path: str | os.PathLike[str],
    state: Any,
    *,
    kind: str,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``state`` (nested tensors + JSON data) with ``metadata`` to ``path`` atomically.

    ``kind`` names what is saved (e.g. the agent class) and is checked again on load.
    """
    skeleton, tensors = pack_state(state)
    tensor_bytes = st_save(tensors) if tensors else st_save({})
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "metadata": dict(metadata or {}),
        "versions": _versions(),
        "tensors_sha256": hashlib.sha256(tensor_bytes).hexdigest(),
        "state": skeleton,
    }
    try:
        manifest_bytes = json.dumps(manifest, indent=1, allow_nan=True).encode()
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint metadata is not JSON-serialisable: {err}") from None
    if len(manifest_bytes) > MAX_MANIFEST_BYTES or not _json_depth_ok(manifest_bytes, MAX_JSON_DEPTH):
        raise CheckpointError(
            f"checkpoint manifest would exceed {MAX_MANIFEST_BYTES} bytes or {MAX_JSON_DEPTH} levels of "
            "nesting, which loading refuses; store large data as tensors"
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(MANIFEST, manifest_bytes)
        zf.writestr(TENSORS, tensor_bytes)
    return atomic_write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------- specs: what a state may hold


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A tensor as its safetensors header declares it (dtype and shape), before any data is read."""

    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * _itemsize(self.dtype)


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """An expected tensor: one of ``dtypes``; each dim an exact ``int`` or an inclusive ``(lo, hi)``."""

    dtypes: tuple[torch.dtype, ...]
    shape: tuple[int | tuple[int, int], ...]

    def max_bytes(self) -> int:
        dims = [d if isinstance(d, int) else d[1] for d in self.shape]
        return math.prod(dims) * max(_itemsize(d) for d in self.dtypes)

    def check(self, value: Any, where: str) -> None:
        if not isinstance(value, (TensorInfo, torch.Tensor)):
            raise CheckpointError(f"{where} must be a tensor, got {_describe(value)}")
        dtype, shape = value.dtype, tuple(value.shape)
        if dtype not in self.dtypes:
            want = " or ".join(str(d).removeprefix("torch.") for d in self.dtypes)
            raise CheckpointError(f"{where} must have dtype {want}, got {str(dtype).removeprefix('torch.')}")
        ok = len(shape) == len(self.shape) and all(
            s == d if isinstance(d, int) else d[0] <= s <= d[1] for s, d in zip(shape, self.shape)
        )
        if not ok:
            want = (
                "(" + ", ".join(str(d) if isinstance(d, int) else f"{d[0]}..{d[1]}" for d in self.shape) + ")"
            )
            raise CheckpointError(f"{where} must have shape {want}, got {shape}")


@dataclasses.dataclass(frozen=True)
class JsonSpec:
    """An expected JSON value: ``kind`` one of ``"int"``, ``"float"`` (finite unless ``allow_inf``),
    ``"bool"``, ``"str"``, ``"int_str"`` (an integer written as a string), within ``[lo, hi]``."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    allow_inf: bool = False

    def check(self, value: Any, where: str) -> None:
        kind = self.kind
        if kind == "bool":
            if not isinstance(value, bool):
                raise CheckpointError(f"{where} must be true or false, got {_describe(value)}")
            return
        if kind == "str":
            if not isinstance(value, str) or len(value) > 1000:
                raise CheckpointError(f"{where} must be a (short) string, got {_describe(value)}")
            return
        if kind == "int_str":
            if not isinstance(value, str) or not re.fullmatch(r"-?\d{1,20}", value):
                raise CheckpointError(
                    f"{where} must be an integer written as a string, got {_describe(value)}"
                )
            number: float = int(value)
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise CheckpointError(f"{where} must be an integer, got {_describe(value)}")
            number = value
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CheckpointError(f"{where} must be a number, got {_describe(value)}")
            number = float(value)
            if math.isnan(number) or (math.isinf(number) and not self.allow_inf):
                raise CheckpointError(f"{where} must be finite, got {value}")
        else:  # pragma: no cover - programming error
            raise ValueError(f"unknown JsonSpec kind {kind!r}")
        if (self.lo is not None and number < self.lo) or (self.hi is not None and number > self.hi):
            raise CheckpointError(f"{where} must be in [{self.lo}, {self.hi}], got {value}")


@dataclasses.dataclass(frozen=True)
class Opt:
    """A value that may be ``None`` (or a dict key that may be absent)."""

    spec: Any


@dataclasses.dataclass(frozen=True)
class Custom:
    """A custom check ``fn(value, where)``; ``max_bytes`` bounds the tensors it accepts."""

    fn: Callable[[Any, str], None]
    max_bytes: int = 0


#: A spec tree: dicts (exact key sets), tuples/lists of specs (exact lengths), TensorSpec, JsonSpec,
#: Opt, Custom, or a literal JSON value that must match exactly.
Spec = Any


def check_spec(spec: Spec, value: Any, where: str) -> None:
    """Raise :class:`CheckpointError` naming ``where`` (a dotted path) unless ``value`` fits ``spec``."""
    if isinstance(spec, Opt):
        if value is None:
            return
        check_spec(spec.spec, value, where)
    elif isinstance(spec, (TensorSpec, JsonSpec)):
        spec.check(value, where)
    elif isinstance(spec, Custom):
        spec.fn(value, where)
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            raise CheckpointError(f"{where} must be a mapping, got {_describe(value)}")
        missing = [k for k, s in spec.items() if k not in value and not isinstance(s, Opt)]
        extra = [k for k in value if k not in spec]
        if missing:
            raise CheckpointError(f"{where} lacks the field(s) {sorted(map(str, missing))}")
        if extra:
            raise CheckpointError(f"{where} has unexpected field(s) {sorted(map(str, extra))[:5]}")
        for k, s in spec.items():
            if k in value:
                check_spec(s, value[k], f"{where}.{k}")
    elif isinstance(spec, (list, tuple)):
        if not isinstance(value, type(spec)) or len(value) != len(spec):
            kind = "list" if isinstance(spec, list) else "tuple"
            raise CheckpointError(f"{where} must be a {kind} of {len(spec)} items, got {_describe(value)}")
        for i, (s, v) in enumerate(zip(spec, value)):
            check_spec(s, v, f"{where}[{i}]")
    else:
        if type(value) is not type(spec) or value != spec:
            raise CheckpointError(f"{where} must be {spec!r}, got {_describe(value)}")


def spec_max_bytes(spec: Spec) -> int:
    """The most tensor bytes a state matching ``spec`` can hold."""
    if isinstance(spec, Opt):
        return spec_max_bytes(spec.spec)
    if isinstance(spec, TensorSpec):
        return spec.max_bytes()
    if isinstance(spec, Custom):
        return spec.max_bytes
    if isinstance(spec, dict):
        return sum(spec_max_bytes(s) for s in spec.values())
    if isinstance(spec, (list, tuple)):
        return sum(spec_max_bytes(s) for s in spec)
    return 0


def _describe(value: Any) -> str:
    if isinstance(value, TensorInfo):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {value.shape}"
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


# --------------------------------------------------------------------------- bounded, checked loading

_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NUMPY_DTYPES = {d for d in _DTYPES.values() if d is not torch.bfloat16}
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _json_depth_ok(data: bytes, limit: int) -> bool:
    depth = 0
    for m in _JSON_TOKEN.finditer(data):
        tok = m.group()
        if tok in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return False
        elif tok in (b"]", b"}"):
            depth -= 1
    return True


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _parse_json(data: bytes, what: str, limit: int = MAX_JSON_DEPTH) -> Any:
    if not _json_depth_ok(data, limit):
        raise CheckpointError(f"{what} nests deeper than {limit} levels")
    try:
        return json.loads(data, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, int limits
        raise CheckpointError(f"{what} is not valid JSON ({str(err)[:200]})") from None


def _open_regular(path: Path) -> io.BufferedReader:
    """Open ``path`` for reading without blocking; refuse anything but a regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"checkpoint {path} is a directory, expected a riskrl checkpoint file")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(
            f"checkpoint {path} is not a regular file (a FIFO, socket or device); refusing it"
        )
    flags = (
        os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    )
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between stat and open
        os.close(fd)
        raise CheckpointError(f"checkpoint {path} is not a regular file; refusing it")
    return os.fdopen(fd, "rb")


def _check_zip_directory(path: Path, fh: io.BufferedReader, head: bytes) -> None:
    """Bound the zip's central directory before :mod:`zipfile` parses it (entry count and size)."""
    size = os.fstat(fh.fileno()).st_size
    tail_len = min(size, 22 + 65535)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < 22:
        _refuse_foreign(path, head, None)
    _sig, _disk, _cd_disk, _n_disk, n_total, cd_size, _cd_off, _clen = struct.unpack(
        "<4s4H2LH", tail[pos : pos + 22]
    )
    if n_total > _MAX_ZIP_ENTRIES or cd_size > _MAX_ZIP_DIRECTORY:
        raise CheckpointError(
            f"{path} is not a riskrl checkpoint: its zip directory lists {n_total} members "
            f"({cd_size} bytes); a checkpoint has 2 (torch.save and stable-baselines3 archives are "
            "refused: riskrl never unpickles)"
        )
    fh.seek(0)


def _refuse_foreign(path: Path, head: bytes, names: list[str] | None) -> None:
    if head[:1] == b"\x80":
        raise CheckpointError(f"{path} is a raw pickle file; riskrl never unpickles, refusing to load it")
    if names is None:
        raise CheckpointError(f"{path} is not a riskrl checkpoint (not a zip archive; corrupt or truncated?)")
    if len(names) != len(set(names)):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise CheckpointError(
            f"{path} holds duplicate zip members {dup[:3]}; refusing an ambiguous checkpoint"
        )
    if set(names) != {MANIFEST, TENSORS}:
        pickled = [n for n in names if n.endswith(_PICKLE_HINTS) or "/data" in n]
        if pickled:
            raise CheckpointError(
                f"{path} looks like a pickle-based archive (torch.save or stable-baselines3: {pickled[:3]}); "
                "riskrl never unpickles, refusing to load it"
            )
        raise CheckpointError(f"{path} is not a riskrl checkpoint: members {sorted(names)[:5]}")


_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    OverflowError,
)


def _member(path: Path, zf: zipfile.ZipFile, name: str, bound: int, what: str) -> zipfile.ZipInfo:
    info = zf.getinfo(name)
    if info.flag_bits & 0x1:
        raise CheckpointError(f"{path}: {what} is encrypted; refusing it")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CheckpointError(f"{path}: {what} uses an unsupported compression ({info.compress_type})")
    if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > max(
        _MAX_DEFLATE_RATIO * info.compress_size, _CHUNK
    ):
        raise CheckpointError(
            f"{path}: {what} inflates {info.file_size / max(info.compress_size, 1):.0f}-fold "
            f"({info.compress_size} -> {info.file_size} bytes); refusing a decompression bomb"
        )
    if info.file_size > bound:
        raise CheckpointError(
            f"{path}: {what} declares {info.file_size} bytes, more than the {bound} this checkpoint "
            "can hold; refusing to load it"
        )
    return info


def _read_exact(stream: Any, n: int, path: Path, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise CheckpointError(f"{path}: {what} is truncated")
    return data


def _manifest_from(path: Path, zf: zipfile.ZipFile) -> dict[str, Any]:
    info = _member(path, zf, MANIFEST, MAX_MANIFEST_BYTES, "manifest.json")
    with zf.open(info) as f:
        data = f.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise CheckpointError(
            f"{path}: manifest.json inflates beyond {MAX_MANIFEST_BYTES} bytes; refusing it"
        )
    manifest = _parse_json(data, f"{path}: manifest.json")
    return _check_manifest_fields(path, manifest)


def _check_manifest_fields(path: Path, manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: manifest does not describe a riskrl checkpoint")
    version = manifest.get("format_version")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unknown checkpoint format version {version!r} (this riskrl reads version {FORMAT_VERSION})"
        )
    for key in ("kind", "metadata", "versions", "tensors_sha256", "state"):
        if key not in manifest:
            raise CheckpointError(f"{path}: manifest lacks the field {key!r}")
    if not isinstance(manifest["kind"], str) or not 0 < len(manifest["kind"]) <= 200:
        raise CheckpointError(
            f"{path}: manifest field 'kind' must be a name, got {_describe(manifest['kind'])}"
        )
    if not isinstance(manifest["metadata"], dict):
        raise CheckpointError(f"{path}: manifest field 'metadata' must be a mapping")
    versions = manifest["versions"]
    if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
        raise CheckpointError(f"{path}: manifest field 'versions' must map names to version strings")
    sha = manifest["tensors_sha256"]
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise CheckpointError(f"{path}: manifest field 'tensors_sha256' must be 64 hex digits")
    return manifest


def _skeleton_refs(path: Path, skeleton: Any) -> dict[str, bool]:
    """Validate the skeleton's structure; return its tensor references (name -> numpy flag)."""
    refs: dict[str, bool] = {}

    def walk(obj: Any, where: str) -> None:
        if isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, f"{where}[{i}]")
        elif isinstance(obj, dict):
            if "__tensor__" in obj:
                key = obj["__tensor__"]
                if not isinstance(key, str) or set(obj) - {"__tensor__", "numpy"}:
                    raise CheckpointError(f"{path}: {where} is a malformed tensor reference")
                if not isinstance(obj.get("numpy", False), bool):
                    raise CheckpointError(f"{path}: {where}.numpy must be true or false")
                if key in refs:
                    raise CheckpointError(f"{path}: {where} references tensor {key!r} a second time")
                refs[key] = bool(obj.get("numpy", False))
                if len(refs) > MAX_TENSORS:
                    raise CheckpointError(f"{path}: more than {MAX_TENSORS} tensors")
            elif "__tuple__" in obj:
                if len(obj) != 1 or not isinstance(obj["__tuple__"], list):
                    raise CheckpointError(f"{path}: {where} is a malformed tuple")
                walk(obj["__tuple__"], where)
            elif "__items__" in obj:
                items = obj["__items__"]
                if len(obj) != 1 or not isinstance(items, list):
                    raise CheckpointError(f"{path}: {where} is a malformed mapping")
                seen = set()
                for i, item in enumerate(items):
                    if (
                        not isinstance(item, list)
                        or len(item) != 2
                        or not isinstance(item[0], (str, int, float, bool))
                    ):
                        raise CheckpointError(f"{path}: {where}[{i}] must be a [key, value] pair")
                    if item[0] in seen:
                        raise CheckpointError(f"{path}: {where} repeats the key {item[0]!r}")
                    seen.add(item[0])
                    walk(item[1], f"{where}.{item[0]}")
            else:
                for k, v in obj.items():
                    if k.startswith("__"):
                        raise CheckpointError(f"{path}: {where} has a reserved key {k!r}")
                    walk(v, f"{where}.{k}")

    walk(skeleton, "state")
    return refs


def _parse_header(path: Path, header: Any, refs: dict[str, bool], data_size: int) -> dict[str, TensorInfo]:
    """Check a safetensors header against the skeleton; return tensor infos in data order."""
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: tensor header is not a mapping")
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise CheckpointError(f"{path}: tensor header metadata is malformed")
    if set(header) != set(refs):
        missing = sorted(set(refs) - set(header))[:3]
        extra = sorted(set(header) - set(refs))[:3]
        raise CheckpointError(
            f"{path}: tensor data does not match the manifest (missing {missing}, unreferenced {extra})"
        )
    entries = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{path}: tensor {name!r} has a malformed header entry")
        dtype = _DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
        if dtype is None:
            raise CheckpointError(f"{path}: tensor {name!r} has an unsupported dtype {entry['dtype']!r}")
        shape, offsets = entry["shape"], entry["data_offsets"]
        if (
            not isinstance(shape, list)
            or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 2**40 for d in shape)
        ):
            raise CheckpointError(f"{path}: tensor {name!r} has a malformed shape {shape!r}"[:200])
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and 0 <= o for o in offsets)
        ):
            raise CheckpointError(f"{path}: tensor {name!r} has malformed data offsets")
        if refs[name] and dtype not in _NUMPY_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} is marked numpy but has dtype {dtype}")
        info = TensorInfo(dtype, tuple(shape))
        if offsets[1] - offsets[0] != info.nbytes:
            raise CheckpointError(
                f"{path}: tensor {name!r} has {offsets[1] - offsets[0]} bytes for shape {shape}"
            )
        entries.append((offsets[0], offsets[1], name, info))
    entries.sort(key=lambda e: (e[0], e[1]))
    pos = 0
    for begin, end, name, _ in entries:
        if begin != pos:
            raise CheckpointError(f"{path}: tensor {name!r} overlaps or leaves a gap in the tensor data")
        pos = end
    if pos != data_size:
        raise CheckpointError(f"{path}: tensor data holds {data_size} bytes, the header declares {pos}")
    return {name: info for _, _, name, info in entries}


def _unpack_validated(skeleton: Any, leaves: Mapping[str, Any], refs: Mapping[str, bool]) -> Any:
    """:func:`unpack_state` for a skeleton already checked by :func:`_skeleton_refs`."""

    def leaf(ref: dict[str, Any]) -> Any:
        value = leaves[ref["__tensor__"]]
        return value.numpy() if refs[ref["__tensor__"]] and isinstance(value, torch.Tensor) else value

    return _rebuild(skeleton, leaf)


def _open_zip(path: Path) -> tuple[io.BufferedReader, zipfile.ZipFile]:
    fh = _open_regular(path)
    try:
        head = fh.read(4)
        fh.seek(0)
        _check_zip_directory(path, fh, head)
        try:
            zf = zipfile.ZipFile(fh)
        except _ZIP_ERRORS:
            _refuse_foreign(path, head, None)
            raise  # unreachable: _refuse_foreign always raises
        _refuse_foreign(path, head, zf.namelist())
        return fh, zf
    except BaseException:
        fh.close()
        raise


def read_manifest(path: str | os.PathLike[str], *, kind: str | None = None) -> dict[str, Any]:
    """The checked manifest of a checkpoint (without its ``state``), reading no tensor data."""
    path = Path(path)
    fh, zf = _open_zip(path)
    with fh, zf:
        try:
            manifest = _manifest_from(path, zf)
        except _ZIP_ERRORS as err:
            raise CheckpointError(f"{path} is corrupt or truncated: {str(err)[:200]}") from None
    _skeleton_refs(path, manifest["state"])
    if kind is not None and manifest["kind"] != kind:
        raise CheckpointError(f"{path} holds a {manifest['kind']!r}, not a {kind!r}")
    manifest.pop("state")
    return manifest


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    map_location: str | torch.device = "cpu",
    check_manifest: Callable[[dict[str, Any]], int] | None = None,
    check_tensors: Callable[[dict[str, Any], Any], None] | None = None,
    max_tensor_bytes: int = MAX_TENSOR_BYTES,
) -> tuple[Any, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`; returns ``(state, manifest)``.

    ``check_manifest(manifest)`` validates the manifest and returns the most tensor bytes it
    implies; ``check_tensors(manifest, info_state)`` gets the state with every tensor replaced by
    its :class:`TensorInfo` (dtype and shape from the safetensors header) and may refuse it. Both
    run before any tensor data is read; each raises :class:`CheckpointError`.

    Raises :class:`CheckpointError` for anything that is not an intact riskrl checkpoint: missing,
    truncated or corrupt files, non-regular files, pickle payloads, duplicate or oversized members,
    checksum mismatches, unknown format versions, or a ``kind`` different from the one given.
    """
    path = Path(path)
    fh, zf = _open_zip(path)
    with fh, zf:
        try:
            return _load(path, zf, kind, map_location, check_manifest, check_tensors, max_tensor_bytes)
        except _ZIP_ERRORS as err:
            # zipfile reports damaged headers in many ways (bad CRC, "encrypted", "unsupported version")
            raise CheckpointError(f"{path} is corrupt or truncated: {str(err)[:200]}") from None


def _load(
    path: Path,
    zf: zipfile.ZipFile,
    kind: str | None,
    map_location: str | torch.device,
    check_manifest: Callable[[dict[str, Any]], int] | None,
    check_tensors: Callable[[dict[str, Any], Any], None] | None,
    max_tensor_bytes: int,
) -> tuple[Any, dict[str, Any]]:
    manifest = _manifest_from(path, zf)
    if kind is not None and manifest["kind"] != kind:
        raise CheckpointError(f"{path} holds a {manifest['kind']!r}, not a {kind!r}")
    refs = _skeleton_refs(path, manifest["state"])
    bound = int(max_tensor_bytes)
    if check_manifest is not None:
        bound = min(bound, int(check_manifest(manifest)))
    header_bound = 4096 + 512 * len(refs)
    info = _member(path, zf, TENSORS, bound + 8 + header_bound, "tensors.safetensors")
    hasher = hashlib.sha256()
    with zf.open(info) as stream:
        prefix = _read_exact(stream, 8, path, "tensor data")
        (n_header,) = struct.unpack("<Q", prefix)
        if n_header > header_bound or n_header > info.file_size - 8:
            raise CheckpointError(f"{path}: tensor header declares {n_header} bytes; refusing it")
        header_bytes = _read_exact(stream, n_header, path, "tensor header")
        hasher.update(prefix)
        hasher.update(header_bytes)
        header = _parse_json(header_bytes, f"{path}: tensor header", limit=4)
        data_size = info.file_size - 8 - n_header
        infos = _parse_header(path, header, refs, data_size)
        if data_size > bound:
            raise CheckpointError(f"{path}: tensor data of {data_size} bytes exceeds the bound {bound}")
        if check_tensors is not None:
            check_tensors(manifest, _unpack_validated(manifest["state"], infos, refs))
        tensors: dict[str, torch.Tensor] = {}
        for name, tinfo in infos.items():  # data order: one sequential pass, no second copy
            t = torch.empty(tinfo.shape, dtype=tinfo.dtype)
            view = t.reshape(-1).view(torch.uint8).numpy() if tinfo.numel else None
            filled = 0
            while view is not None and filled < tinfo.nbytes:
                chunk = stream.read(min(_CHUNK, tinfo.nbytes - filled))
                if not chunk:
                    raise CheckpointError(f"{path}: tensor data is truncated")
                view[filled : filled + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                hasher.update(chunk)
                filled += len(chunk)
            tensors[name] = t
        if stream.read(1):
            raise CheckpointError(f"{path}: tensor data is longer than declared")
    if hasher.hexdigest() != manifest["tensors_sha256"]:
        raise CheckpointError(
            f"{path}: tensor data does not match its SHA-256 checksum (corrupt or tampered)"
        )
    if str(map_location) != "cpu":
        for name in list(tensors):
            tensors[name] = tensors[name].to(map_location)
    state = _unpack_validated(manifest.pop("state"), tensors, refs)
    return state, manifest
