"""riskrl envs among gymnasium's and SB3's tools: vector wrappers, single envs, configured envs, rendering.

Parity tests put riskrl's env and gymnasium's own vector env into identical states and step both with
the same actions. Autoresets draw from different random generators, so the reference stack gets
riskrl's reset states injected at its base (:class:`InjectResets`, below gymnasium's wrappers): the
wrappers under test then see the same stream on both sides, and any difference is the wrapper's or the
dynamics'.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import (
    FlattenObservation,
    NormalizeObservation,
    NormalizeReward,
    RecordEpisodeStatistics,
)

from riskrl.agents import BayesDQN, BayesMPC
from riskrl.envs import (
    ENV_IDS,
    CartPoleVecEnv,
    GymnasiumVecAdapter,
    PendulumVecEnv,
    TorchSingleEnv,
    TorchToNumpy,
    from_gym_env,
    make_vec,
)

N = 4


class InjectResets(gym.vector.VectorWrapper):
    """Reference-side helper: after gymnasium's own (NEXT_STEP) autoresets and resets, overwrite the
    states of the envs that were reset with ``source``'s (a riskrl env stepped first) and return the
    observations of those states, computed by gymnasium's code."""

    def __init__(self, env: gym.vector.VectorEnv, source: Any) -> None:
        super().__init__(env)
        self.source = source
        self.prev_done = np.zeros(env.num_envs, dtype=bool)

    def _inject(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if not mask.any():
            return obs
        states = self.source.state.numpy()
        obs = obs.copy()
        base = self.env.unwrapped
        if hasattr(base, "envs"):  # SyncVectorEnv of single envs
            for i in np.flatnonzero(mask):
                sub = base.envs[i].unwrapped
                sub.state = states[i].copy()
                obs[i] = sub._get_obs() if hasattr(sub, "_get_obs") else np.asarray(sub.state, np.float32)
        else:  # gymnasium's numpy CartPoleVectorEnv
            base.state[:, mask] = states[mask].T
            obs[mask] = base.state.T[mask].astype(np.float32)
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.prev_done[:] = False
        return self._inject(obs, np.ones(self.num_envs, dtype=bool)), info

    def step(self, actions):
        obs, rew, term, trunc, info = self.env.step(actions)
        obs = self._inject(obs, self.prev_done)
        self.prev_done = np.logical_or(term, trunc)
        return obs, rew, term, trunc, info


def _reference(env_id: str, n: int) -> gym.vector.VectorEnv:
    mode = "vector_entry_point" if env_id == "CartPole-v1" else "sync"
    return gym.make_vec(env_id, num_envs=n, vectorization_mode=mode)


def _actions(env_id: str, steps: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    if env_id == "CartPole-v1":
        return rng.integers(0, 2, (steps, n))
    return rng.uniform(-2.0, 2.0, (steps, n, 1)).astype(np.float32)


WRAPPERS = {
    "RecordEpisodeStatistics": RecordEpisodeStatistics,
    "NormalizeObservation": NormalizeObservation,
    "NormalizeReward": lambda e: NormalizeReward(e, gamma=0.99),
    "FlattenObservation": FlattenObservation,
}


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
@pytest.mark.parametrize(("env_id", "steps"), [("CartPole-v1", 300), ("Pendulum-v1", 250)])
def test_gymnasium_vector_wrappers_match_gymnasium(wrapper: str, env_id: str, steps: int) -> None:
    ours_np = make_vec(env_id, N, array="numpy")
    ours = WRAPPERS[wrapper](ours_np)
    ref = WRAPPERS[wrapper](InjectResets(_reference(env_id, N), ours_np.unwrapped))
    obs, _ = ours.reset(seed=0)
    ref_obs, _ = ref.reset(seed=0)
    np.testing.assert_allclose(obs, ref_obs, rtol=1e-5, atol=1e-6)
    ended = 0
    for a in _actions(env_id, steps, N):
        obs, rew, term, trunc, info = ours.step(a)
        ref_obs, ref_rew, ref_term, ref_trunc, ref_info = ref.step(a)
        assert isinstance(obs, np.ndarray) and obs.shape == ref_obs.shape
        np.testing.assert_allclose(obs, ref_obs, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(rew, ref_rew, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(term, ref_term)
        np.testing.assert_array_equal(trunc, ref_trunc)
        assert ("episode" in info) == ("episode" in ref_info)
        if "episode" in info:
            np.testing.assert_array_equal(info["_episode"], ref_info["_episode"])
            np.testing.assert_allclose(info["episode"]["r"], ref_info["episode"]["r"], rtol=1e-9)
            np.testing.assert_array_equal(info["episode"]["l"], ref_info["episode"]["l"])
        ended += int((term | trunc).sum())
    assert ended >= N  # autoresets happened (CartPole falls, Pendulum truncates at 200)
    if wrapper == "RecordEpisodeStatistics":
        np.testing.assert_allclose(list(ours.return_queue), list(ref.return_queue), rtol=1e-9)
        assert list(ours.length_queue) == list(ref.length_queue)
    if wrapper == "NormalizeObservation":
        np.testing.assert_allclose(ours.obs_rms.mean, ref.obs_rms.mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours.obs_rms.var, ref.obs_rms.var, rtol=1e-4, atol=1e-6)


def test_numpy_view_converts_everything_and_keeps_the_batched_env() -> None:
    env = make_vec("CartPole-v1", 3, array="numpy", episode_statistics=True, autoreset_mode="SameStep")
    assert isinstance(env, TorchToNumpy) and isinstance(env.unwrapped, CartPoleVecEnv)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, _ = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32
    env.unwrapped.state = torch.tensor([[2.39, 5.0, 0.0, 0.0]] + [[0.0] * 4] * 2, dtype=torch.float64)
    obs, rew, term, trunc, info = env.step(np.array([1, 1, 1]))
    assert rew.dtype == np.float64 and term.dtype == trunc.dtype == np.bool_
    assert term.tolist() == [True, False, False]
    assert isinstance(info["final_obs"], np.ndarray) and info["final_obs"][0, 0] > 2.4
    assert info["_episode"].tolist() == [True, False, False] and info["episode"]["l"].tolist() == [1, 0, 0]
    env.reset(options={"reset_mask": np.array([False, True, False])})  # numpy masks are accepted
    with pytest.raises(ValueError, match="array"):
        make_vec("CartPole-v1", 2, array="jax")


def test_record_episode_statistics_on_a_riskrl_env_refuses_a_duplicate_key() -> None:
    """With the env's own statistics on, gymnasium's wrapper refuses (its rule); off (the default) it composes."""
    env = RecordEpisodeStatistics(make_vec("CartPole-v1", 2, array="numpy", episode_statistics=True))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="already exists"):
        for _ in range(200):
            env.step(np.zeros(2, dtype=np.int64))


# ---------------------------------------------------------------------------------------- dtype


def _controller(obs: np.ndarray) -> np.ndarray:
    """A CartPole controller on each env's own observation: most episodes reach the 500-step limit,
    some fail, and an unstable system under feedback turns rounding differences into trajectory ones."""
    return (obs[:, 2] + 0.1 * obs[:, 3] > 0).astype(np.int64)


def _closed_loop_vs_gymnasium(dtype: torch.dtype, n: int = 64, steps: int = 500) -> dict[str, float]:
    """Both envs from identical states, each driven by :func:`_controller` on its own observations."""
    env = CartPoleVecEnv(num_envs=n) if dtype is None else CartPoleVecEnv(num_envs=n, dtype=dtype)
    ref = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point").unwrapped
    env.reset(seed=1)
    ref.reset(seed=1)
    ref.state = np.random.default_rng(3).uniform(-0.2, 0.2, (4, n))
    env.state = torch.as_tensor(ref.state.T.copy())
    obs = ref_obs = ref.state.T.astype(np.float32)
    pending = np.zeros(n, dtype=bool)
    out = {"mismatches": 0, "terms": 0, "truncs": 0, "max_state_diff": 0.0}
    for _ in range(steps):
        obs, _, term, trunc, _ = env.step(torch.as_tensor(_controller(obs)))
        ref_obs, _, ref_term, ref_trunc, _ = ref.step(_controller(ref_obs))
        out["mismatches"] += int(((term.numpy() != ref_term) | (trunc.numpy() != ref_trunc)).sum())
        obs = obs.numpy()
        if pending.any():  # both just autoreset these envs, each from its own RNG: use gymnasium's draw
            env._s[:, torch.as_tensor(pending)] = torch.as_tensor(ref.state[:, pending]).to(env.dtype)
            obs[pending] = ref_obs[pending]
        diff = float(np.abs(env.state.double().numpy() - ref.state.T).max())
        out["max_state_diff"] = max(out["max_state_diff"], diff)
        pending = ref_term | ref_trunc
        out["terms"] += int(ref_term.sum())
        out["truncs"] += int(ref_trunc.sum())
    return out


def test_default_dtype_matches_gymnasium_terminations_and_truncations_over_500_steps() -> None:
    default = _closed_loop_vs_gymnasium(None)
    assert default["terms"] > 0 and default["truncs"] > 0  # both kinds of episode end were compared
    assert default["mismatches"] == 0 and default["max_state_diff"] < 1e-9
    # the float32 speed option does not: rounding grows along the long episodes (README, "dtype")
    fast = _closed_loop_vs_gymnasium(torch.float32)
    assert fast["mismatches"] > 0 and fast["max_state_diff"] > 1e-2


# ---------------------------------------------------------------------------------- single envs


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_single_env_passes_gymnasium_check_env(env_id: str) -> None:
    env = gym.make(f"riskrl/{env_id}")
    assert isinstance(env.unwrapped, TorchSingleEnv)
    assert env.spec.max_episode_steps == gym.spec(env_id).max_episode_steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium's advice on unbounded / asymmetric Box spaces
        check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_single_env_follows_gymnasium_and_its_time_limit(env_id: str) -> None:
    ours = gym.make(f"riskrl/{env_id}", max_episode_steps=40)
    ref = gym.make(env_id, max_episode_steps=40)
    ours.reset(seed=0)
    ref.reset(seed=0)
    ours.unwrapped.state = ref.unwrapped.state
    steps = 0
    for a in _actions(env_id, 40, 1)[:, 0]:
        o, r, term, trunc, _ = ours.step(a)
        ro, rr, rterm, rtrunc, _ = ref.step(a)
        steps += 1
        np.testing.assert_allclose(o, ro, rtol=1e-6, atol=1e-6)
        assert r == pytest.approx(rr, abs=1e-6) and isinstance(r, float)
        assert (term, trunc) == (rterm, rtrunc)
        if term:
            break
    assert term or (trunc and steps == 40)  # gymnasium.make's TimeLimit truncates riskrl's single env
    single = gym.make(f"riskrl/{env_id}", **({"length": 1.0} if env_id == "CartPole-v1" else {"g": 3.0}))
    name = "length" if env_id == "CartPole-v1" else "g"
    assert float(single.unwrapped.vec_env.params[name][0]) in (1.0, 3.0)


def test_make_and_make_vec_take_render_mode_and_deprecations_pass_through() -> None:
    with pytest.raises(ValueError, match="Taxi-v4"):
        make_vec("Taxi-v3")
    with pytest.raises(ValueError, match="Taxi-v4"):
        BayesDQN("Taxi-v3")
    with pytest.raises(ValueError, match="render_mode"):
        CartPoleVecEnv(render_mode="human")  # the batched env draws frames, it opens no window


# ------------------------------------------------------------------------------------- rendering


@pytest.fixture
def pygame_headless(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pygame", reason="rendering needs pygame (pip install riskrl[render])")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")


@pytest.mark.usefixtures("pygame_headless")
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCarContinuous-v0"])
def test_rgb_array_frames_equal_gymnasiums_for_the_same_state(env_id: str) -> None:
    vec = gym.make_vec(f"riskrl/{env_id}", num_envs=2, render_mode="rgb_array")
    single = gym.make(f"riskrl/{env_id}", render_mode="rgb_array")
    ref = gym.make(env_id, render_mode="rgb_array")
    ref.reset(seed=0)
    vec.reset(seed=0)
    single.reset(seed=0)
    state = np.asarray(ref.unwrapped.state, dtype=np.float64)
    vec.unwrapped.state = torch.as_tensor(np.stack([state, state]))
    single.unwrapped.state = state
    a = ref.action_space.sample() if env_id == "Acrobot-v1" else _actions(env_id, 1, 1)[0, 0]
    for _ in range(2):  # the reset frame, then one after the same action (Pendulum draws the torque)
        frames = vec.render()
        expected = ref.render()
        assert expected.shape[-1] == 3 and expected.dtype == np.uint8
        assert len(frames) == 2 and all(np.array_equal(f, expected) for f in frames)
        assert np.array_equal(single.render(), expected)
        ref.step(a)
        single.step(a)
        vec.step(torch.as_tensor(np.stack([a, a])))
    vec.close()
    single.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(gym.make(f"riskrl/{env_id}", render_mode="rgb_array").unwrapped)  # with its render checks


@pytest.mark.usefixtures("pygame_headless")
def test_render_follows_perturbed_parameters() -> None:
    env = CartPoleVecEnv(num_envs=2, render_mode="rgb_array", length=torch.tensor([0.5, 1.5]))
    env.reset(seed=0)
    short, long = env.render()
    assert not np.array_equal(short, long)  # the longer pole is drawn longer
    ref = gym.make("CartPole-v1", render_mode="rgb_array").unwrapped
    ref.reset(seed=0)
    ref.state, ref.length = env.state[1].numpy(), 1.5
    assert np.array_equal(long, ref.render())
    with pytest.warns(UserWarning, match="render mode"):
        assert CartPoleVecEnv(num_envs=1).render() is None


# ------------------------------------------------------------------------------ configured envs

TINY = {"learning_starts": 10_000, "n_members": 2, "hidden": (8, 8)}


def _episode_log(tmp_path, agent, steps: int) -> list[tuple[float, int]]:
    agent.learn(steps, log_dir=tmp_path)
    rows = (tmp_path / "episodes.csv").read_text().splitlines()[1:]
    return [(float(r.split(",")[1]), int(r.split(",")[2])) for r in rows]


def test_agent_trains_on_the_configured_time_limit_and_physics(tmp_path) -> None:
    agent = BayesMPC(gym.make("Pendulum-v1", max_episode_steps=30, g=2.0), seed=0, learning_starts=10_000)
    assert isinstance(agent.env, PendulumVecEnv) and agent.env.max_episode_steps == 30
    assert float(agent.env.params["g"][0]) == 2.0
    assert [n for _, n in _episode_log(tmp_path, agent, 93)] == [30, 30, 30]  # + 2 autoreset steps
    # attributes changed after make count too; riskrl's own single envs map back to the batched env
    ref = gym.make("CartPole-v1", max_episode_steps=50)
    ref.unwrapped.masspole = 0.3
    ref.unwrapped.total_mass = ref.unwrapped.masspole + ref.unwrapped.masscart
    ref.unwrapped.polemass_length = ref.unwrapped.masspole * ref.unwrapped.length
    dqn = BayesDQN(ref, seed=0, **TINY)
    assert dqn.env.max_episode_steps == 50 and float(dqn.env.params["masspole"][0]) == pytest.approx(0.3)
    env = from_gym_env(gym.make("riskrl/Pendulum-v1", g=3.0, max_episode_steps=7), num_envs=5)
    assert env.num_envs == 5 and env.max_episode_steps == 7 and (env.params["g"] == 3.0).all()


def test_agent_keeps_wrappers_and_unmappable_settings_or_refuses(tmp_path) -> None:
    wrapped = gym.wrappers.TransformReward(gym.make("CartPole-v1", max_episode_steps=20), lambda r: 2.0 * r)
    agent = BayesDQN(wrapped, seed=0, **TINY)
    assert isinstance(agent.env, GymnasiumVecAdapter) and agent.env.env.envs[0] is wrapped
    episodes = _episode_log(tmp_path, agent, 120)
    assert episodes and all(r == 2.0 * n and n <= 20 for r, n in episodes)  # doubled rewards, 20-step limit
    with pytest.raises(ValueError, match="TransformReward"):
        BayesDQN(gym.wrappers.TransformReward(gym.make("CartPole-v1"), lambda r: r), num_envs=4, **TINY)
    with pytest.raises(ValueError, match="reward function"):
        BayesMPC(gym.wrappers.TransformReward(gym.make("Pendulum-v1"), lambda r: r))
    # a setting without a counterpart in the batched env: the instance itself is used
    sutton = from_gym_env(gym.make("CartPole-v1", sutton_barto_reward=True))
    assert isinstance(sutton, GymnasiumVecAdapter)
    sutton.reset(seed=0)
    assert float(sutton.step(torch.tensor([0]))[1][0]) == 0.0  # Sutton & Barto's reward, not +1
    stale = gym.make("CartPole-v1")
    stale.unwrapped.length = 1.0  # without gymnasium's derived polemass_length: not reproducible
    assert isinstance(from_gym_env(stale), GymnasiumVecAdapter)


@pytest.mark.usefixtures("pygame_headless")
def test_human_render_mode_draws_through_gymnasiums_window() -> None:
    env = gym.make("riskrl/Pendulum-v1", render_mode="human")  # SDL's dummy driver stands in for a display
    env.reset(seed=0)
    env.step(np.array([1.0], dtype=np.float32))
    renderer = env.unwrapped._renderer
    assert renderer is not None and renderer.ref.render_mode == "human" and renderer.ref.screen is not None
    env.close()
    assert env.unwrapped._renderer is None


@pytest.mark.usefixtures("pygame_headless")
def test_wrapped_gymnasium_ids_render_through_the_adapter() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CartPole-v0 is an old version
        ad = make_vec("CartPole-v0", 2, render_mode="rgb_array")
        ref = gym.make("CartPole-v0", render_mode="rgb_array")
    assert isinstance(ad, GymnasiumVecAdapter) and ad.render_mode == "rgb_array"
    ad.reset(seed=0)
    ref.reset(seed=0)
    frames = ad.render()
    assert len(frames) == 2 and np.array_equal(frames[0], ref.render())


@pytest.mark.parametrize("cls", [CartPoleVecEnv, PendulumVecEnv])
def test_a_seed_gives_the_same_episodes_in_both_precisions(cls) -> None:
    """Switching to the float32 speed option keeps the seeded reset (and autoreset) states."""
    envs = [cls(num_envs=64, max_episode_steps=3, dtype=d) for d in (torch.float64, torch.float32)]
    obs = [e.reset(seed=7)[0] for e in envs]
    torch.testing.assert_close(obs[1], obs[0], rtol=0, atol=1e-6)
    a = torch.zeros(64, dtype=torch.int64) if cls is CartPoleVecEnv else torch.zeros(64, 1)
    for _ in range(4):  # through a truncation and the autoreset step
        obs = [e.step(a)[0] for e in envs]
    torch.testing.assert_close(obs[1], obs[0], rtol=0, atol=1e-5)


def test_batched_settings_reads_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from gymnasium.envs.classic_control.acrobot import AcrobotEnv

    from riskrl.envs import AcrobotVecEnv, MountainCarVecEnv, batched_settings

    monkeypatch.setattr(AcrobotEnv, "LINK_MASS_1", 2.0)  # a class attribute, as gymnasium's docs suggest
    assert batched_settings(gym.make("Acrobot-v1")) == (
        AcrobotVecEnv,
        {"max_episode_steps": 500, "link_mass_1": 2.0},
    )
    nips = gym.make("Acrobot-v1")
    nips.unwrapped.book_or_nips = "nips"
    assert "book_or_nips" in batched_settings(nips)
    cls, kw = batched_settings(gym.make("MountainCar-v0", goal_velocity=0.02))
    assert cls is MountainCarVecEnv and kw["goal_velocity"] == 0.02
    assert cls(**kw).goal_velocity == 0.02
    assert "not one of riskrl's batched envs" in batched_settings(gym.make("Taxi-v4"))
