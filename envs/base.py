"""Shared machinery for the torch-batched classic-control environments.

Design:

* The state is stored *struct-of-arrays*, shape ``(state_dim, num_envs)``, so every per-variable row is
  contiguous; ``env.state`` exposes it as ``(num_envs, state_dim)``.
* One ``step`` is a single pure tensor function (:meth:`TorchVectorEnv._core`) over the whole batch:
  dynamics, autoreset, truncation and episode statistics are all computed with masks / ``torch.where``
  and written back in place. There is no host synchronisation and no per-env Python, so the same code
  scales on a GPU; with ``compile=True`` the function is fused by ``torch.compile`` (eager fallback).
* Autoreset initial states come from a counter-based hash RNG (murmur3 finaliser of
  ``(key, step counter, element index)``) whose key is drawn from the env's seeded ``torch.Generator`` at
  ``reset(seed=...)``. Drawing from a ``torch.Generator`` every step costs more than the whole step on a
  CPU, and a stateless hash fuses into the step kernel. Everything is deterministic given the seed.
* Explicit ``reset`` draws from the ``torch.Generator``, as do parameter sampling (``perturb``) and
  observation / action noise.
"""

from __future__ import annotations

import math
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, NoReturn

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .aot import AotStep
from .render import ClassicControlRenderer

__all__ = [
    "NOISE_PARAMS",
    "POSITIVE_PARAMS",
    "Rollout",
    "TorchVectorEnv",
    "angle_normalize",
    "check_physical",
]

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B1
NOISE_PARAMS = ("obs_noise_std", "action_noise_std")
ParamValue = float | int | torch.Tensor | np.ndarray | Sequence[float] | tuple[float, float]


