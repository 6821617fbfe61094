"""stable-baselines3 ``VecEnv`` view of a torch-batched env."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

__all__ = ["SB3VecEnv"]


class SB3VecEnv(VecEnv):
    """Expose a batched env (``TorchVectorEnv`` or ``GymnasiumVecAdapter``) as an SB3 ``VecEnv``.

    The wrapped env must use ``AutoresetMode.SAME_STEP`` (SB3's convention: the returned obs of a done env
    is already the reset obs). Numpy in / out; per-env infos carry ``terminal_observation``,
    ``TimeLimit.truncated`` and Monitor-style ``episode = {"r", "l", "t"}`` when an episode ends, so
    :meth:`env_is_wrapped` answers True for SB3's ``Monitor`` (``evaluate_policy`` does not warn).
    Episode returns and lengths are counted here from the rewards (the batched env's own
    ``episode_statistics`` are not needed).
    """

    def __init__(self, env: Any) -> None:
        self._check_autoreset(env)
        self.env = env
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None
        self._t0 = time.time()
        self._discrete = not hasattr(env.single_action_space, "shape") or env.single_action_space.shape == ()
        self._ep_ret = np.zeros(self.num_envs, dtype=np.float64)
        self._ep_len = np.zeros(self.num_envs, dtype=np.int64)

    @staticmethod
    def _check_autoreset(env: Any) -> None:
        if getattr(env, "autoreset_mode", None) != AutoresetMode.SAME_STEP:
            raise ValueError(
                "SB3VecEnv needs an env built with autoreset_mode=AutoresetMode.SAME_STEP, e.g. "
                "make_vec(env_id, num_envs, autoreset_mode=AutoresetMode.SAME_STEP)"
            )

    def _restart_done(
        self, obs: np.ndarray, dones: np.ndarray, info: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(obs with the finished envs restarted, their terminal observations)``: under SAME_STEP
        autoreset the env already restarted them and reports the terminal obs in ``info``."""
        return obs, self._to_np(info["final_obs"]).astype(np.float32)

    def _to_np(self, x: torch.Tensor) -> np.ndarray:
        return x.detach().cpu().numpy()

    def reset(self) -> np.ndarray:
        """Reset with the seed given to :meth:`seed` (if any); returns numpy obs ``(N, obs_dim)``."""
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        obs, _ = self.env.reset(seed=seed)
        self._reset_seeds()
        self._ep_ret[:] = 0.0
        self._ep_len[:] = 0
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._to_np(obs).astype(np.float32)

    def step_async(self, actions: np.ndarray) -> None:
        """Store actions (numpy, ``(N,)`` for Discrete or ``(N, act_dim)`` for Box)."""
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Step the batched env; returns ``(obs, rewards, dones, infos)`` as SB3 expects."""
        assert self._actions is not None, "step_async must be called first"
        a = torch.as_tensor(self._actions)
        if self._discrete:
            a = a.reshape(self.num_envs).to(torch.int64)
        else:
            a = a.reshape(self.num_envs, -1).to(torch.float32)
        obs, rew, term, trunc, info = self.env.step(a)
        obs_np = self._to_np(obs).astype(np.float32)
        rew_np = self._to_np(rew)
        term_np, trunc_np = self._to_np(term), self._to_np(trunc)
        dones = term_np | trunc_np
        self._ep_ret += rew_np
        self._ep_len += 1
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        idx = np.flatnonzero(dones)
        if idx.size:
            obs_np, final = self._restart_done(obs_np, dones, info)
            ep_r, ep_l = self._ep_ret.copy(), self._ep_len.copy()
            self._ep_ret[idx] = 0.0
            self._ep_len[idx] = 0
            elapsed = round(time.time() - self._t0, 6)
            for i in idx:
                infos[i]["terminal_observation"] = final[i]
                infos[i]["TimeLimit.truncated"] = bool(trunc_np[i] and not term_np[i])
                infos[i]["episode"] = {"r": float(ep_r[i]), "l": int(ep_l[i]), "t": elapsed}
        self._actions = None
        return obs_np, rew_np.astype(np.float32), dones, infos

    def close(self) -> None:
        """Close the wrapped env."""
        self.env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The batched env's attribute, once per requested index."""
        return [getattr(self.env, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute on the batched env (shared by all indices)."""
        setattr(self.env, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a method of the batched env once; its result is repeated per requested index."""
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """True for SB3's ``Monitor`` (and the gymnasium wrapper classes it derives from), whose episode
        info this adapter emits; False for any other wrapper."""
        monitor_like = isinstance(wrapper_class, type) and issubclass(wrapper_class, gymnasium.Wrapper)
        monitor_like = monitor_like and issubclass(Monitor, wrapper_class)
        return [monitor_like] * len(self._get_indices(indices))

    def get_images(self) -> Sequence[np.ndarray | None]:
        """Rendering is not supported."""
        return [None] * self.num_envs

    def _get_indices(self, indices: VecEnvIndices) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return indices
