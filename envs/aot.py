"""The batched step compiled ahead of time (AOTInductor), called without ``torch.compile``'s per-call cost.

A ``torch.compile``d step pays dynamo's guard checks and the compiled graph's Python wrapper on every
call: ~60-90 us on CPU, more than the whole step of 64 CartPoles. Here the same step program
(:meth:`TorchVectorEnv._core`) is exported once (``torch.export``), compiled by AOTInductor into a
shared library and called through its C++ runner with the env's current tensors: a few microseconds
per call. The program mutates the env's buffers in place, exactly as the ``torch.compile``d step does.

Compiled programs are kept per process, keyed by everything the program bakes in (env class, batch
size, dtypes, autoreset mode, horizon, randomized parameters), so envs of one configuration compile
once, and on disk (``$RISKRL_CACHE_DIR``, default ``~/.cache/riskrl``, under ``aot/``), keyed also by
the env's source code, torch's version and the CPU's instruction set, so a later process loads the
program in a fraction of a second instead of compiling it again (~10-20 s); the disk keeps the
:data:`MAX_CACHED_PROGRAMS` most recently used programs. Like torch's own compile
caches these are native libraries this process wrote; point ``RISKRL_CACHE_DIR`` elsewhere (or set it
to an empty string to keep nothing on disk) on shared machines. Anything AOTInductor cannot do falls
back to ``torch.compile`` (with a warning), and steps with action noise (a random draw per step)
always take that path.
"""

from __future__ import annotations

import hashlib
import inspect
import operator
import os
import platform
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from riskrl.atomic import atomic_write_bytes

__all__ = ["AotStep"]

#: the env tensors the step reads or writes, passed to the compiled program on every call
_BUFFERS = (
    "_s",
    "_steps",
    "_prev_u8",
    "_ep_ret",
    "_ep_len",
    "_counter",
    "_key",
    "_rlo",
    "_rspan",
)
_RANDOMIZE_BUFFERS = ("_rand_lo", "_rand_span")
#: the outputs a default env's step uses (obs, reward, term, trunc, invalid): see ``AotStep._outputs``
_DEFAULT_OUTPUTS = (0, 1, 2, 3, 8)


#: at most this many compiled step programs are kept on disk (~2 MB each); the least recently used go
#: first (each riskrl or torch version, env configuration and thread count is a program of its own)
MAX_CACHED_PROGRAMS = 64


