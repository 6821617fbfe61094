"""What an agent checkpoint may hold: manifest limits and tensor specs, checked before anything is built.

:meth:`riskrl.agents.Agent.load` checks the whole manifest (types, ranges, required keys, every
config field within :data:`CONFIG_LIMITS` and the agent's own limits) and the dtype and shape of
every tensor against what the config implies (networks and optimisers from meta-device replicas
that allocate nothing, replay buffer, RNG, planner and env state) before it builds any agent,
network, buffer or env. Every failure is one :class:`riskrl.checkpoint.CheckpointError` naming the
field, e.g. ``state.training.buffer.obs must have shape (0..100000, 4), got (5, 3)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from riskrl.checkpoint import CheckpointError, Custom, JsonSpec, Opt, Spec, TensorInfo, TensorSpec, check_spec
from riskrl.envs import ENV_IDS

__all__ = [
    "CONFIG_LIMITS",
    "DEFAULT_MAX_MEMORY",
    "MAX_NUM_ENVS",
    "MAX_OBS_DIM",
    "adam_spec",
    "buffer_spec",
    "check_buffer_values",
    "check_config",
    "check_generator_state",
    "env_state_spec",
    "metadata_spec",
    "module_spec",
    "rng_spec",
]

#: largest observation / Box action dimension and Discrete action count a checkpoint may declare
MAX_OBS_DIM = 4096
MAX_ACTION_DIM = 1024
MAX_DISCRETE_ACTIONS = 65536
#: most envs a checkpoint may ask to build
MAX_NUM_ENVS = 65536
#: the memory the config of a loaded agent may imply (networks, optimiser, buffers) unless
#: ``Agent.load(max_memory=...)`` allows more
DEFAULT_MAX_MEMORY = 2 * 2**30
#: limits shared by every agent config (agents add their own, see ``_checkpoint_limits``)
CONFIG_LIMITS: dict[str, tuple[float, float]] = {
    "hidden_layers": (1, 16),
    "hidden": (1, 4096),
    "n_members": (1, 64),
    "n_particles": (1, 1024),
    "buffer_size": (1, 10_000_000),
    "batch_size": (1, 65_536),
    "num_envs": (1, MAX_NUM_ENVS),
}
F32 = (torch.float32,)
FLOATS = (torch.float32, torch.float64)
CPU_RNG_BYTES = 5056  # torch's mt19937 state
CUDA_RNG_BYTES = 16  # Philox seed + offset


# --------------------------------------------------------------------------- metadata and config


def _space_check(kind: str):
    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict) or value.get("type") not in ("Box", "Discrete"):
            raise CheckpointError(f"{where} must describe a Box or Discrete space, got {str(value)[:80]}")
        if value["type"] == "Discrete":
            limit = MAX_DISCRETE_ACTIONS if kind == "action" else MAX_OBS_DIM
            check_spec(
                {
                    "type": "Discrete",
                    "n": JsonSpec("int", 1, limit),
                    "start": JsonSpec("int", -(2**31), 2**31),
                },
                value,
                where,
            )
            return
        limit = MAX_OBS_DIM if kind == "observation" else MAX_ACTION_DIM
        shape = value.get("shape")
        if not isinstance(shape, list) or len(shape) != 1:
            raise CheckpointError(f"{where}.shape must be a one-element list, got {str(shape)[:80]}")
        JsonSpec("int", 1, limit).check(shape[0], f"{where}.shape[0]")
        n = shape[0]
        bound = JsonSpec("float", allow_inf=True)
        check_spec({"type": "Box", "shape": [n], "low": [bound] * n, "high": [bound] * n}, value, where)

    return check


def metadata_spec() -> dict[str, Spec]:
    """The fields every agent manifest's ``metadata`` must hold (others are ignored)."""
    return {
        "config": Custom(lambda v, w: None if isinstance(v, dict) else _not_mapping(w)),
        "risk_tolerance": JsonSpec("float", -1e6, 1e6),
        "seed": JsonSpec("int", 0, 2**63 - 1),
        "env_id": Opt(JsonSpec("str")),
        "num_envs": JsonSpec("int", 1, MAX_NUM_ENVS),
        "observation_space": Custom(_space_check("observation")),
        "action_space": Custom(_space_check("action")),
        "num_timesteps": JsonSpec("int", 0, 2**62),
    }


