"""Rendering through gymnasium's own classic-control renderers.

riskrl does not draw anything itself: a :class:`ClassicControlRenderer` holds one instance of gymnasium's
reference env for the id (e.g. ``gymnasium.envs.classic_control.CartPoleEnv``), copies one riskrl env's
state and physical parameters onto it and calls its ``render()``. Frames are therefore pixel-identical to
gymnasium's for the same state. gymnasium's renderers need ``pygame`` (``pip install riskrl[render]``).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium.error import DependencyNotInstalled

__all__ = ["ClassicControlRenderer"]


class ClassicControlRenderer:
    """Draws riskrl envs with the gymnasium reference env of ``env_id`` in ``render_mode``.

    Args:
        env_id: a gymnasium classic-control id (``"CartPole-v1"``, ``"Pendulum-v1"``, ...).
        render_mode: ``"rgb_array"`` (frames as ``(H, W, 3)`` uint8 arrays) or ``"human"`` (a window).
    """

    def __init__(self, env_id: str, render_mode: str) -> None:
        try:
            import pygame  # noqa: F401  (gymnasium's classic-control renderers draw with it)
        except ImportError as err:
            raise DependencyNotInstalled(
                "rendering riskrl envs uses gymnasium's classic-control renderer, which needs pygame: "
                'pip install "riskrl[render]" (or pip install pygame)'
            ) from err
        self.env_id = env_id
        self.render_mode = render_mode
        self.ref = gymnasium.make(env_id, render_mode=render_mode).unwrapped

    def draw(self, env: Any, i: int) -> np.ndarray | None:
        """Render env ``i`` of the riskrl batched ``env`` (its state, parameters and extras)."""
        ref = self.ref
        for name, attr in env.gym_attributes.items():
            setattr(ref, attr, float(env.params[name][i]))
        ref.state = env._s[:, i].detach().to("cpu").double().numpy().copy()
        for attr, value in env._render_extras(i).items():
            setattr(ref, attr, value)
        return ref.render()

    def close(self) -> None:
        """Close gymnasium's renderer (its window in ``"human"`` mode)."""
        self.ref.close()
