"""Safe, atomic checkpoints: safetensors + a JSON manifest in one zip file. Never pickle.

A checkpoint file is a zip archive holding exactly two members:

* ``manifest.json``: format name and version, what was saved (e.g. the agent class), free-form
  JSON metadata (hyperparameters, spaces, library versions), the SHA-256 of the tensor member and
  a JSON *skeleton* of the saved state in which every tensor is replaced by a reference;
* ``tensors.safetensors``: every tensor of the state, in the safetensors format.

Loading reads JSON and safetensors only: no code in a checkpoint is ever executed, and pickle-based
files (``torch.save`` archives, stable-baselines3 ``.zip`` files, raw pickles) are refused before
anything in them is interpreted. Saving writes a temporary file in the destination's directory,
fsyncs it and renames it over the destination, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from riskrl._version import __version__

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "atomic_write_bytes",
    "load_checkpoint",
    "pack_state",
    "save_checkpoint",
    "unpack_state",
]

FORMAT_NAME = "riskrl-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
_MAX_MANIFEST_BYTES = 64 * 2**20
_MAX_TENSOR_BYTES = 16 * 2**30
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

    def walk(obj: Any) -> Any:
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        if isinstance(obj, dict):
            if "__tensor__" in obj:
                key = obj["__tensor__"]
                if key not in tensors:
                    raise CheckpointError(f"checkpoint references a missing tensor {key!r}")
                t = tensors[key]
                return t.numpy() if obj.get("numpy") else t
            if "__tuple__" in obj:
                return tuple(walk(v) for v in obj["__tuple__"])
            if "__items__" in obj:
                return {k: walk(v) for k, v in obj["__items__"]}
            return {k: walk(v) for k, v in obj.items()}
        return obj

    return walk(skeleton)


# --------------------------------------------------------------------------- atomic file writes


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temp file in the same directory, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # pragma: no cover - directories cannot be fsynced on some platforms
        pass
    return path


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
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(MANIFEST, manifest_bytes)
        zf.writestr(TENSORS, tensor_bytes)
    return atomic_write_bytes(path, buffer.getvalue())


def _refuse_foreign(path: Path, head: bytes, names: list[str] | None) -> None:
    if head[:1] == b"\x80":
        raise CheckpointError(f"{path} is a raw pickle file; riskrl never unpickles, refusing to load it")
    if names is None:
        raise CheckpointError(f"{path} is not a riskrl checkpoint (not a zip archive; corrupt or truncated?)")
    if set(names) != {MANIFEST, TENSORS}:
        pickled = [n for n in names if n.endswith(_PICKLE_HINTS) or "/data" in n]
        if pickled:
            raise CheckpointError(
                f"{path} looks like a pickle-based archive (torch.save or stable-baselines3: {pickled[:3]}); "
                "riskrl never unpickles, refusing to load it"
            )
        raise CheckpointError(f"{path} is not a riskrl checkpoint: members {sorted(names)[:5]}")


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[Any, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`; returns ``(state, manifest)``.

    Raises :class:`CheckpointError` for anything that is not an intact riskrl checkpoint: missing,
    truncated or corrupt files, pickle payloads, checksum mismatches, unknown format versions, or
    a ``kind`` different from the one given.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, expected a riskrl checkpoint file")
    with open(path, "rb") as fh:
        head = fh.read(4)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError, EOFError):
        _refuse_foreign(path, head, None)
        raise  # unreachable: _refuse_foreign always raises
    with zf:
        _refuse_foreign(path, head, zf.namelist())
        info_m, info_t = zf.getinfo(MANIFEST), zf.getinfo(TENSORS)
        if info_m.file_size > _MAX_MANIFEST_BYTES or info_t.file_size > _MAX_TENSOR_BYTES:
            raise CheckpointError(f"{path}: checkpoint members are implausibly large; refusing to load")
        try:
            manifest_bytes = zf.read(MANIFEST)
            tensor_bytes = zf.read(TENSORS)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as err:
            # zipfile reports damaged headers in many ways (bad CRC, "encrypted", "unsupported version")
            raise CheckpointError(f"{path} is corrupt or truncated: {err}") from None
    try:
        manifest = json.loads(manifest_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: manifest is not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: manifest does not describe a riskrl checkpoint")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unknown checkpoint format version {version!r} (this riskrl reads version {FORMAT_VERSION})"
        )
    if hashlib.sha256(tensor_bytes).hexdigest() != manifest.get("tensors_sha256"):
        raise CheckpointError(
            f"{path}: tensor data does not match its SHA-256 checksum (corrupt or tampered)"
        )
    if kind is not None and manifest.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {manifest.get('kind')!r}, not a {kind!r}")
    try:
        tensors = st_load(tensor_bytes)
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: tensor data is corrupt ({err})") from None
    if str(map_location) != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    state = unpack_state(manifest.pop("state", None), tensors)
    return state, manifest