def _not_mapping(where: str) -> None:
    raise CheckpointError(f"{where} must be a mapping")


def renamed_fields(config_class: type, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``params`` with the config's former field names (``config_class.RENAMED``: old -> new) replaced
    by the current ones, and the old names that were used. Giving both names is a ValueError."""
    out = dict(params)
    used = []
    for old, new in getattr(config_class, "RENAMED", {}).items():
        if old in out:
            if new in out:
                raise ValueError(f"{old!r} is the former name of {new!r}; give only {new!r}")
            out[new] = out.pop(old)
            used.append(old)
    return out, used


def check_config(config_class: type, config: dict[str, Any], limits: dict[str, tuple[float, float]]) -> Any:
    """Type- and range-check a saved config, then build the config object (no agent yet). Checkpoints
    written before a field was renamed load under the new name."""
    try:
        config, _ = renamed_fields(config_class, config)
    except ValueError as err:
        raise CheckpointError(f"metadata.config: {err}") from None
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise CheckpointError(f"metadata.config has unknown field(s) {unknown[:5]}")
    for name, value in config.items():
        where = f"metadata.config.{name}"
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if isinstance(default, bool):
            JsonSpec("bool").check(value, where)
        elif isinstance(default, int):
            lo, hi = limits.get(name, (-(2**62), 2**62))
            JsonSpec("int", lo, hi).check(value, where)
        elif isinstance(default, float):
            lo, hi = limits.get(name, (-1e12, 1e12))
            JsonSpec("float", lo, hi).check(value, where)
        elif isinstance(default, str):
            JsonSpec("str").check(value, where)
        elif isinstance(default, (tuple, list)):
            lo_n, hi_n = limits.get(f"{name}_layers", (0, 64))
            if not isinstance(value, list) or not lo_n <= len(value) <= hi_n:
                raise CheckpointError(
                    f"{where} must be a list of {int(lo_n)} to {int(hi_n)} integers, got {str(value)[:80]}"
                )
            lo, hi = limits.get(name, (1, 2**31))
            for i, v in enumerate(value):
                JsonSpec("int", lo, hi).check(v, f"{where}[{i}]")
        elif value is not None and not isinstance(value, (bool, int, float, str)):
            raise CheckpointError(f"{where} must be a JSON scalar, got {str(value)[:80]}")
    try:
        return config_class(**config)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"metadata.config: {str(err)[:300]}") from None


# --------------------------------------------------------------------------- tensor specs


def module_spec(module: torch.nn.Module) -> dict[str, TensorSpec]:
    """The state_dict spec of ``module`` (build it on the meta device: nothing is allocated)."""
    return {k: TensorSpec((v.dtype,), tuple(v.shape)) for k, v in module.state_dict().items()}


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a (meta-device) module's parameters and buffers."""
    return sum(v.numel() * v.element_size() for v in module.state_dict().values())


def adam_spec(params: list[torch.Tensor], reference: torch.optim.Optimizer) -> Custom:
    """Spec of an Adam ``state_dict`` for ``params`` (meta tensors) and a reference optimiser's group."""
    ref_group = reference.state_dict()["param_groups"][0]
    n = len(params)
    per_param = [
        {
            "step": TensorSpec(F32, ()),
            "exp_avg": TensorSpec(F32, tuple(p.shape)),
            "exp_avg_sq": TensorSpec(F32, tuple(p.shape)),
        }
        for p in params
    ]

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict) or set(value) != {"state", "param_groups"}:
            raise CheckpointError(f"{where} must hold exactly 'state' and 'param_groups'")
        state = value["state"]
        if not isinstance(state, dict):
            raise CheckpointError(f"{where}.state must be a mapping")
        for k, v in state.items():
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n:
                raise CheckpointError(f"{where}.state has a key {k!r} outside the {n} parameters")
            check_spec(per_param[k], v, f"{where}.state.{k}")
        groups = value["param_groups"]
        if not isinstance(groups, list) or len(groups) != 1 or not isinstance(groups[0], dict):
            raise CheckpointError(f"{where}.param_groups must be a list of one group")
        group = groups[0]
        gw = f"{where}.param_groups[0]"
        if group.get("params") != list(range(n)):
            raise CheckpointError(f"{gw}.params must be [0, ..., {n - 1}]")
        for key, v in group.items():
            if key == "params":
                continue
            if key not in ref_group:
                raise CheckpointError(f"{gw} has an unknown field {key!r}")
            ref = ref_group[key]
            if key == "betas":
                check_spec(
                    (JsonSpec("float", 0.0, 0.999999), JsonSpec("float", 0.0, 0.999999)), v, f"{gw}.betas"
                )
            elif key in ("lr", "eps", "weight_decay"):
                JsonSpec("float", 0.0, 10.0).check(v, f"{gw}.{key}")
            elif key in ("fused", "foreach"):  # the writer's Adam implementation; the loader keeps its own
                if v is not None and not isinstance(v, bool):
                    raise CheckpointError(f"{gw}.{key} must be true, false or null, got {str(v)[:40]}")
            elif key in ("capturable", "differentiable"):
                if v != ref or type(v) is not type(ref):  # riskrl never sets these
                    raise CheckpointError(f"{gw}.{key} must be {ref!r}, got {str(v)[:40]}")
            elif isinstance(ref, bool):
                JsonSpec("bool").check(v, f"{gw}.{key}")
            elif v is not None and not isinstance(v, (bool, int, float, str)):
                raise CheckpointError(f"{gw}.{key} must be a JSON scalar")

    return Custom(check, max_bytes=sum(3 * p.numel() * 4 for p in params) + 4 * n)


