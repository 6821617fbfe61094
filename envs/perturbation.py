"""A named change of an env's physical parameters: what sweeps, benchmarks and the CLI evaluate under."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["Perturbation"]


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """A named set of physical-parameter changes for ``env.perturb`` (empty = nominal)."""

    name: str = "nominal"
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Perturbation:
        """Parse ``"name:key=value,key=value"`` (``"nominal"`` or ``"name:"`` for no change)."""
        name, _, rest = text.partition(":")
        params: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise ValueError(f"bad perturbation item {item!r} in {text!r}; expected key=value")
            try:
                params[key.strip()] = float(value)
            except ValueError:
                raise ValueError(f"perturbation value for {key!r} must be a number, got {value!r}") from None
        if not name.strip():
            raise ValueError(f"perturbation {text!r} needs a name, e.g. 'long_pole:length=1.0'")
        return cls(name.strip(), params)
