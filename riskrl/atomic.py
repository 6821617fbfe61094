"""Atomic file writes: a temporary file in the destination's directory, fsynced, then renamed.

A crash (even SIGKILL) at any point leaves either the old file or the new one at the destination,
never a half-written one. The file gets the permissions a plain ``open(path, "wb")`` would give it:
an existing destination keeps its mode, a new one gets ``0o666`` minus the process umask (not the
``0o600`` of :func:`tempfile.mkstemp`), so colleagues on a shared cluster can read checkpoints and
reports when the umask allows it.

Temporary files are named ``.<name>.<pid>-<host>.<random>.tmp``. A writer killed before its rename
leaves one behind; the next write to the same path removes those whose process is gone (same host)
or that are older than a day (any host).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import stat
import time
from pathlib import Path

__all__ = ["STALE_TEMP_SECONDS", "atomic_write_bytes"]

#: temp files of another host (or an unparsable name) are stale after this many seconds
STALE_TEMP_SECONDS = 24 * 3600


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(name)}\.(?:(\d+)-([0-9a-f]{{8}})\.)?[A-Za-z0-9_]+\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files of earlier writers to ``path`` that can no longer finish."""
    pattern = _temp_pattern(path.name)
    host, now = _host_tag(), time.time()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        pid, tag = match.group(1), match.group(2)
        if pid is not None and tag == host:
            stale = int(pid) != os.getpid() and not _pid_alive(int(pid))
        else:
            stale = now - st.st_mtime > STALE_TEMP_SECONDS
        if stale:
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _target_mode(path: Path) -> int:
    """The mode ``open(path, "wb")`` would leave: the existing file's, else 0o666 minus the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return -1  # new file: created with 0o666 and the umask applies


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temp file in the same directory, fsync, rename.

    Permissions follow ``open()`` (existing mode kept; new files ``0o666 & ~umask``); stale temp
    files of killed earlier writes to ``path`` are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    mode = _target_mode(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}-{_host_tag()}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o666)  # the umask applies, as for a plain open()
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode >= 0:
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