def rng_spec() -> Custom:
    """A torch generator state: the CPU (mt19937) or CUDA (Philox) layout."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, (TensorInfo, torch.Tensor)):
            raise CheckpointError(f"{where} must be a generator state tensor")
        if value.dtype != torch.uint8 or tuple(value.shape) not in ((CPU_RNG_BYTES,), (CUDA_RNG_BYTES,)):
            raise CheckpointError(
                f"{where} must be a uint8 generator state of {CPU_RNG_BYTES} (CPU) or {CUDA_RNG_BYTES} (CUDA) "
                f"bytes, got {str(value.dtype).removeprefix('torch.')} {tuple(value.shape)}"
            )

    return Custom(check, max_bytes=CPU_RNG_BYTES)


def check_generator_state(value: torch.Tensor, where: str) -> None:
    """Refuse a CPU generator state torch would not accept (after :func:`rng_spec` passed)."""
    if value.numel() == CPU_RNG_BYTES:
        try:
            torch.Generator().set_state(value.cpu())
        except RuntimeError as err:
            raise CheckpointError(f"{where} is not a valid generator state ({str(err)[:100]})") from None


def buffer_spec(
    capacity: int, obs_dim: int, action_shape: tuple[int, ...], action_dtype: torch.dtype, linked: bool
) -> dict[str, Spec]:
    """Spec of :meth:`ReplayBuffer.state_dict` for a buffer of ``capacity`` rows."""
    rows = (0, capacity)
    spec: dict[str, Spec] = {
        "pos": JsonSpec("int", 0, capacity - 1),
        "size": JsonSpec("int", 0, capacity),
        "obs": TensorSpec(F32, (rows, obs_dim)),
        "next_obs": TensorSpec(F32, (rows, obs_dim)),
        "actions": TensorSpec((action_dtype,), (rows, *action_shape)),
        "rewards": TensorSpec(F32, (rows,)),
        "terminated": TensorSpec(F32, (rows,)),
    }
    if linked:
        spec.update(
            next_index=Opt(TensorSpec((torch.int64,), (rows,))),
            write_id=Opt(TensorSpec((torch.int64,), (rows,))),
            last_row=Opt(TensorSpec((torch.int64,), ((1, MAX_NUM_ENVS),))),
            last_write_id=Opt(TensorSpec((torch.int64,), ((1, MAX_NUM_ENVS),))),
            n_written=Opt(JsonSpec("int_str", 0, 2**62)),
        )
    return spec


def check_buffer_values(
    buf: dict[str, Any], where: str, capacity: int, action_range: tuple[int, int] | None
) -> None:
    """Positions, sizes, links and actions of a loaded buffer state are consistent."""
    n = int(buf["size"])
    for key in ("obs", "next_obs", "actions", "rewards", "terminated", "next_index", "write_id"):
        t = buf.get(key)
        if t is not None and t.shape[0] != n:
            raise CheckpointError(f"{where}.{key} has {t.shape[0]} rows, but size is {n}")
    if buf.get("last_row") is not None and buf.get("last_write_id") is not None:
        if buf["last_row"].shape != buf["last_write_id"].shape:
            raise CheckpointError(f"{where}.last_row and last_write_id differ in shape")
    pos = int(buf["pos"])
    if n < capacity and pos != n:
        raise CheckpointError(f"{where}.pos must equal size ({n}) until the buffer is full, got {pos}")
    for key in ("next_index", "last_row"):
        t = buf.get(key)
        if t is not None and t.numel() and (int(t.min()) < -1 or int(t.max()) >= max(n, 1)):
            raise CheckpointError(f"{where}.{key} holds rows outside [-1, {n})")
    if action_range is not None and n:
        a = buf["actions"]
        if int(a.min()) < action_range[0] or int(a.max()) >= action_range[1]:
            raise CheckpointError(
                f"{where}.actions holds actions outside [{action_range[0]}, {action_range[1]})"
            )
    elif n and buf["actions"].is_floating_point() and not bool(torch.isfinite(buf["actions"]).all()):
        raise CheckpointError(f"{where}.actions holds NaN or inf")


def env_state_spec(env_id: str | None, num_envs: int) -> Spec:
    """Spec of a riskrl env's ``state_dict`` for ``num_envs`` envs (``None``: the env saved none).

    The layout comes from a probe env of 7 envs of the same class (a fixed, tiny object; nothing
    in it depends on the checkpoint), with every dimension of 7 standing for ``num_envs``.
    """
    name = (env_id or "").removeprefix("riskrl/")
    if name not in ENV_IDS:
        return None
    probe_n = 7
    probe = ENV_IDS[name](num_envs=probe_n).state_dict()

    def to_spec(value: Any) -> Spec:
        if isinstance(value, torch.Tensor):
            if (
                value.dtype == torch.uint8
                and value.dim() == 1
                and value.numel() in (CPU_RNG_BYTES, CUDA_RNG_BYTES)
            ):
                return rng_spec()
            shape = tuple(num_envs if d == probe_n else d for d in value.shape)
            return TensorSpec(FLOATS if value.is_floating_point() else (value.dtype,), shape)
        if isinstance(value, dict):
            return {k: to_spec(v) for k, v in value.items()}
        if isinstance(value, bool):
            return JsonSpec("bool")
        if isinstance(value, int):
            return JsonSpec("int")
        if isinstance(value, float):
            return JsonSpec("float")
        return JsonSpec("str")

    spec = to_spec(probe)
    # fields added after checkpoints were already saved: those files lack them and still load
    for key in _LATER_ENV_FIELDS:
        if key in spec:
            spec[key] = Opt(spec[key])
    return spec


#: env ``state_dict`` fields newer checkpoints have and older ones may lack
_LATER_ENV_FIELDS = ("auto_compile_left",)
