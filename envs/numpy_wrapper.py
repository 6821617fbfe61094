"""numpy view of a torch-batched env, for gymnasium's vector wrappers.

gymnasium's vector wrappers (``RecordEpisodeStatistics``, ``NormalizeObservation``, ``NormalizeReward``,
``FlattenObservation``, ...) compute with numpy. gymnasium's own ``ArrayConversion`` needs the optional
``array-api-compat`` package, so riskrl ships this small converter: ``make_vec(..., array="numpy")``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv, VectorWrapper

__all__ = ["TorchToNumpy"]


def _to_numpy(x: Any) -> Any:
    """Tensors (also inside dicts, lists and tuples) -> numpy arrays; anything else unchanged."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, dict):
        return {k: _to_numpy(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_to_numpy(v) for v in x)
    return x


class TorchToNumpy(VectorWrapper):
    """Wraps a riskrl batched env so that it takes and returns numpy arrays, as gymnasium's vector envs.

    Observations, rewards, ``terminated``, ``truncated`` and every tensor in ``info`` become numpy arrays
    (on CPU these share memory with fresh tensors, no copy); actions may be numpy arrays or tensors.
    The batched env stays reachable as ``wrapper.unwrapped`` (for ``perturb``, ``state``, ``reward_fn``).

    Example:
        >>> from gymnasium.wrappers.vector import NormalizeObservation, RecordEpisodeStatistics
        >>> env = RecordEpisodeStatistics(NormalizeObservation(make_vec("CartPole-v1", 64, array="numpy")))
    """

    def __init__(self, env: VectorEnv) -> None:
        super().__init__(env)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the batched env; numpy observations and info."""
        if options and isinstance(options.get("reset_mask"), np.ndarray):
            options = {**options, "reset_mask": torch.as_tensor(options["reset_mask"])}
        obs, info = self.env.reset(seed=seed, options=options)
        return _to_numpy(obs), _to_numpy(info)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step with numpy (or torch) actions; everything returned as numpy arrays."""
        obs, reward, terminated, truncated, info = self.env.step(actions)
        return (
            _to_numpy(obs),
            _to_numpy(reward),
            _to_numpy(terminated),
            _to_numpy(truncated),
            _to_numpy(info),
        )