def _prune(folder: Path, keep: int = MAX_CACHED_PROGRAMS - 1) -> None:
    """Delete all but the ``keep`` most recently used ``*.pt2`` programs in ``folder`` (best effort)."""
    try:
        files = sorted(folder.glob("*.pt2"), key=lambda f: f.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in files[keep:]:
        try:
            old.unlink()
        except OSError:
            pass


class _StepProgram(torch.nn.Module):
    """``env._core(action, None, fast=True)`` as a function of the env's tensors (for ``torch.export``)."""

    def __init__(self, env: Any, names: tuple[str, ...], keep: tuple[int, ...]) -> None:
        super().__init__()
        self._env = env
        self._names = names
        self._keep = keep

    def forward(self, action: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        env, names = self._env, self._names
        saved = {name: getattr(env, name) for name in names}
        saved_params = env.params
        try:
            for name, t in zip(names, tensors, strict=False):
                setattr(env, name, t)
            env.params = dict(zip(saved_params, tensors[len(names) :], strict=True))
            out = env._core(action, None, fast=True)
        finally:
            for name, t in saved.items():
                setattr(env, name, t)
            env.params = saved_params
        return tuple(out[i] for i in self._keep)


#: compiled programs of this process: configuration key -> the AOTInductor runner's ``run``
_PROGRAMS: dict[tuple[Any, ...], Callable[[list[torch.Tensor]], list[torch.Tensor]]] = {}


class AotStep:
    """``(action, act_noise) -> step outputs`` for ``env``, like ``torch.compile(env._core_fast)``.

    Compiles lazily, at the first call, from the env's live tensors; ``fallback`` (a ``torch.compile``d
    step) serves action noise and any failure to compile.
    """

    def __init__(self, env: Any, fallback: Callable[..., tuple[Any, ...]]) -> None:
        self._env = env
        self._fallback = fallback
        self._names = _BUFFERS + (_RANDOMIZE_BUFFERS if env.randomize else ())
        self._get_buffers = operator.attrgetter(*self._names)  # env -> the buffers, in order (one C call)
        self._run: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None
        self._failed = False
        self._settings = self._current_settings()  # the program is compiled for these
        self._keep = self._outputs()

    def _current_settings(self) -> tuple[bool, bool]:
        """The env's switches the program is compiled for: episode statistics, action validation."""
        return bool(self._env.episode_statistics), bool(self._env.validate_actions)

    def _outputs(self) -> tuple[int, ...]:
        """Which of ``_core``'s outputs ``(obs, reward, term, trunc, done, ep_r, ep_l, final_obs,
        invalid)`` the step uses: ``done`` only for episode statistics and ``final_obs``, ``ep_r`` /
        ``ep_l`` only for episode statistics, ``invalid`` only with action validation checked in the
        program (batches up to ``_IN_PROGRAM_CHECK_MAX_ENVS`` envs; each output the
        program leaves out is one allocation and one write fewer)."""
        stats, validate = self._settings
        same_step = self._env.autoreset_mode.name == "SAME_STEP"
        keep = [0, 1, 2, 3]
        if stats or same_step:
            keep.append(4)
        if stats:
            keep += [5, 6]
        if same_step:
            keep.append(7)
        if validate and self._env._check_in_program:
            keep.append(8)
        return tuple(keep)

    def key(self) -> tuple[Any, ...]:
        """What the compiled program bakes in: envs agreeing on it share one program."""
        env = self._env
        return (
            type(env),
            env.num_envs,
            env.dtype,
            env.obs_dtype,
            str(env.device),
            env.autoreset_mode,
            env.max_episode_steps,
            tuple(env.params),
            tuple(env.randomize),
            tuple(env.single_action_space.shape or ()),
            self._keep,
            torch.get_num_threads(),  # the step runs (and compiles) under the env's thread count
            torch.__version__,
        )

    def _inputs(self, action: torch.Tensor) -> list[torch.Tensor]:
        return [action.contiguous(), *self._get_buffers(self._env), *self._env.params.values()]

    def _cache_file(self, key: tuple[Any, ...]) -> Path | None:
        """Where this configuration's compiled program is kept on disk (``None``: no disk cache)."""
        root = os.environ.get("RISKRL_CACHE_DIR")
        if root is None:
            try:
                root = str(Path.home() / ".cache" / "riskrl")
            except RuntimeError:  # no home directory: compile per process
                return None
        if not root:
            return None
        h = hashlib.sha256(repr(key).encode())
        for cls in (type(self._env), *type(self._env).__mro__):  # the step's code: every env class's source
            if cls.__module__.startswith(("riskrl", "envs")):
                h.update(inspect.getsource(inspect.getmodule(cls)).encode())
        h.update(Path(__file__).read_bytes())
        h.update(f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}".encode())
        return Path(root) / "aot" / f"{type(self._env).__name__}-{h.hexdigest()[:24]}.pt2"

    def _compile(self, action: torch.Tensor) -> None:
        key = self.key()
        run = _PROGRAMS.get(key)
        if run is None:  # first env of this configuration in this process: from disk, else compiled
            run = self._load_or_compile(key, action)
            _PROGRAMS[key] = run
        self._run = run

    def _load_or_compile(
        self, key: tuple[Any, ...], action: torch.Tensor
    ) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
        cache = self._cache_file(key)
        if cache is not None and cache.is_file():
            try:
                run = torch._inductor.aoti_load_package(str(cache)).loader.run
            except Exception:  # a broken or foreign file: compile again and replace it
                pass
            else:
                try:
                    os.utime(cache)  # used now: the pruning keeps recently used programs
                except OSError:
                    pass
                return run
        elif cache is not None:
            _prune(cache.parent)  # a new program is about to be written: make room first
        example = [t.clone() for t in self._inputs(action)]
        # torch's own deprecation notices (from export and from inductor) are not the user's
        with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="riskrl-aot-") as tmp:
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.export.export(
                _StepProgram(self._env, self._names, self._keep), tuple(example), strict=False
            )
            path = torch._inductor.aoti_compile_and_package(program, package_path=str(Path(tmp) / "step.pt2"))
            if cache is not None:
                try:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_bytes(cache, Path(path).read_bytes())
                except OSError:  # a read-only home: compile per process
                    pass
            return torch._inductor.aoti_load_package(path).loader.run

    def __call__(self, action: torch.Tensor, act_noise: torch.Tensor | None) -> tuple[Any, ...]:
        if act_noise is not None or self._failed:
            return self._fallback(action, act_noise)
        env, (stats, validate) = self._env, self._settings
        if env.episode_statistics != stats or env.validate_actions != validate:
            # episode statistics or validation switched after compiling: the program for the new settings
            self._settings = self._current_settings()
            self._keep = self._outputs()
            self._run = None
        if self._run is None:
            try:
                self._compile(action)
            except Exception as err:  # any AOTInductor failure: the torch.compile step
                self._failed = True
                warnings.warn(
                    f"AOTInductor could not compile the step ({type(err).__name__}: {str(err)[:200]}); "
                    "using torch.compile",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return self._fallback(action, act_noise)
        assert self._run is not None
        out = self._run(self._inputs(action))
        keep = self._keep
        if keep == _DEFAULT_OUTPUTS:  # the default: obs, reward, term, trunc, invalid
            obs, reward, term, trunc, invalid = out
            return obs, reward, term, trunc, None, None, None, None, invalid
        if len(keep) == 4:  # the default above _IN_PROGRAM_CHECK_MAX_ENVS: obs, reward, term, trunc
            return (*out, None, None, None, None, None)
        full: list[Any] = [None] * 9
        for i, o in zip(keep, out, strict=True):
            full[i] = o
        return tuple(full)
