"""Run independent jobs in this process, in local worker processes, or as Ray tasks.

One executor for sweeps (:mod:`riskrl.sweep`), benchmarks (:mod:`riskrl.benchmark`) and the
experiment scripts: :func:`run_jobs` calls a top-level function once per argument tuple and returns
the results in the order of the jobs, whatever order they finish in. Jobs must be independent and
deterministic (each seeds its own generators), so every backend gives the same results.

* ``backend="local"``, ``workers=1``: the jobs run one after the other in this process.
* ``backend="local"``, ``workers > 1``: a pool of ``spawn``\\ ed processes (fork + torch threads is
  unsafe); Ctrl-C, SIGTERM or a failing job terminates every worker at once.
* ``backend="ray"``: one Ray task per job (one CPU each), joining the cluster at ``address`` (e.g.
  ``"auto"`` or ``"ray://host:10001"``) or starting a local Ray instance when it is ``None``;
  Ctrl-C or SIGTERM cancels every task. Needs the ``ray`` extra.
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

__all__ = [
    "BACKENDS",
    "RAY_CONNECT_TIMEOUT",
    "check_backend",
    "check_ray_address",
    "checkpoint_dir",
    "one_torch_thread",
    "run_jobs",
    "sigterm_as_interrupt",
]

T = TypeVar("T")

#: the executors :func:`run_jobs` knows
BACKENDS = ("local", "ray")

#: seconds to wait for a Ray cluster to answer before giving up
RAY_CONNECT_TIMEOUT = 30.0

#: seconds between checks for finished jobs (Ctrl-C and SIGTERM are handled between them)
_POLL_SECONDS = 0.5


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run a job on one torch thread (jobs run side by side), restoring the caller's setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while the block runs (main thread only), so running jobs
    are stopped on ``kill`` as on Ctrl-C. A caller's own SIGTERM handler (e.g. the CLI's) is kept."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ray_host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``host:port`` or ``ray://host:port`` address (None for ``"auto"``)."""
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT) -> None:
    """Raise ConnectionError unless a Ray cluster answers at ``address`` within ``timeout`` seconds.

    A TCP connection to ``host:port`` is tried first (refused or unroutable addresses fail at once
    or after ``timeout``); then ``ray.init`` joins and leaves the cluster in a child process that
    is killed after the remaining time (Ray's own client retries for ever).
    """
    start = time.monotonic()
    hp = _ray_host_port(address)
    if hp is not None:
        try:
            with socket.create_connection(hp, timeout=timeout):
                pass
        except OSError as err:
            raise ConnectionError(
                f"cannot reach a Ray cluster at {address!r}: {err.strerror or err}"
            ) from None
    remaining = max(1.0, timeout - (time.monotonic() - start))
    probe = (
        "import ray, sys; ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False, "
        "configure_logging=False); ray.shutdown()"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", probe, address],
            capture_output=True,
            text=True,
            timeout=remaining,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConnectionError(f"no Ray cluster answered at {address!r} within {timeout:g} s") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise ConnectionError(
            f"cannot join the Ray cluster at {address!r}: {lines[-1] if lines else 'ray.init failed'}"
        )


def check_backend(
    backend: str,
    workers: int = 1,
    address: str | None = None,
    connect_timeout: float = RAY_CONNECT_TIMEOUT,
) -> None:
    """Check the arguments of :func:`run_jobs` before any work starts.

    ValueError unless ``backend`` is one of :data:`BACKENDS`, ``workers`` an integer >= 1 and
    ``connect_timeout`` a positive number of seconds; for ``backend="ray"`` with an ``address`` (and
    no Ray already initialised here), ConnectionError unless that cluster answers within
    ``connect_timeout`` seconds (:func:`check_ray_address`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if isinstance(workers, bool) or not hasattr(workers, "__index__") or operator.index(workers) < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if not (
        isinstance(connect_timeout, (int, float))
        and not isinstance(connect_timeout, bool)
        and 0 < connect_timeout < math.inf
    ):
        raise ValueError(f"connect_timeout must be a positive number of seconds, got {connect_timeout!r}")
    ray_module = sys.modules.get("ray")
    if backend == "ray" and address is not None and not (ray_module and ray_module.is_initialized()):
        check_ray_address(address, float(connect_timeout))


def checkpoint_dir(out_dir: str | os.PathLike[str] | None, save_checkpoints: bool) -> str | None:
    """Where jobs save their trained agents: ``<out_dir>/checkpoints`` (created) when
    ``save_checkpoints``, else None. ValueError if checkpoints are asked for without ``out_dir``."""
    if not save_checkpoints:
        return None
    if out_dir is None:
        raise ValueError("save_checkpoints needs out_dir")
    path = Path(out_dir) / "checkpoints"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


class _Progress:
    """A tqdm bar over the jobs (or nothing), and the caller's per-result hook, in job order."""

    def __init__(self, total: int, desc: str, show: bool, on_result: Callable[[Any], None] | None) -> None:
        self.bar = tqdm(total=total, desc=desc) if show else None
        self.on_result = on_result

    def done(self, result: Any) -> None:
        if self.on_result is not None:
            self.on_result(result)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_local(
    fn: Callable[..., T], jobs: list[tuple[Any, ...]], workers: int, progress: _Progress
) -> list[T]:
    results: list[T] = []
    if workers <= 1:
        for args in jobs:
            results.append(fn(*args))
            progress.done(results[-1])
        return results
    pool = get_context("spawn").Pool(processes=min(workers, len(jobs)))
    try:
        pending = [pool.apply_async(fn, args) for args in jobs]
        for job in pending:
            while not job.ready():
                job.wait(_POLL_SECONDS)
            results.append(job.get())
            progress.done(results[-1])
        pool.close()
        pool.join()
        return results
    except BaseException:
        pool.terminate()  # Ctrl-C, SIGTERM or a failed job: stop every worker now
        pool.join()
        raise


def _run_ray(
    fn: Callable[..., T], jobs: list[tuple[Any, ...]], address: str | None, progress: _Progress
) -> list[T]:
    try:
        import ray
    except ImportError:
        raise ValueError("the ray backend needs ray: pip install 'riskrl[ray]'") from None
    started_here = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started_here = True
    refs: list[Any] = []
    try:
        remote_fn = ray.remote(num_cpus=1)(fn)
        refs = [remote_fn.remote(*args) for args in jobs]
        results: list[T] = []
        finished: set[Any] = set()
        pending = list(refs)
        while len(results) < len(refs):
            if pending:
                done, pending = ray.wait(pending, num_returns=len(pending), timeout=_POLL_SECONDS)
                finished.update(done)
            while len(results) < len(refs) and refs[len(results)] in finished:  # hand back in job order
                results.append(ray.get(refs[len(results)]))
                progress.done(results[-1])
        return results
    except BaseException:
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()


def run_jobs(
    fn: Callable[..., T],
    jobs: Sequence[tuple[Any, ...]],
    *,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    progress_bar: bool = False,
    desc: str = "jobs",
    on_result: Callable[[T], None] | None = None,
) -> list[T]:
    """``[fn(*args) for args in jobs]``, run by ``backend`` (see the module docstring).

    Args:
        fn: a top-level function (worker processes and Ray import it by name).
        jobs: one argument tuple per call.
        backend: ``"local"`` or ``"ray"``.
        workers: local worker processes (1 = in this process); ignored by Ray.
        address: the Ray cluster to join (``None``: start a local one).
        progress_bar: show a tqdm bar over the jobs, labelled ``desc``.
        on_result: called with each result in job order as soon as it and all earlier ones are
            done (e.g. to save partial results).

    Returns:
        The results in the order of ``jobs``. A failing job re-raises its exception here after the
        other jobs are stopped; Ctrl-C and SIGTERM stop every job and raise KeyboardInterrupt.
    """
    check_backend(backend, workers)
    jobs = [tuple(args) for args in jobs]
    if not jobs:
        return []
    progress = _Progress(len(jobs), desc, progress_bar, on_result)
    try:
        with sigterm_as_interrupt():
            if backend == "local":
                return _run_local(fn, jobs, operator.index(workers), progress)
            return _run_ray(fn, jobs, address, progress)
    finally:
        progress.close()
