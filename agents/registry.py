"""Find agent classes by name and load any saved agent without knowing its class."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from riskrl.checkpoint import CheckpointError, read_manifest

from .base import Agent

__all__ = ["agent_class", "load_agent"]


def _agent_classes() -> dict[str, type[Agent]]:
    """Every concrete :class:`Agent` subclass defined so far, by class name."""
    found: dict[str, type[Agent]] = {}
    todo = list(Agent.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if not inspect.isabstract(cls) and not cls.__name__.startswith("_"):
            found.setdefault(cls.__name__, cls)
    return found


def agent_class(name: str) -> type[Agent]:
    """The agent class called ``name`` (e.g. ``"BayesDQN"``); ValueError listing the valid names."""
    classes = _agent_classes()
    if name not in classes:
        raise ValueError(f"unknown agent {name!r}; available: {sorted(classes)}")
    return classes[name]


def load_agent(
    path: str | Path, env: Any = None, device: str | torch.device = "cpu", **overrides: Any
) -> Agent:
    """Load a saved agent of whatever class the checkpoint records (never executes code)."""
    manifest = read_manifest(path)  # the manifest only: tensors are read once, by cls.load
    kind = manifest["kind"]
    classes = _agent_classes()
    if kind not in classes:
        raise CheckpointError(
            f"{path} holds a {kind!r}, which is not a riskrl agent class ({sorted(classes)})"
        )
    return classes[kind].load(path, env=env, device=device, **overrides)
