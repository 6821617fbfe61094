"""One results writer for experiments, sweeps and benchmarks: numbers with their config and provenance.

Every published number must be traceable to the run that made it, so :func:`write_results` stores,
next to the numbers, the full config and a :func:`provenance` record (git commit and whether the
tree had uncommitted changes, library versions, machine, torch threads, command line, time). Files
are written atomically (a crash never leaves half a report).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from riskrl._version import __version__
from riskrl.atomic import atomic_write_bytes

__all__ = ["code_version", "provenance", "write_report", "write_results"]

_LIBRARIES = ("torch", "gymnasium", "numpy", "stable-baselines3", "scipy")


def code_version(path: str | Path | None = None) -> dict[str, Any]:
    """The git commit of the checkout holding ``path`` (default: this package) and whether it was dirty.

    Dirty means tracked files differ from the commit outside ``experiments/results/``: results written
    by an earlier run of the same session are evidence, not code, and do not make a run's code unknown.

    Outside a git checkout (an installed wheel) the commit is ``None`` and the riskrl version stands in.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    if where.is_file():
        where = where.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=where, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = (
        git(
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ":(top)",
            ":(top,exclude)experiments/results",
        )
        if commit
        else None
    )
    return {"riskrl": __version__, "git_commit": commit, "git_dirty": bool(status) if commit else None}


def _library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance() -> dict[str, Any]:
    """Where and with what a result was made: code version, libraries, machine, threads, command, time."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    version = code_version()
    if version["git_commit"] is None and sys.argv and Path(sys.argv[0]).exists():
        # riskrl installed as a wheel: the checkout of the running script tells the code version
        version = {**code_version(sys.argv[0]), "riskrl": __version__}
    return {
        **version,
        "libraries": _library_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg": load,
        "argv": list(sys.argv),
        "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_results(
    out_dir: str | Path,
    stem: str,
    results: dict[str, Any],
    *,
    config: dict[str, Any],
    markdown: str | None = None,
    figures: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``<stem>.json`` (``config``, ``provenance`` and ``results``), and optionally ``<stem>.md``
    and one PNG per matplotlib figure (``figures`` maps a suffix to a figure: ``<stem>_<suffix>.png``,
    or ``<stem>.png`` for the suffix ``""``). Figures are closed once saved.

    ``config`` must hold everything needed to rerun the experiment (arguments, hyperparameters,
    seeds). Returns the paths written, keyed ``"json"``, ``"markdown"`` and each figure's suffix
    (``"png"`` for the suffix ``""``).
    """
    if not isinstance(config, dict) or not isinstance(results, dict):
        raise TypeError("write_results: config and results must be dicts")
    if "config" in results or "provenance" in results:
        raise ValueError("write_results: results must not hold 'config' or 'provenance' keys")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json"}
    payload = {"config": config, "provenance": provenance(), **results}
    atomic_write_bytes(paths["json"], (json.dumps(payload, indent=1, default=_jsonable) + "\n").encode())
    if markdown is not None:
        paths["markdown"] = out / f"{stem}.md"
        atomic_write_bytes(paths["markdown"], (markdown.rstrip("\n") + "\n").encode())
    paths.update(write_figures(out, stem, figures or {}))
    return paths


def write_figures(out: str | Path, stem: str, figures: Mapping[str, Any]) -> dict[str, Path]:
    """Save each matplotlib figure as ``<out>/<stem>_<suffix>.png`` (``<stem>.png`` for the suffix
    ``""``), atomically, and close it. Returns the paths by suffix (``"png"`` for ``""``)."""
    paths = {}
    for suffix, fig in figures.items():
        path = Path(out) / (f"{stem}_{suffix}.png" if suffix else f"{stem}.png")
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
        plt.close(fig)
        paths[suffix or "png"] = path
    return paths


def write_report(
    out_dir: str | Path,
    stem: str,
    data: dict[str, Any],
    *,
    markdown: str,
    plot: Callable[[dict[str, Any]], Any],
) -> dict[str, Path]:
    """Save a sweep's or benchmark's ``to_dict()`` (which holds its ``"config"``) through
    :func:`write_results`: ``<stem>.json``, ``<stem>.md`` and ``<stem>.png``, the figure that
    ``plot(data)`` returns."""
    results = dict(data)
    config = results.pop("config")
    figure = plot(data)
    figure.tight_layout()
    return write_results(out_dir, stem, results, config=config, markdown=markdown, figures={"": figure})


def _jsonable(x: Any) -> Any:
    """JSON fallback for numpy / torch scalars and arrays, paths and tuples inside configs."""
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