def _hash_uniform_premul(
    key: torch.Tensor, counter: torch.Tensor, idx_mul: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Stateless uniform [0, 1) numbers from ``(key, counter, idx)`` (murmur3 fmix32 in int64 lanes), with
    ``idx_mul = idx * 0x9E3779B1`` precomputed once per env (two fewer ops per step)."""
    x = (idx_mul + torch.add(key, counter, alpha=0x85EBCA77)) & _M32
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & _M32
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & _M32
    x = x ^ (x >> 16)
    return (x >> 8).to(dtype) * (1.0 / 16777216.0)


#: physical parameters that must be > 0 (masses, lengths, time steps, speed limits); every other
#: parameter must be >= 0 (gravity magnitudes, forces, noise levels, centre-of-mass positions)
POSITIVE_PARAMS = frozenset(
    {"masscart", "masspole", "length", "tau", "link_length_1", "link_length_2", "link_mass_1", "link_mass_2"}
    | {"link_moi", "dt", "m", "l", "max_speed"}
)


def check_physical(name: str, value: Any) -> None:
    """ValueError naming ``name`` unless ``value`` (a scalar, ``(low, high)`` or per-env values) is
    finite and physically valid: ``> 0`` for :data:`POSITIVE_PARAMS`, ``>= 0`` for all others."""
    try:
        if isinstance(value, tuple):
            arr = np.asarray([float(v) for v in value], dtype=np.float64)
        elif isinstance(value, torch.Tensor):
            arr = value.detach().to("cpu", torch.float64).numpy()
        else:
            arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a number, (low, high) or per-env numbers, got {value!r}"[:200]
        ) from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {value!r}"[:200])
    positive = name in POSITIVE_PARAMS
    if (arr <= 0).any() if positive else (arr < 0).any():
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}"[:200])


#: up to this batch size the compiled step returns its flags as bool (viewed from uint8 inside the
#: program: ~1 us less per call at 64 envs than three ``.view`` calls in Python); above it the views in
#: the program cost more than they save (+8% per step at 1024 envs, +10% at 4096), so flags come back
#: as uint8 and :meth:`TorchVectorEnv.step` reinterprets them
_BOOL_VIEW_MAX_ENVS = 256
#: the compiled step checks actions inside its program up to this many envs (one scalar read instead of
#: a separate reduction and two host reads: 4.03M vs 3.37M CartPole steps/s at 64 envs, one thread);
#: above it the check in the program costs more than it saves (the step then waits for a reduction
#: before writing its state: 1.04x at 1024 envs, 0.96x at 4096, 0.88x at 65536), so larger batches are
#: checked by one reduction before the step (experiments/results/bench_action_check.md)
_IN_PROGRAM_CHECK_MAX_ENVS = 1024


def _to_u8(mask: torch.Tensor) -> torch.Tensor:
    """bool -> uint8 0/1 written as a select, which inductor vectorises (a plain ``.to(uint8)`` is not)."""
    return torch.where(mask, 1, 0).to(torch.uint8)


class Rollout(NamedTuple):
    """What :meth:`TorchVectorEnv.rollout` returns; every field is indexed ``[t, env, ...]``.

    ``obs[t]``, ``rewards[t]``, ``terminated[t]``, ``truncated[t]`` are what the ``t``-th ``step``
    returned, ``actions[t]`` what it was given (after dtype conversion); ``final_obs[t]`` (``SAME_STEP``
    autoreset only, else ``None``) holds the terminal observation of envs done at step ``t``, zeros
    elsewhere. ``obs[-1]`` is the observation to continue from. ``policy_extra[t]`` is what the policy
    returned beside its actions at step ``t`` when it returned ``(actions, extra)`` (e.g. the chosen
    actions' epistemic std), else ``None``.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_obs: torch.Tensor | None
    policy_extra: torch.Tensor | None = None


class TorchVectorEnv(VectorEnv):
    """Base class: a batch of ``num_envs`` independent copies of one classic-control env, as torch tensors.

    Args:
        num_envs: batch size ``N``.
        device: torch device holding all state.
        dtype: floating dtype of the state, physical parameters and rewards. The default ``torch.float64``
            is gymnasium's own precision: trajectories match gymnasium's from the same states (same
            terminations and truncations, states to ~1e-7 over whole episodes). ``torch.float32`` is the
            explicit speed option (see ``experiments/bench_rollout.py``); it leaves gymnasium's
            trajectory after ~100 steps as rounding errors grow, like any float32 re-implementation.
        obs_dtype: dtype of observations (default ``torch.float32``, as gymnasium's observation spaces).
        autoreset_mode: ``AutoresetMode.NEXT_STEP`` (default, like gymnasium's vector envs: the step after
            a done returns the reset observation, reward 0, and ignores the action) or
            ``AutoresetMode.SAME_STEP`` (the returned obs is already the reset obs; the terminal
            observations are in ``info["final_obs"]`` ``(N, obs_dim)`` with mask ``info["_final_obs"]``).
        max_episode_steps: truncation horizon (defaults to the registered gymnasium spec's).
        validate_actions: refuse out-of-range / NaN actions with a ValueError. Numpy actions are checked
            on the host before conversion; torch actions with one reduction (``aminmax`` for discrete
            actions, one ``isnan().any()`` for continuous ones) and one read of its result (a host sync on
            CUDA). ``False`` skips it; shapes and dtypes are always checked (metadata only, no sync).
        compile: ``None`` (default, "auto"): eager at first; on CPU the env switches to the
            compiled step after :meth:`auto_compile_after` steps (~13,000 steps at 1-64 envs,
            ~4,300 at 4096, ~360 at 65536: about 4 s of eager stepping), i.e. once a run is long enough
            for the compile to pay; deterministic, so a seed gives the same switch point. Subclasses
            that override :meth:`step` stay eager. ``True``: compiled from the first step. ``False``:
            always eager. On CPU the step is compiled ahead of time (:mod:`riskrl.envs.aot`, AOTInductor:
            ~10-20 s the first time a configuration is compiled, then loaded from the disk cache in
            ~1-3 s) and called without ``torch.compile``'s per-call cost (64 CartPoles: ~7x eager,
            ~5x the ``torch.compile`` step); elsewhere, and for steps with action noise, it is the
            ``torch.compile`` step. The compiled step equals the eager one up to float rounding (kernel
            fusion may reorder operations; flags identical in the tests, states to ~1e-12 in float64).
            Falls back to ``torch.compile`` and then to eager with a warning on failure.
        num_threads: torch intra-op threads used *inside* :meth:`step` / :meth:`rollout` (the caller's
            setting is restored before they return, so ``torch.get_num_threads()`` never changes as seen
            by the caller). ``None`` (default): 1 on CPU, which on a classic-control step is as fast as
            more threads on a quiet machine up to tens of thousands of envs and immune to
            oversubscription on a loaded one (2 threads on a loaded 2-core machine made a 4096-env step
            ~20x slower); the caller's setting on other devices. An int forces that count.
        episode_statistics: ``False`` (default, like gymnasium's own vector envs, so gymnasium's
            ``RecordEpisodeStatistics`` composes) or ``True``: on steps where an episode ends,
            ``info["episode"] = {"r": (N,), "l": (N,)}`` with the mask ``info["_episode"]`` (entries
            outside the mask are 0), as ``RecordEpisodeStatistics`` writes them. Deciding whether any
            episode ended is one ``any()`` per step (a host sync on CUDA); ``False`` costs nothing.
        render_mode: ``None`` or ``"rgb_array"``: :meth:`render` returns one frame per env, drawn by
            gymnasium's own classic-control renderer (needs ``pygame``: ``pip install riskrl[render]``).
        randomize: domain randomization, e.g. ``{"length": (0.25, 1.0)}``: each named physical
            parameter is drawn uniformly from ``(low, high)`` per env at every reset, explicit or
            automatic (reproducible from ``reset(seed=...)``; the step that ends an episode still uses
            the old values). Works the same under SB3 through :class:`SB3VecEnv`.
        **params: physical parameters and ``obs_noise_std`` / ``action_noise_std``, as in :meth:`perturb`.

    ``step`` returns ``(obs (N, obs_dim), reward (N,), terminated (N,) bool, truncated (N,) bool, info)``
    as torch tensors; ``make_vec(..., array="numpy")`` gives numpy arrays for gymnasium's vector wrappers.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "render_modes": ["rgb_array"],
        "render_fps": 50,
    }

    # --- subclass interface --------------------------------------------------------------------------
    env_id: ClassVar[str] = ""
    state_dim: ClassVar[int] = 0
    obs_dim: ClassVar[int] = 0
    default_max_episode_steps: ClassVar[int] = 0
    param_defaults: ClassVar[dict[str, float]] = {}
    #: state is rounded through float32 after every step (the reference keeps a float32 state)
    float32_state: ClassVar[bool] = False
    #: physical parameter -> the attribute of gymnasium's reference env that holds it (configured
    #: gymnasium envs are mapped onto the batched env through it; rendering sets it on the reference)
    gym_attributes: ClassVar[dict[str, str]] = {}

    def _make_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        """Return ``(single_observation_space, single_action_space)``."""
        raise NotImplementedError

    #: per-state-variable bounds of the uniform initial-state distribution
    reset_low: ClassVar[tuple[float, ...]] = ()
    reset_high: ClassVar[tuple[float, ...]] = ()

    def _initial_state(self, u: torch.Tensor) -> torch.Tensor:
        """Map uniforms ``u`` of shape ``(state_dim, N)`` in [0, 1) to initial states ``(state_dim, N)``."""
        return self._rlo + self._rspan * u

    def _parse_reset_options(self, options: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """gymnasium-style ``options={"low": l, "high": h}`` (applied to every state variable)."""
        low = float(options.get("low", self.reset_low[0]))
        high = float(options.get("high", self.reset_high[0]))
        if low > high:
            raise ValueError(f"reset option low ({low}) > high ({high})")
        return (low,) * self.state_dim, (high,) * self.state_dim

    def _set_reset_bounds(self, low: Sequence[float], high: Sequence[float]) -> None:
        lo = torch.tensor(low, dtype=self.dtype, device=self.device).unsqueeze(-1)
        hi = torch.tensor(high, dtype=self.dtype, device=self.device).unsqueeze(-1)
        self._rlo, self._rspan = lo, hi - lo

    def _dynamics(
        self, s: torch.Tensor, action: torch.Tensor, act_noise: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One transition for the batch: ``s`` ``(state_dim, N)`` -> ``(next_s, reward (N,), terminated (N,))``."""
        raise NotImplementedError

    def _obs_from_state(self, s: torch.Tensor) -> torch.Tensor:
        """Observation ``(N, obs_dim)`` from a ``(state_dim, N)`` state (default: the state itself)."""
        return self._stack_obs(*s.unbind(0))

    def _stack_obs(self, *features: torch.Tensor) -> torch.Tensor:
        """``(N,)`` features -> the ``(N, len(features))`` observation in ``obs_dtype``: each feature is
        converted before the stack, which compiles to a ~20% faster step at 4096 CartPoles than
        converting the stacked (or transposed) block (the conversion then ran on the transposed layout)."""
        return torch.stack([f.to(self.obs_dtype) for f in features], dim=-1)

    def reward_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Batched reward in observation space; arbitrary leading dims ``(..., obs_dim)`` -> ``(...)``."""
        raise NotImplementedError

    def termination_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Batched termination in observation space; ``(..., obs_dim)`` -> ``(...)`` bool."""
        raise NotImplementedError

    # --- construction --------------------------------------------------------------------------------
    def __init__(
        self,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        max_episode_steps: int | None = None,
        validate_actions: bool = True,
        compile: bool | None = None,
        obs_dtype: torch.dtype = torch.float32,
        episode_statistics: bool = False,
        render_mode: str | None = None,
        randomize: Mapping[str, tuple[float, float]] | None = None,
        num_threads: int | None = None,
        **params: ParamValue,
    ) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        if not obs_dtype.is_floating_point:
            raise ValueError(f"obs_dtype must be a floating dtype, got {obs_dtype}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        mode = AutoresetMode(autoreset_mode)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset_mode must be NEXT_STEP or SAME_STEP, got {mode}")
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.dtype = dtype
        self.obs_dtype = obs_dtype
        self.episode_statistics = bool(episode_statistics)
        self.autoreset_mode = mode
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.max_episode_steps = int(max_episode_steps or self.default_max_episode_steps)
        if self.max_episode_steps < 1:
            raise ValueError("max_episode_steps must be >= 1")
        self.validate_actions = bool(validate_actions)
        self.render_mode = render_mode
        self._renderer: Any = None
        self._last_action: torch.Tensor | None = None

        self.single_observation_space, self.single_action_space = self._make_spaces()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._discrete = isinstance(self.single_action_space, spaces.Discrete)
        self._act_dim = 0 if self._discrete else int(np.prod(self.single_action_space.shape))
        self._num_actions = int(self.single_action_space.n) if self._discrete else 0
        # the dtype and shape :meth:`step` takes without conversion
        self._action_dtype = torch.int64 if self._discrete else dtype
        self._action_shape = torch.Size(
            (self.num_envs,) if self._discrete else (self.num_envs, self._act_dim)
        )

        n, dev = self.num_envs, self.device
        kw = {"device": dev}
        self._gen = torch.Generator(device=dev)
        # Unseeded envs draw fresh OS entropy, like gymnasium's (reset(seed=...) makes them reproducible);
        # torch's global RNG is never touched, so creating an env does not shift anyone else's draws.
        self._gen.manual_seed(int(np.random.SeedSequence().entropy % 2**62))
        self._s = torch.zeros(self.state_dim, n, dtype=dtype, **kw)
        self._steps = torch.zeros(n, dtype=torch.int32, **kw)
        # uint8 storage with a bool view: the compiled step reads/writes the uint8 buffer (inductor's
        # bool stores on CPU are ~10x slower than uint8 ones), everything else uses the bool view.
        self._prev_u8 = torch.zeros(n, dtype=torch.uint8, **kw)
        self._prev_done = self._prev_u8.view(torch.bool)
        self._ep_ret = torch.zeros(n, dtype=dtype, **kw)
        self._ep_len = torch.zeros(n, dtype=torch.int32, **kw)
        self._counter = torch.zeros((), dtype=torch.int64, **kw)
        self._key = torch.zeros((), dtype=torch.int64, **kw)
        self._idx_mul = self._lane_ids(0, self.state_dim)  # the reset draws' hash lanes, precomputed
        self._needs_reset = True
        self._set_reset_bounds(self.reset_low, self.reset_high)

        self.params: dict[str, torch.Tensor] = {
            k: torch.full((n,), float(v), dtype=dtype, **kw) for k, v in self.param_defaults.items()
        }
        self.noise: dict[str, torch.Tensor] = {k: torch.zeros(n, dtype=dtype, **kw) for k in NOISE_PARAMS}
        self._obs_noise_on = False
        self._act_noise_on = False
        if params:
            self.perturb(**params)
        self._set_randomize(randomize or {})

        if num_threads is not None and int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
        self.num_threads: int | None = (
            int(num_threads) if num_threads is not None else (1 if self.device.type == "cpu" else None)
        )
        self._core_fn = self._core
        self._compiled = False
        self._check_in_program = self.num_envs <= _IN_PROGRAM_CHECK_MAX_ENVS  # see the constant
        self._compile_mode = compile
        # auto mode: number of eager steps before switching to the compiled step (never, if not worth it)
        self._auto_left = -1
        if compile is None:
            # subclasses that override step() keep side effects outside the step program: never auto
            plain = type(self).step is TorchVectorEnv.step
            if plain and self.device.type == "cpu":
                self._auto_left = self.auto_compile_after(self.num_envs)
        elif compile:
            self._enable_compile()

    #: auto-compile (``compile=None``): switch once the eager steps taken would have cost about this many
    #: seconds on one CPU thread (about one compile time, so, like the ski-rental rule, auto mode costs at
    #: most about twice the better of "always eager" and "always compiled" for any run length) ...
    AUTO_COMPILE_SECONDS: ClassVar[float] = 4.0
    #: ... with an eager step modelled as ``overhead + per_env * num_envs`` seconds (measured on CartPole,
    #: float64, one thread: ~0.3 ms of per-op overhead, ~0.16 us per env). A step count, not a clock, so a
    #: seed gives the same switch point on every machine.
    EAGER_STEP_OVERHEAD_S: ClassVar[float] = 3e-4
    EAGER_STEP_PER_ENV_S: ClassVar[float] = 1.6e-7

    @classmethod
    def auto_compile_after(cls, num_envs: int) -> int:
        """Number of eager steps after which ``compile=None`` switches to the compiled step."""
        per_step = cls.EAGER_STEP_OVERHEAD_S + cls.EAGER_STEP_PER_ENV_S * num_envs
        return max(1, math.ceil(cls.AUTO_COMPILE_SECONDS / per_step))

    def _enable_compile(self) -> None:
        compiled = torch.compile(self._private_core_fast(), dynamic=False)
        # on CPU, the step compiled ahead of time (no per-call dynamo cost); torch.compile as its fallback
        self._core_fn = AotStep(self, compiled) if self.device.type == "cpu" else compiled
        self._compiled = True

    # --- parameters ----------------------------------------------------------------------------------
    @property
    def param_names(self) -> tuple[str, ...]:
        """Names accepted by :meth:`perturb` (physical parameters, then noise options)."""
        return (*self.param_defaults, *NOISE_PARAMS)

    def perturb(self, **params: ParamValue) -> dict[str, torch.Tensor]:
        """Set or sample per-env parameters in place.

        Each value is a scalar (same for all envs), a per-env tensor / array of shape ``(N,)``, or a
        ``(low, high)`` tuple sampled uniformly per env with the env's generator. Valid names are the
        physical parameters in :attr:`params` plus ``obs_noise_std`` and ``action_noise_std`` (Gaussian
        noise added to observations / to the continuous control signal; for discrete envs the noise is
        added to the action's force/torque in units of the action magnitude). Returns the touched tensors.
        """
        unknown = sorted(set(params) - set(self.param_names))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; valid names: {list(self.param_names)}")
        out = {}
        for name, value in params.items():
            check_physical(name, value)
            target = self.noise[name] if name in NOISE_PARAMS else self.params[name]
            if isinstance(value, tuple):
                if len(value) != 2:
                    raise ValueError(f"{name}: a tuple must be (low, high), got {value!r}")
                lo, hi = float(value[0]), float(value[1])
                if hi < lo:
                    raise ValueError(f"{name}: high < low in {value!r}")
                u = torch.rand(self.num_envs, generator=self._gen, device=self.device, dtype=self.dtype)
                target.copy_(lo + (hi - lo) * u)
            elif isinstance(value, int | float):
                target.fill_(float(value))
            else:
                t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
                if t.shape != (self.num_envs,):
                    raise ValueError(
                        f"{name}: expected a scalar, (low, high) or shape ({self.num_envs},), got {tuple(t.shape)}"
                    )
                target.copy_(t.to(device=self.device, dtype=self.dtype))
            out[name] = target
        # Host-side flags (perturb is not on the hot path, so the sync here is fine).
        self._obs_noise_on = bool((self.noise["obs_noise_std"] != 0).any())
        self._act_noise_on = bool((self.noise["action_noise_std"] != 0).any())
        return out

    def _set_randomize(self, randomize: Mapping[str, tuple[float, float]]) -> None:
        """Domain randomization: these parameters are drawn uniformly from ``(low, high)`` per env at
        every reset (explicit and automatic), from the env's seeded randomness."""
        if not isinstance(randomize, Mapping):
            raise ValueError(f"randomize must map parameter names to (low, high), got {randomize!r}")
        names = tuple(randomize)
        for name in names:
            if name not in self.param_defaults:
                raise ValueError(
                    f"randomize: unknown parameter {name!r}; valid names: {list(self.param_defaults)}"
                )
            rng = randomize[name]
            if not isinstance(rng, Sequence) or isinstance(rng, str) or len(rng) != 2:
                raise ValueError(f"randomize[{name!r}] must be a (low, high) pair, got {rng!r}")
            check_physical(name, tuple(rng))
            if float(rng[1]) < float(rng[0]):
                raise ValueError(f"randomize[{name!r}]: high < low in {tuple(rng)!r}")
        self.randomize = {k: (float(randomize[k][0]), float(randomize[k][1])) for k in names}
        kw = {"device": self.device, "dtype": self.dtype}
        self._rand_lo = torch.tensor([lo for lo, _ in self.randomize.values()], **kw).reshape(-1, 1)
        self._rand_span = torch.tensor([hi - lo for lo, hi in self.randomize.values()], **kw).reshape(-1, 1)
        # hash-RNG lanes after the state's (state_dim * n .. ) so autoreset draws never share a lane
        self._rand_idx_mul = self._lane_ids(self.state_dim, len(names))

    def _lane_ids(self, first_row: int, rows: int) -> torch.Tensor:
        """Hash-RNG lane ids ``idx * 0x9E3779B1`` (exact in int64) for ``rows`` rows of ``num_envs`` lanes
        from row ``first_row``: ``(rows, num_envs)``. Eager steps read them from a buffer made once;
        compiled programs call this (``arange`` becomes index arithmetic in the kernel: no memory read)."""
        n = self.num_envs
        first = first_row * n
        ids = torch.arange(first, first + rows * n, dtype=torch.int64, device=self.device)
        return ids.view(rows, n) * _GOLDEN

    def _resample_params(self, u: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Set the randomized parameters to ``low + span * u`` (``u``: ``(k, n)`` uniforms) where ``mask``."""
        values = self._rand_lo + self._rand_span * u
        for i, name in enumerate(self.randomize):
            target = self.params[name]
            target.copy_(values[i] if mask is None else torch.where(mask, values[i], target))

    # --- state access ----------------------------------------------------------------------------------
    @property
    def state(self) -> torch.Tensor:
        """Copy of the current state, shape ``(num_envs, state_dim)``."""
        return self._s.t().clone()

    @state.setter
    def state(self, value: torch.Tensor | np.ndarray) -> None:
        """Inject exact states ``(num_envs, state_dim)``; clears any pending autoreset."""
        v = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
        v = v.to(device=self.device, dtype=self.dtype)
        if v.shape != (self.num_envs, self.state_dim):
            raise ValueError(f"state must have shape {(self.num_envs, self.state_dim)}, got {tuple(v.shape)}")
        self._s.copy_(v.t())
        self._prev_done.zero_()
        self._needs_reset = False

    def get_obs(self) -> torch.Tensor:
        """Observation ``(N, obs_dim)`` of the current state (no noise); a copy, never a view of the state."""
        return self._obs_from_state(self._s).to(self.obs_dtype).clone(memory_format=torch.contiguous_format)

    # --- reset / step --------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reset all envs (or those in ``options["reset_mask"]``); ``seed`` makes everything deterministic."""
        if seed is not None:
            self._gen.manual_seed(int(seed))
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        # A fresh key for the autoreset hash RNG, drawn from the (seeded) generator, and a fresh count.
        self._key.fill_(int(torch.randint(0, 2**31, (1,), generator=self._gen, device=self.device).item()))
        self._counter.zero_()
        # Drawn in float32 whatever the dtype, so a seed gives the same episodes in every precision
        # (up to rounding), as the autoreset hash does (24-bit uniforms, exact in both).
        u = torch.rand(
            self.state_dim, self.num_envs, generator=self._gen, device=self.device, dtype=torch.float32
        ).to(self.dtype)
        if options:
            # As in gymnasium, options shape this reset only; autoresets keep the default bounds.
            defaults = (self._rlo, self._rspan)
            self._set_reset_bounds(*self._parse_reset_options(options))
            init = self._initial_state(u)
            self._rlo, self._rspan = defaults
        else:
            init = self._initial_state(u)
        if self.randomize:
            m = None if mask is None else torch.as_tensor(mask, device=self.device, dtype=torch.bool)
            u_params = torch.rand(
                len(self.randomize), self.num_envs, generator=self._gen, device=self.device, dtype=self.dtype
            )
            self._resample_params(u_params, m)
        if mask is None:
            self._s.copy_(init)
            self._steps.zero_()
            self._prev_done.zero_()
            self._ep_ret.zero_()
            self._ep_len.zero_()
        else:
            m = torch.as_tensor(mask, device=self.device, dtype=torch.bool)
            self._s.copy_(torch.where(m, init, self._s))
            for buf in (self._steps, self._ep_ret, self._ep_len):
                buf.masked_fill_(m, 0)
            self._prev_done.masked_fill_(m, False)
        self._needs_reset = False
        self._last_action = None
        return self._noisy_obs(self.get_obs()), {}

    def _noisy_obs(self, obs: torch.Tensor) -> torch.Tensor:
        if not self._obs_noise_on:
            return obs
        eps = torch.randn(obs.shape, generator=self._gen, device=self.device, dtype=self.dtype)
        return (obs + eps * self.noise["obs_noise_std"].unsqueeze(-1)).to(obs.dtype)

    def _check_actions(self, actions: Any) -> torch.Tensor:
        """``actions`` as a tensor of the step's dtype, shape and device (TypeError / ValueError if they
        cannot be); values are checked here except where the compiled step checks them inside its program
        (batches up to ``_IN_PROGRAM_CHECK_MAX_ENVS``), which refuses them before touching the state."""
        a = actions
        if type(a) is torch.Tensor and a.dtype is self._action_dtype and a.shape == self._action_shape:
            # fast path (the common case: a tensor of the right dtype and shape): only device and values
            if a.device != self.device:
                a = a.to(self.device)
            if self.validate_actions and not (self._compiled and self._check_in_program):
                self._validate_action_values(a)
            return a
        if not isinstance(a, torch.Tensor):
            arr = np.asarray(a)
            if arr.dtype.kind not in "fiub":
                raise TypeError(f"{type(self).__name__}: actions must be numeric, got dtype {arr.dtype}")
            a = torch.as_tensor(arr)
        n = self.num_envs
        if self._discrete:
            if a.dtype.is_floating_point or a.dtype.is_complex or a.dtype == torch.bool:
                raise TypeError(
                    f"{type(self).__name__}: discrete actions must be integers, got dtype {a.dtype}"
                )
            if a.shape != (n,):
                raise ValueError(
                    f"{type(self).__name__}: actions must have shape ({n},), got {tuple(a.shape)}"
                )
            a = a.to(device=self.device, dtype=torch.int64)
        else:
            if a.dtype.is_complex or a.dtype == torch.bool:
                raise TypeError(
                    f"{type(self).__name__}: continuous actions must be real numbers, got {a.dtype}"
                )
            if a.shape != (n, self._act_dim):
                raise ValueError(
                    f"{type(self).__name__}: actions must have shape ({n}, {self._act_dim}), got {tuple(a.shape)}"
                )
            a = a.to(device=self.device, dtype=self.dtype)
        if self.validate_actions and not (self._compiled and self._check_in_program):
            self._validate_action_values(a)
        return a

    def _validate_action_values(self, a: torch.Tensor) -> None:
        """ValueError unless every action is valid: an index in ``[0, n)`` (discrete), not NaN (continuous)."""
        if self._discrete:
            lo, hi = torch.aminmax(a)  # one reduction, one read
            if int(lo) < 0 or int(hi) >= self._num_actions:
                self._refuse_actions(a)
        elif bool(torch.isnan(a).any()):
            self._refuse_actions(a)

    def _invalid_actions(self, a: torch.Tensor) -> torch.Tensor:
        """0-dim bool tensor: some action is invalid (the in-program form of :meth:`_validate_action_values`)."""
        if self._discrete:
            return ((a < 0) | (a >= self._num_actions)).any()
        return torch.isnan(a).any()

    def _refuse_actions(self, a: torch.Tensor) -> NoReturn:
        """The ValueError for an invalid action batch ``a``."""
        if self._discrete:
            raise ValueError(
                f"{type(self).__name__}: actions must be in [0, {self._num_actions}), got {a.tolist()[:16]}"
            )
        raise ValueError(f"{type(self).__name__}: NaN in actions")

    def _enter_threads(self) -> int:
        """Switch torch to :attr:`num_threads` for the step; returns the caller's count to restore."""
        prev = torch.get_num_threads()
        if self.num_threads is not None and self.num_threads != prev:
            torch.set_num_threads(self.num_threads)
        return prev

    def step(
        self, actions: torch.Tensor | np.ndarray | Sequence[Any]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Step all envs; see the class docstring for the returned tensors and info conventions."""
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        # :meth:`_enter_threads` inlined (the step is the hot path): no switch when none is needed
        prev = torch.get_num_threads()
        if self.num_threads is None or self.num_threads == prev:
            return self._step(actions)
        torch.set_num_threads(self.num_threads)
        try:
            return self._step(actions)
        finally:
            torch.set_num_threads(prev)

    def _step(
        self, actions: torch.Tensor | np.ndarray | Sequence[Any]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        return self._step_checked(self._check_actions(actions))

    def _step_checked(
        self, a: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """The step for actions already through :meth:`_check_actions` (so checked once per step).

        The step that turns compilation on checks values eagerly and again in the new program.
        """
        if self._auto_left > 0:
            self._auto_left -= 1
            if self._auto_left == 0:
                self._enable_compile()
        act_noise = None
        if self._act_noise_on:
            act_noise = (
                torch.randn(self.num_envs, generator=self._gen, device=self.device, dtype=self.dtype)
                * self.noise["action_noise_std"]
            )
        try:
            out = self._core_fn(a, act_noise)
        except Exception as err:  # pragma: no cover - only when torch.compile is unavailable
            if not self._compiled:
                raise
            warnings.warn(
                f"torch.compile failed ({err!r}); falling back to eager", RuntimeWarning, stacklevel=2
            )
            self._core_fn, self._compiled = self._core, False
            if self.validate_actions:
                self._validate_action_values(a)
            out = self._core_fn(a, act_noise)
        obs, reward, term, trunc, done, ep_r, ep_l, final_obs, invalid = out
        if invalid is not None and invalid.item():  # the program left the env as it was
            self._refuse_actions(a)
        if term.dtype == torch.uint8:  # compiled path returns uint8 flags (0/1): reinterpret, no copy
            term, trunc = term.view(torch.bool), trunc.view(torch.bool)
            if done is not None:  # (the compiled step leaves out what this env's step does not use)
                done = done.view(torch.bool)
        info: dict[str, Any] = {}
        if self.episode_statistics and bool(done.any()):
            info["episode"] = {"r": ep_r, "l": ep_l}
            info["_episode"] = done
        if self.render_mode is not None:
            self._last_action = a.clone()  # frames of some envs show the last action (Pendulum's torque)
        if final_obs is not None:
            info["final_obs"] = self._noisy_obs(final_obs)
            info["_final_obs"] = done
            info["final_info"] = {}
            info["_final_info"] = done
        return self._noisy_obs(obs), reward, term, trunc, info

    def rollout(
        self,
        policy: Callable[[torch.Tensor], Any],
        n_steps: int,
        obs: torch.Tensor | None = None,
        fuse: int = 0,
    ) -> Rollout:
        """Run ``n_steps`` steps of ``policy`` + env in one call; the same results as calling
        ``policy`` and :meth:`step` ``n_steps`` times (same autoresets, RNG draws and action checks).

        ``policy`` maps an observation batch ``(N, obs_dim)`` to actions for :meth:`step`, or to
        ``(actions, extra)`` with a tensor ``extra`` recorded per step in ``Rollout.policy_extra`` (e.g.
        the chosen actions' epistemic std); it runs under the env's :attr:`num_threads`, like the step.
        ``obs`` is the observation the first action is chosen from (default: :meth:`get_obs`, the
        noise-free current one; pass the last observation ``step``/``reset`` returned to continue
        exactly). The outputs are written into preallocated
        ``(n_steps, N, ...)`` buffers (no per-step stacking); the thread switch is done once per call.

        ``fuse=k > 0`` compiles ``k`` steps of policy + env into one program (a ``scan``, the way gymnax
        users ``lax.scan``; the loop runs inside the program, in C++), run ``n_steps / k`` times: for
        small and medium batches, where call-by-call stepping is mostly per-call overhead (64 CartPoles:
        ~6M env steps/s at ``k=128`` vs ~0.5M call by call, one thread). ``policy`` must then be a pure
        tensor function (traceable by ``torch.compile``, e.g. a network's forward pass); the program is
        compiled once per ``(policy, k)`` and env (~10 s, whatever ``k``), results equal the
        call-by-call ones up to float rounding (fused kernels), and observation / action noise and
        ``randomize`` are not supported. The policy's first output is checked like :meth:`step`'s
        actions before compiling; afterwards actions are validated with one check per program run: an
        invalid action anywhere in it leaves the env as it was before that run and raises the same
        ValueError as :meth:`step`.
        """
        n_steps = int(n_steps)
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if self._needs_reset:
            raise RuntimeError("call reset() before rollout()")
        if fuse:
            return self._fused_rollout(policy, n_steps, obs, int(fuse))
        prev = self._enter_threads()
        try:
            o = self.get_obs() if obs is None else obs
            n, kw = self.num_envs, {"device": self.device}
            out_obs = torch.empty((n_steps, *o.shape), dtype=self.obs_dtype, **kw)
            rewards = torch.empty((n_steps, n), dtype=self.dtype, **kw)
            terms = torch.empty((n_steps, n), dtype=torch.bool, **kw)
            truncs = torch.empty((n_steps, n), dtype=torch.bool, **kw)
            same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
            final = torch.zeros((n_steps, *o.shape), dtype=self.obs_dtype, **kw) if same_step else None
            actions: torch.Tensor | None = None
            extra: torch.Tensor | None = None
            # a subclass's own step() (extra bookkeeping) is honoured (and checks again); the base step
            # skips re-guarding and re-checking the actions checked below
            step = self._step_checked if type(self).step is TorchVectorEnv.step else self.step
            for t in range(n_steps):
                out = policy(o)
                if isinstance(out, tuple):
                    out, x = out
                    x = torch.as_tensor(x, device=self.device)
                    if extra is None:
                        extra = torch.empty((n_steps, *x.shape), dtype=x.dtype, **kw)
                    extra[t] = x
                a = self._check_actions(out)
                if actions is None:
                    actions = torch.empty((n_steps, *a.shape), dtype=a.dtype, **kw)
                actions[t] = a
                o, r, term, trunc, info = step(a)
                out_obs[t], rewards[t], terms[t], truncs[t] = o, r, term, trunc
                if final is not None:
                    final[t] = torch.where(info["_final_obs"].unsqueeze(-1), info["final_obs"], 0.0)
        finally:
            if torch.get_num_threads() != prev:
                torch.set_num_threads(prev)
        assert actions is not None
        return Rollout(out_obs, actions, rewards, terms, truncs, final, extra)

    def _fused_rollout(
        self, policy: Callable[[torch.Tensor], Any], n_steps: int, obs: torch.Tensor | None, fuse: int
    ) -> Rollout:
        if fuse < 1 or n_steps % fuse:
            raise ValueError(f"fuse must be >= 1 and divide n_steps ({n_steps}), got {fuse}")
        if type(self).step is not TorchVectorEnv.step:
            raise ValueError(f"{type(self).__name__} has its own step(); use rollout without fuse")
        if self._obs_noise_on or self._act_noise_on:
            raise ValueError("rollout(fuse=...) does not support observation / action noise")
        if self.randomize:
            raise ValueError("rollout(fuse=...) does not support randomize (use rollout without fuse)")
        prev = self._enter_threads()
        try:
            with torch.no_grad():  # a rollout never needs gradients (and scan would trace them)
                return self._run_fused(policy, n_steps, obs, fuse)
        finally:
            if torch.get_num_threads() != prev:
                torch.set_num_threads(prev)

    def _run_fused(
        self, policy: Callable[[torch.Tensor], Any], n_steps: int, obs: torch.Tensor | None, fuse: int
    ) -> Rollout:
        o = self.get_obs() if obs is None else obs
        fused: dict[tuple[int, int], Any] = self.__dict__.setdefault("_fused", {})
        key = (id(policy), fuse)
        if key not in fused or fused[key][0] is not policy:
            # one eager call checks the policy's output (shape, dtype, range) before compiling
            first = policy(o)
            self._check_actions(first[0] if isinstance(first, tuple) else first)
            program = self._fused_program(policy, with_extra=isinstance(first, tuple))
            fused[key] = (policy, program, torch.zeros(fuse, 1, device=self.device))
        _, program, xs = fused[key]
        buffers = (self._s, self._steps, self._prev_u8, self._ep_ret, self._ep_len, self._counter)
        chunks = []
        for _ in range(n_steps // fuse):
            new_carry, ys = program((o, *buffers), xs)
            if self.validate_actions and bool(ys[-1].any()):
                what = f"in [0, {int(self.single_action_space.n)})" if self._discrete else "not NaN"
                raise ValueError(
                    f"{type(self).__name__}: actions must be {what}; the policy produced one "
                    "that is not in this fused rollout (env state restored)"
                )
            o = new_carry[0]
            for buf, value in zip(buffers, new_carry[1:], strict=True):
                buf.copy_(value)
            chunks.append(ys[:-1])
        cols = [c[0] if len(c) == 1 else torch.cat(c) for c in zip(*chunks, strict=True)]
        obs_t, act_t, rew_t, term_t, trunc_t = cols[:5]
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        final = cols[5] if same_step else None
        extra = cols[-1] if len(cols) > 5 + same_step else None
        return Rollout(obs_t, act_t, rew_t, term_t.view(torch.bool), trunc_t.view(torch.bool), final, extra)

    def _fused_program(self, policy: Callable[[torch.Tensor], Any], with_extra: bool) -> Any:
        """Steps of ``policy`` + :meth:`_transition` as one compiled ``scan`` (a loop inside the program,
        so its compile time does not grow with the number of steps): ``(carry, xs) -> (carry, ys)`` with
        ``carry = (obs, state, steps, prev_done (uint8), ep_ret, ep_len, counter)`` and, per step of
        ``xs``, ``ys = (obs, action, reward, term, trunc[, final_obs][, policy_extra], invalid_action)``.

        Compiled with inductor's C++ wrapper: the loop then runs in C++ (a Python loop between the
        per-step kernels cost ~10 us a step, more than a 64-env CartPole step itself).
        """
        from torch._higher_order_ops.scan import scan

        discrete = self._discrete
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        env = self

        def body(carry: tuple[torch.Tensor, ...], _x: torch.Tensor) -> tuple[Any, Any]:
            o, s, steps, prev_u8, ep_ret, ep_len, counter = carry
            out = policy(o)
            extra = out[1] if with_extra else None
            a = torch.as_tensor(out[0] if with_extra else out)
            a = a.to(torch.int64 if discrete else env.dtype)
            bad = env._invalid_actions(a)
            new, out = env._transition((s, steps, prev_u8 != 0, ep_ret, ep_len, counter), a, None, True)
            obs, r, term, trunc, done, _, _, fin = out
            ys = [obs.clone(), a.clone(), r, _to_u8(term), _to_u8(trunc)]
            if same_step:
                ys.append(torch.where(done.unsqueeze(-1), fin, 0.0))
            if extra is not None:
                ys.append(torch.as_tensor(extra).clone())
            ys.append(bad)
            next_s, steps, _, ep_ret, ep_len, counter = new
            return (obs, next_s, steps, _to_u8(done), ep_ret, ep_len, counter), tuple(ys)

        def run(carry: tuple[torch.Tensor, ...], xs: torch.Tensor) -> Any:
            return scan(body, carry, xs)

        # a private code object per env and policy: dynamo's cache (and recompile limit) is per code object
        g = types.FunctionType(
            run.__code__.replace(), run.__globals__, "fused_rollout", None, run.__closure__
        )
        return torch.compile(g, dynamic=False, fullgraph=True, options={"cpp_wrapper": True})

    def _private_core_fast(self) -> Any:
        """:meth:`_core_fast` bound to this env through a private copy of its code object.

        Dynamo keys its compile cache on the code object and guards on ``self``, so with the shared method
        every new compiled env is a recompilation of the same frame; after ``recompile_limit`` (8) envs in
        one process dynamo silently gave up and ran eager *plus* its own overhead (~3x slower than eager).
        A per-env code object gives each env its own cache entry.
        """
        f = type(self)._core_fast
        g = types.FunctionType(f.__code__.replace(), f.__globals__, f.__name__, f.__defaults__, f.__closure__)
        return types.MethodType(g, self)

    def _core_fast(self, action: torch.Tensor, act_noise: torch.Tensor | None) -> tuple[Any, ...]:
        """:meth:`_core` for ``torch.compile``: flags come back (and ``prev_done`` is kept) as uint8."""
        return self._core(action, act_noise, fast=True)

    def _core(
        self, action: torch.Tensor, act_noise: torch.Tensor | None, fast: bool = False
    ) -> tuple[Any, ...]:
        """The whole batched step as one tensor program: :meth:`_transition` on the env's buffers, written
        back in place (and, with ``randomize``, new physics drawn for the episodes that start).

        ``fast=True`` (the compiled path) touches ``prev_done`` only through its uint8 buffer and returns
        ``term, trunc, done`` as uint8 0/1, because inductor's CPU codegen stores bool tensors element by
        element but uint8 ones vectorised (a 4096-env step was ~5x slower with bool outputs); batches of
        up to ``_BOOL_VIEW_MAX_ENVS`` envs get them back as bool views of those uint8 results.

        The last output is ``invalid``: ``None`` where the caller checked the actions (the eager path, and
        batches above ``_IN_PROGRAM_CHECK_MAX_ENVS``); with ``fast=True`` and :attr:`validate_actions` on
        smaller batches a 0-dim bool, true when some action is invalid, in which case the program wrote
        nothing back (the env is as it was; the caller raises).
        """
        prev = self._prev_u8 != 0 if fast else self._prev_done
        carry = (self._s, self._steps, prev, self._ep_ret, self._ep_len, self._counter)
        (next_s, steps, done, ep_ret, ep_len, _), out = self._transition(carry, action, act_noise, fast)
        obs, reward, term, trunc, _, ep_r, ep_l, final_obs = out
        check = fast and self.validate_actions and self._check_in_program
        invalid = self._invalid_actions(action) if check else None
        kept_done = done
        if invalid is not None:  # an invalid action: every buffer keeps its value (one select each)
            next_s = torch.where(invalid, self._s, next_s)
            steps = torch.where(invalid, self._steps, steps)
            ep_ret = torch.where(invalid, self._ep_ret, ep_ret)
            ep_len = torch.where(invalid, self._ep_len, ep_len)
            kept_done = torch.where(invalid, prev, done)
        self._ep_ret.copy_(ep_ret)
        self._ep_len.copy_(ep_len)
        if self.randomize:  # new episodes get new physics (after this step's dynamics used the old)
            started = prev if self.autoreset_mode == AutoresetMode.NEXT_STEP else done
            if invalid is not None:
                started = started & ~invalid
            lanes = self._lane_ids(self.state_dim, len(self.randomize)) if fast else self._rand_idx_mul
            u_params = _hash_uniform_premul(self._key, self._counter, lanes, next_s.dtype)
            self._resample_params(u_params, started)
        self._s.copy_(next_s)
        self._steps.copy_(steps)
        self._counter.add_(1 if invalid is None else (~invalid).to(self._counter.dtype))
        if fast:
            term, trunc, done = _to_u8(term), _to_u8(trunc), _to_u8(done)
            self._prev_u8.copy_(_to_u8(kept_done))
            if self.num_envs <= _BOOL_VIEW_MAX_ENVS:  # small batches: the bool views made in the program
                term, trunc, done = term.view(torch.bool), trunc.view(torch.bool), done.view(torch.bool)
        else:
            self._prev_done.copy_(done)
        return obs, reward, term, trunc, done, ep_r, ep_l, final_obs, invalid

    def _transition(
        self,
        carry: tuple[torch.Tensor, ...],
        action: torch.Tensor,
        act_noise: torch.Tensor | None,
        compiled: bool = False,
    ) -> tuple[tuple[torch.Tensor, ...], tuple[Any, ...]]:
        """One batched step as a pure function (reads the env's parameters, writes nothing).

        ``carry = (state (state_dim, N), steps, prev_done (bool), ep_ret, ep_len, counter)`` -> the next
        carry (``prev_done`` := this step's ``done``) and ``(obs, reward, term, trunc, done, ep_r, ep_l,
        final_obs)``, flags bool; ``ep_r`` / ``ep_l`` are the finished episodes' return / length where
        ``done``, else 0. The step and the fused rollout are both this function; ``compiled``: inside a
        compiled program (the hash lanes are computed, not read).
        """
        s, steps_prev, prev, ep_ret_prev, ep_len_prev, counter = carry
        next_s, reward, term = self._dynamics(s, action, act_noise)
        if self.float32_state:
            next_s = next_s.to(torch.float32).to(s.dtype)
        lanes = self._lane_ids(0, self.state_dim) if compiled else self._idx_mul
        u = _hash_uniform_premul(self._key, counter, lanes, s.dtype)
        init = self._initial_state(u)
        zero, izero = 0.0, 0
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            next_s = torch.where(prev, init, next_s)
            term = term & ~prev
            reward = torch.where(prev, zero, reward)
            steps = torch.where(prev, izero, steps_prev + 1)
            trunc = steps >= self.max_episode_steps
            ep_ret = torch.where(prev, zero, ep_ret_prev + reward)
            ep_len = torch.where(prev, izero, ep_len_prev + 1)
            done = term | trunc
            obs = self._obs_from_state(next_s).to(self.obs_dtype)
            final_obs = None
            kept_ret, kept_len = ep_ret, ep_len
        else:
            steps = steps_prev + 1
            trunc = steps >= self.max_episode_steps
            done = term | trunc
            ep_ret = ep_ret_prev + reward
            ep_len = ep_len_prev + 1
            final_obs = self._obs_from_state(next_s).to(self.obs_dtype)
            next_s = torch.where(done, init, next_s)
            steps = torch.where(done, izero, steps)
            kept_ret, kept_len = torch.where(done, zero, ep_ret), torch.where(done, izero, ep_len)
            obs = self._obs_from_state(next_s).to(self.obs_dtype)
        ep_r = torch.where(done, ep_ret, zero)
        ep_l = torch.where(done, ep_len, izero)
        new_carry = (next_s, steps, done, kept_ret, kept_len, counter + 1)
        return new_carry, (obs.contiguous(), reward, term, trunc, done, ep_r, ep_l, final_obs)

    # --- checkpointing -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically: states, counters, parameters, RNG state."""
        return {
            "state": self._s.clone(),
            "steps": self._steps.clone(),
            "prev_done": self._prev_done.clone(),
            "ep_ret": self._ep_ret.clone(),
            "ep_len": self._ep_len.clone(),
            "counter": self._counter.clone(),
            "key": self._key.clone(),
            "generator": self._gen.get_state(),
            "reset_low": self._rlo.clone(),
            "reset_span": self._rspan.clone(),
            "params": {k: v.clone() for k, v in self.params.items()},
            "noise": {k: v.clone() for k, v in self.noise.items()},
            "needs_reset": self._needs_reset,
            # auto mode's countdown to the compiled step: a resumed env switches where the original did
            "auto_compile_left": self._auto_left,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (same env class and ``num_envs``)."""
        if tuple(state["state"].shape) != tuple(self._s.shape):
            raise ValueError(
                f"saved env state has shape {tuple(state['state'].shape)}, this env {tuple(self._s.shape)}"
            )
        for name, buf in (
            ("state", self._s),
            ("steps", self._steps),
            ("prev_done", self._prev_done),
            ("ep_ret", self._ep_ret),
            ("ep_len", self._ep_len),
            ("counter", self._counter),
            ("key", self._key),
        ):
            buf.copy_(state[name].to(device=buf.device, dtype=buf.dtype))
        self._rlo = state["reset_low"].to(device=self.device, dtype=self.dtype)
        self._rspan = state["reset_span"].to(device=self.device, dtype=self.dtype)
        try:
            self._gen.set_state(state["generator"].cpu())
        except RuntimeError:  # a state saved on another device type cannot be loaded here
            warnings.warn(
                "env generator state is from another device type; reseeding from the saved key",
                RuntimeWarning,
                stacklevel=2,
            )
            self._gen.manual_seed(int(state["key"]))
        for group, saved in ((self.params, state["params"]), (self.noise, state["noise"])):
            if set(saved) != set(group):
                raise ValueError(f"saved env parameters {sorted(saved)} do not match {sorted(group)}")
            for k, v in saved.items():
                check_physical(k, v)
                group[k].copy_(v.to(device=self.device, dtype=self.dtype))
        self._obs_noise_on = bool((self.noise["obs_noise_std"] != 0).any())
        self._act_noise_on = bool((self.noise["action_noise_std"] != 0).any())
        self._needs_reset = bool(state["needs_reset"])
        left = state.get("auto_compile_left")  # absent in checkpoints made before auto mode
        if left is not None and self._compile_mode is None and self._auto_left != -1:
            self._auto_left = int(left)
            if self._auto_left == 0 and not self._compiled:
                self._enable_compile()

    # --- rendering -------------------------------------------------------------------------------------
    def render(self) -> tuple[np.ndarray, ...] | None:
        """One ``(H, W, 3)`` uint8 frame per env (``render_mode="rgb_array"``), drawn by gymnasium's own
        classic-control renderer from each env's state and parameters; ``None`` without a render mode."""
        if self.render_mode is None:
            warnings.warn(
                f"{type(self).__name__}.render() called without a render mode; build the env with "
                f'render_mode="rgb_array"',
                UserWarning,
                stacklevel=2,
            )
            return None
        if self._renderer is None:
            self._renderer = ClassicControlRenderer(self.env_id, self.render_mode)
        return tuple(self._renderer.draw(self, i) for i in range(self.num_envs))

    def _render_extras(self, i: int) -> dict[str, Any]:
        """Attributes besides state and parameters that gymnasium's renderer reads (e.g. the last torque)."""
        return {}

    # --- misc ------------------------------------------------------------------------------------------
    def close_extras(self, **kwargs: Any) -> None:
        """Close the renderer, if one was opened."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env_id}, num_envs={self.num_envs}, device={self.device})"


def angle_normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi
