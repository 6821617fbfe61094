"""Any gymnasium env behind the same tensor interface as :class:`~riskrl.envs.base.TorchVectorEnv`."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

__all__ = ["GymnasiumVecAdapter"]


def _time_limit_of(env: gymnasium.Env) -> int | None:
    """The ``max_episode_steps`` of the outermost ``TimeLimit`` wrapper around ``env`` (None if none)."""
    e: Any = env
    while isinstance(e, gymnasium.Wrapper):
        if isinstance(e, gymnasium.wrappers.TimeLimit):
            return int(e._max_episode_steps)
        e = e.env
    return None


class GymnasiumVecAdapter(VectorEnv):
    """Wraps ``gymnasium.make_vec(env_id, num_envs, vectorization_mode="sync")`` with tensors in / out.

    Same conventions as the torch-batched envs: obs ``(N, obs_dim)`` in ``obs_dtype`` on ``device``,
    reward ``(N,)`` in ``dtype``, bool ``terminated`` / ``truncated``, with ``episode_statistics=True``
    ``info["episode"] = {"r", "l"}`` + ``info["_episode"]`` on steps where an episode ends, and in
    ``SAME_STEP`` mode ``info["final_obs"]`` as an ``(N, obs_dim)`` tensor (zeros where
    ``info["_final_obs"]`` is False). Meant for flat Box observation spaces. There is no batched model of
    the dynamics, so :meth:`reward_fn`, :meth:`termination_fn` and :meth:`perturb` raise.
    :meth:`from_env` wraps one existing gymnasium env instance (its wrappers and settings included).
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        max_episode_steps: int | None = None,
        episode_statistics: bool = False,
        obs_dtype: torch.dtype = torch.float32,
        **make_kwargs: Any,
    ) -> None:
        mode = AutoresetMode(autoreset_mode)
        if max_episode_steps is not None:
            make_kwargs["max_episode_steps"] = max_episode_steps
        venv = gymnasium.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": mode},
            **make_kwargs,
        )
        spec = gymnasium.spec(env_id)
        self._setup(venv, env_id, max_episode_steps or spec.max_episode_steps, device, dtype, obs_dtype)
        self.episode_statistics = bool(episode_statistics)

    @classmethod
    def from_env(
        cls,
        env: gymnasium.Env,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        episode_statistics: bool = False,
        obs_dtype: torch.dtype = torch.float32,
    ) -> GymnasiumVecAdapter:
        """A one-env adapter over the gymnasium env instance ``env`` itself (wrappers and settings kept)."""
        if not isinstance(env, gymnasium.Env):
            raise TypeError(f"env must be a gymnasium.Env, got {type(env)}")
        mode = AutoresetMode(autoreset_mode)
        venv = gymnasium.vector.SyncVectorEnv([lambda: env], autoreset_mode=mode)
        spec = env.spec
        env_id = spec.id if spec is not None else type(env.unwrapped).__name__
        self = cls.__new__(cls)
        self._setup(venv, env_id, _time_limit_of(env), device, dtype, obs_dtype)
        self.episode_statistics = bool(episode_statistics)
        return self

    def _setup(
        self,
        venv: VectorEnv,
        env_id: str,
        max_episode_steps: int | None,
        device: str | torch.device,
        dtype: torch.dtype,
        obs_dtype: torch.dtype,
    ) -> None:
        self.env = venv
        self.env_id = env_id
        self.num_envs = int(venv.num_envs)
        self.device = torch.device(device)
        self.dtype = dtype
        self.obs_dtype = obs_dtype
        mode = venv.metadata["autoreset_mode"]
        self.autoreset_mode = mode
        self.metadata = {**venv.metadata, "autoreset_mode": mode}
        self.single_observation_space = venv.single_observation_space
        self.single_action_space = venv.single_action_space
        self.observation_space = venv.observation_space
        self.action_space = venv.action_space
        self.max_episode_steps = max_episode_steps
        self.render_mode = getattr(venv, "render_mode", None)
        n = self.num_envs
        self._ep_ret = np.zeros(n, dtype=np.float64)
        self._ep_len = np.zeros(n, dtype=np.int64)
        self._prev_done = np.zeros(n, dtype=bool)

    def _t(self, x: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), device=self.device, dtype=dtype or self.dtype)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reset all envs; returns obs ``(N, obs_dim)`` and gymnasium's info dict."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._ep_ret[:] = 0.0
        self._ep_len[:] = 0
        self._prev_done[:] = False
        return self._t(obs, self.obs_dtype), info

    def step(
        self, actions: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Step with a tensor / array of actions (moved to host for gymnasium)."""
        a = actions.detach().cpu().numpy() if isinstance(actions, torch.Tensor) else np.asarray(actions)
        obs, rew, term, trunc, info = self.env.step(a)
        rew = np.asarray(rew, dtype=np.float64)
        done = np.logical_or(term, trunc)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            live = ~self._prev_done
            self._ep_ret = np.where(live, self._ep_ret + rew, 0.0)
            self._ep_len = np.where(live, self._ep_len + 1, 0)
        else:
            self._ep_ret += rew
            self._ep_len += 1
        out_info: dict[str, Any] = {k: v for k, v in info.items() if k not in ("final_obs", "_final_obs")}
        if self.episode_statistics and done.any():
            out_info["episode"] = {
                "r": self._t(np.where(done, self._ep_ret, 0.0)),
                "l": self._t(np.where(done, self._ep_len, 0), torch.int64),
            }
            out_info["_episode"] = self._t(done, torch.bool)
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            mask = np.asarray(info.get("_final_obs", np.zeros(self.num_envs, bool)), dtype=bool)
            final = np.zeros_like(np.asarray(obs), dtype=np.float64)
            for i in np.flatnonzero(mask):
                final[i] = info["final_obs"][i]
            out_info["final_obs"] = self._t(final, self.obs_dtype)
            out_info["_final_obs"] = self._t(mask, torch.bool)
            self._ep_ret[done] = 0.0
            self._ep_len[done] = 0
        self._prev_done = done
        return (
            self._t(obs, self.obs_dtype),
            self._t(rew),
            self._t(term, torch.bool),
            self._t(trunc, torch.bool),
            out_info,
        )

    def render(self) -> Any:
        """The wrapped gymnasium vector env's frames (``make_vec(id, n, render_mode="rgb_array")``)."""
        return self.env.render()

    def reward_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Not available for wrapped gymnasium envs."""
        raise NotImplementedError(
            f"{self.env_id} is a wrapped gymnasium env: no batched torch reward function is available "
            "(only the riskrl torch envs provide reward_fn/termination_fn)"
        )

    def termination_fn(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Not available for wrapped gymnasium envs."""
        raise NotImplementedError(
            f"{self.env_id} is a wrapped gymnasium env: no batched torch termination function is available "
            "(only the riskrl torch envs provide reward_fn/termination_fn)"
        )

    def perturb(self, **params: Any) -> None:
        """Not available for wrapped gymnasium envs."""
        raise NotImplementedError(f"{self.env_id} is a wrapped gymnasium env: perturb() is not supported")

    def close_extras(self, **kwargs: Any) -> None:
        """Close the wrapped vector env."""
        self.env.close()

    def __repr__(self) -> str:
        return f"GymnasiumVecAdapter({self.env_id}, num_envs={self.num_envs}, device={self.device})"
