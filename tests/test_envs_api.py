"""API, autoreset, seeding, perturbation, reward/termination functions and make_vec of riskrl.envs."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

import riskrl.envs as E
from riskrl.envs import (
    AcrobotVecEnv,
    CartPoleVecEnv,
    GymnasiumVecAdapter,
    MountainCarContinuousVecEnv,
    MountainCarVecEnv,
    PendulumVecEnv,
    TorchVectorEnv,
    make_vec,
)

ALL = [CartPoleVecEnv, AcrobotVecEnv, MountainCarVecEnv, MountainCarContinuousVecEnv, PendulumVecEnv]
HORIZON = {
    "CartPole-v1": 500,
    "Acrobot-v1": 500,
    "MountainCar-v0": 200,
    "MountainCarContinuous-v0": 999,
    "Pendulum-v1": 200,
}


def _random_actions(env: TorchVectorEnv, gen: torch.Generator) -> torch.Tensor:
    n = env.num_envs
    if env._discrete:
        return torch.randint(0, int(env.single_action_space.n), (n,), generator=gen)
    hi = float(env.single_action_space.high[0])
    return (torch.rand(n, 1, generator=gen) * 2 - 1) * hi * 1.2


@pytest.mark.parametrize("cls", ALL)
def test_spaces_and_attributes(cls):
    env = cls(num_envs=7)
    ref = gym.make(cls.env_id)
    assert isinstance(env, VectorEnv)
    assert env.single_observation_space == ref.observation_space
    assert env.single_action_space == ref.action_space
    assert env.observation_space.shape == (7, *ref.observation_space.shape)
    assert env.max_episode_steps == HORIZON[cls.env_id] == ref.spec.max_episode_steps
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert (
        CartPoleVecEnv(autoreset_mode=AutoresetMode.SAME_STEP).metadata["autoreset_mode"]
        == AutoresetMode.SAME_STEP
    )
    obs, info = env.reset(seed=0)
    assert obs.shape == (7, cls.obs_dim) and obs.dtype == torch.float32 and info == {}
    assert env.observation_space.contains(obs.numpy())
    obs, rew, term, trunc, info = env.step(_random_actions(env, torch.Generator().manual_seed(0)))
    # gymnasium's dtypes: float32 observations, float64 rewards (and a float64 state)
    assert obs.shape == (7, cls.obs_dim) and obs.dtype == torch.float32
    assert rew.shape == (7,) and rew.dtype == torch.float64 and env.state.dtype == torch.float64
    assert term.dtype == torch.bool and trunc.dtype == torch.bool and term.shape == trunc.shape == (7,)
    assert "episode" not in info and "_episode" not in info  # like gymnasium's vector envs
    assert env.state.shape == (7, cls.state_dim)
    fast = cls(num_envs=7, dtype=torch.float32)  # the explicit speed option
    fast.reset(seed=0)
    obs, rew, *_ = fast.step(_random_actions(fast, torch.Generator().manual_seed(0)))
    assert obs.dtype == rew.dtype == fast.state.dtype == torch.float32


@pytest.mark.parametrize("cls", ALL)
def test_seeding_is_deterministic(cls):
    def rollout(seed):
        env = cls(num_envs=16, max_episode_steps=25)  # short horizon: exercises autoresets
        out = [env.reset(seed=seed)[0]]
        gen = torch.Generator().manual_seed(1)
        for _ in range(60):
            out.append(env.step(_random_actions(env, gen))[0])
        return torch.stack(out)

    a, b, c = rollout(3), rollout(3), rollout(4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_next_step_autoreset_and_episode_stats():
    env = CartPoleVecEnv(num_envs=3, episode_statistics=True)
    env.reset(seed=0)
    s = env.state
    s[1] = torch.tensor([2.39, 5.0, 0.0, 0.0])  # env 1 leaves the track on the next step
    env.state = s
    obs, rew, term, trunc, info = env.step(torch.ones(3, dtype=torch.int64))
    assert term.tolist() == [False, True, False] and not trunc.any()
    assert obs[1, 0] > 2.4  # terminal obs is returned (NEXT_STEP)
    assert info["_episode"].tolist() == [False, True, False]
    assert info["episode"]["r"].tolist() == [0.0, 1.0, 0.0] and info["episode"]["l"].tolist() == [0, 1, 0]
    obs, rew, term, trunc, info = env.step(torch.ones(3, dtype=torch.int64))  # env 1 resets, ignores action
    assert rew.tolist() == [1.0, 0.0, 1.0]
    assert not term[1] and "episode" not in info and "_episode" not in info  # only at episode ends
    assert (obs[1].abs() <= 0.05).all()
    # episode length counting restarts after the reset step
    for _ in range(3):
        *_, info = env.step(torch.ones(3, dtype=torch.int64))
    s = env.state
    s[1, 0] = 2.4 + 1e-6
    env.state = s
    _, _, term, _, info = env.step(torch.ones(3, dtype=torch.int64))
    assert info["_episode"][1] and info["episode"]["l"][1] == 4 and info["episode"]["r"][1] == 4.0


def test_same_step_autoreset_matches_next_step():
    kw = {"num_envs": 32, "max_episode_steps": 40, "episode_statistics": True}
    nxt = CartPoleVecEnv(**kw)
    same = CartPoleVecEnv(autoreset_mode=AutoresetMode.SAME_STEP, **kw)
    nxt.reset(seed=5)
    same.reset(seed=5)
    gen = torch.Generator().manual_seed(0)
    ep_len = torch.zeros(32, dtype=torch.int32)
    n_done, first = 0, True
    for _ in range(150):
        a = torch.randint(0, 2, (32,), generator=gen)
        obs_s, rew_s, term_s, trunc_s, info_s = same.step(a)
        done = term_s | trunc_s
        if first:  # until the first done both envs follow identical trajectories
            obs_n, _, term_n, trunc_n, _ = nxt.step(a)
            assert torch.equal(term_n, term_s) and torch.equal(trunc_n, trunc_s)
            torch.testing.assert_close(obs_s[~done], obs_n[~done])
            if done.any():
                torch.testing.assert_close(info_s["final_obs"][done], obs_n[done])
                first = False
        assert torch.equal(info_s["_final_obs"], done)
        assert torch.equal(info_s["_episode"], done) if done.any() else "_episode" not in info_s
        assert (rew_s == 1).all()  # no dummy reset steps in SAME_STEP mode
        assert (obs_s[done].abs() <= 0.05).all()  # the returned obs of a done env is a fresh reset obs
        ep_len += 1
        if done.any():
            assert torch.equal(info_s["episode"]["l"], torch.where(done, ep_len, 0))
            assert torch.equal(info_s["episode"]["r"], torch.where(done, ep_len.double(), 0.0))
        ep_len[done] = 0
        n_done += int(done.sum())
    assert not first and n_done > 30


def test_truncation_and_episode_return():
    env = PendulumVecEnv(num_envs=4, max_episode_steps=5, episode_statistics=True)
    env.reset(seed=0)
    total = torch.zeros(4, dtype=torch.float64)
    for t in range(1, 6):
        _, rew, term, trunc, info = env.step(torch.zeros(4, 1))
        total += rew
        assert not term.any()
        assert trunc.all() == (t == 5) and ("_episode" in info) == (t == 5)
    torch.testing.assert_close(info["episode"]["r"], total)
    assert info["episode"]["l"].tolist() == [5] * 4
    _, rew, _, trunc, _ = env.step(torch.zeros(4, 1))
    assert (rew == 0).all() and not trunc.any()


def test_state_injection_and_autoreset_diversity():
    env = CartPoleVecEnv(num_envs=64, max_episode_steps=1)
    env.reset(seed=0)
    env.step(torch.zeros(64, dtype=torch.int64))
    obs, *_ = env.step(torch.zeros(64, dtype=torch.int64))
    assert torch.unique(obs[:, 0]).numel() == 64  # each env gets its own reset state
    with pytest.raises(ValueError, match="shape"):
        env.state = torch.zeros(3, 4)


def test_perturb_params_and_errors():
    env = PendulumVecEnv(num_envs=8, g=0.0)
    assert (env.params["g"] == 0).all()
    env.reset(seed=0)
    thdot0 = env.state[:, 1]
    env.step(torch.zeros(8, 1))
    torch.testing.assert_close(env.state[:, 1], thdot0)  # no gravity, no torque: velocity unchanged
    out = env.perturb(m=(0.5, 2.0), l=torch.linspace(0.5, 1.5, 8), dt=0.01)
    assert set(out) == {"m", "l", "dt"}
    m = env.params["m"]
    assert ((m >= 0.5) & (m <= 2.0)).all() and m.unique().numel() == 8
    torch.testing.assert_close(env.params["l"], torch.linspace(0.5, 1.5, 8).double())
    # tuple sampling uses the env's seeded generator
    e1, e2 = PendulumVecEnv(num_envs=8), PendulumVecEnv(num_envs=8)
    e1.reset(seed=9)
    e2.reset(seed=9)
    assert torch.equal(e1.perturb(g=(5.0, 15.0))["g"], e2.perturb(g=(5.0, 15.0))["g"])
    with pytest.raises(ValueError, match=r"valid names: \['g', 'm', 'l', 'dt', 'max_speed'"):
        env.perturb(gravity=1.0)
    with pytest.raises(ValueError, match="unknown parameter"):
        CartPoleVecEnv(num_envs=2, pole_length=1.0)
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        env.perturb(m=torch.ones(3))
    # a heavier force moves the cart faster
    cp = CartPoleVecEnv(num_envs=2, force_mag=torch.tensor([10.0, 30.0]))
    cp.reset(seed=0)
    cp.state = torch.zeros(2, 4)
    cp.step(torch.ones(2, dtype=torch.int64))
    assert cp.state[1, 1] == pytest.approx(3 * cp.state[0, 1].item(), rel=1e-5)


def test_observation_and_action_noise():
    env = CartPoleVecEnv(num_envs=256, obs_noise_std=0.1)
    obs, _ = env.reset(seed=0)
    noise = obs - env.get_obs()
    assert noise.std().item() == pytest.approx(0.1, rel=0.1)
    env2 = CartPoleVecEnv(num_envs=256, obs_noise_std=0.1)
    assert torch.equal(env2.reset(seed=0)[0], obs)
    # action noise changes the dynamics, deterministically given the seed
    states = []
    for std in (0.0, 0.5, 0.5):
        e = MountainCarContinuousVecEnv(num_envs=16, action_noise_std=std)
        e.reset(seed=1)
        for _ in range(5):
            e.step(torch.zeros(16, 1))
        states.append(e.state)
    assert not torch.equal(states[0], states[1]) and torch.equal(states[1], states[2])


def test_action_validation():
    env = CartPoleVecEnv(num_envs=4)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.zeros(4, dtype=torch.int64))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="integer"):
        env.step(torch.zeros(4))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        env.step(torch.tensor([0, 1, 2, 0]))
    env.step([0, 1, 1, 0])  # lists and numpy arrays are converted
    env.step(np.array([1, 1, 0, 0], dtype=np.int32))
    fast = CartPoleVecEnv(num_envs=4, validate_actions=False)
    fast.reset(seed=0)
    fast.step(torch.tensor([0, 1, 2, 0]))  # no host sync, no range check
    pend = PendulumVecEnv(num_envs=2)
    pend.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        pend.step(torch.tensor([[0.0], [float("nan")]]))
    with pytest.raises(ValueError, match="shape"):
        pend.step(torch.zeros(2))
    with pytest.raises(TypeError):
        pend.step(torch.zeros(2, 1, dtype=torch.bool))


@pytest.mark.parametrize("cls", ALL)
def test_reward_and_termination_fns_match_env(cls):
    env = cls(num_envs=64, autoreset_mode=AutoresetMode.SAME_STEP, max_episode_steps=10_000)
    obs, _ = env.reset(seed=0)
    if cls in (MountainCarVecEnv, MountainCarContinuousVecEnv):  # start near the goal so it is reached
        env.state = torch.stack([torch.linspace(0.2, 0.44, 64), torch.full((64,), 0.03)], -1)
        obs = env.get_obs()
    gen = torch.Generator().manual_seed(0)
    n_term = 0
    for _ in range(100):
        a = _random_actions(env, gen)
        nxt, rew, term, _, info = env.step(a)
        true_next = torch.where(info["_final_obs"][:, None], info["final_obs"], nxt)
        # reward_fn works in the observations' float32; the env's float64 reward agrees to that precision
        torch.testing.assert_close(
            env.reward_fn(obs, a, true_next), rew, atol=1e-4, rtol=1e-5, check_dtype=False
        )
        assert torch.equal(env.termination_fn(obs, a, true_next), term)
        n_term += int(term.sum())
        obs = nxt
    if cls is not PendulumVecEnv and cls is not AcrobotVecEnv:
        assert n_term > 0
    # arbitrary leading batch dims
    o = obs.expand(5, 64, -1)
    a = a.expand(5, *a.shape)
    assert env.reward_fn(o, a, o).shape == (5, 64)
    assert env.termination_fn(o, a, o).shape == (5, 64) and env.termination_fn(o, a, o).dtype == torch.bool


def test_acrobot_termination_fn_reaches_goal():
    env = AcrobotVecEnv(num_envs=2)
    env.reset(seed=0)
    env.state = torch.tensor([[3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    obs0 = env.get_obs()
    nxt, rew, term, _, _ = env.step(torch.tensor([1, 1]))
    assert term.tolist() == [True, False] and rew.tolist() == [0.0, -1.0]
    assert env.termination_fn(obs0, None, nxt).tolist() == [True, False]
    assert env.reward_fn(obs0, None, nxt).tolist() == [0.0, -1.0]


def test_pendulum_reward_uses_current_obs_and_clipped_action():
    env = PendulumVecEnv()
    obs = torch.tensor([[-1.0, 0.0, 2.0]])  # theta = pi
    r = env.reward_fn(obs, torch.tensor([[5.0]]), torch.zeros(1, 3))
    assert r.item() == pytest.approx(-(np.pi**2 + 0.4 + 0.004), rel=1e-6)


def test_reset_options_and_mask():
    env = CartPoleVecEnv(num_envs=512)
    obs, _ = env.reset(seed=0, options={"low": -0.2, "high": 0.2})
    assert obs.abs().max() > 0.1 and obs.abs().max() <= 0.2
    before = env.state
    mask = torch.zeros(512, dtype=torch.bool)
    mask[:10] = True
    env.reset(options={"reset_mask": mask})
    after = env.state
    assert torch.equal(after[10:], before[10:]) and not torch.equal(after[:10], before[:10])
    pend = PendulumVecEnv(num_envs=256)
    pend.reset(seed=0, options={"x_init": 0.1, "y_init": 0.0})
    assert pend.state[:, 0].abs().max() <= 0.1 and (pend.state[:, 1] == 0).all()


def test_make_vec_and_registration():
    for env_id, cls in E.ENV_IDS.items():
        assert type(make_vec(env_id, 2)) is cls
        assert type(make_vec(f"riskrl/{env_id}", 2)) is cls
    env = make_vec("riskrl/CartPole-v1", 3, dtype=torch.float64, gravity=(9.0, 10.0))
    assert env.dtype == torch.float64 and ((env.params["gravity"] >= 9) & (env.params["gravity"] <= 10)).all()
    with pytest.raises(ValueError, match="unknown"):
        make_vec("NoSuchEnv-v9")
    with pytest.raises(ValueError, match="unknown riskrl env"):
        make_vec("riskrl/NoSuchEnv-v0")
    genv = gym.make_vec("riskrl/CartPole-v1", num_envs=4)
    assert isinstance(genv, CartPoleVecEnv) and genv.num_envs == 4 and genv.max_episode_steps == 500
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        E.register_envs()  # idempotent
    assert gym.make_vec("riskrl/Pendulum-v1", num_envs=2, max_episode_steps=7).max_episode_steps == 7


def test_gymnasium_adapter_matches_gymnasium():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ad = make_vec("CartPole-v0", 4, episode_statistics=True)
        ref = gym.make_vec("CartPole-v0", num_envs=4, vectorization_mode="sync")
    assert isinstance(ad, GymnasiumVecAdapter) and ad.max_episode_steps == 200
    obs, _ = ad.reset(seed=0)
    ref_obs, _ = ref.reset(seed=0)
    np.testing.assert_array_equal(obs.numpy(), ref_obs)
    rng = np.random.default_rng(0)
    total, n_ep = np.zeros(4), 0
    live = np.ones(4, dtype=bool)
    for _ in range(100):
        a = rng.integers(0, 2, 4)
        obs, rew, term, trunc, info = ad.step(torch.as_tensor(a))
        ref_obs, ref_rew, *_ = ref.step(a)
        np.testing.assert_array_equal(obs.numpy(), ref_obs)
        np.testing.assert_array_equal(rew.numpy(), ref_rew)
        total = np.where(live, total + rew.numpy(), 0.0)
        done = (term | trunc).numpy()
        if done.any():
            np.testing.assert_allclose(info["episode"]["r"].numpy()[done], total[done])
            n_ep += int(done.sum())
        assert torch.equal(info["_episode"], term | trunc) if done.any() else "_episode" not in info
        live = ~done
    assert n_ep > 3
    with pytest.raises(NotImplementedError, match="reward"):
        ad.reward_fn(obs, None, obs)
    with pytest.raises(NotImplementedError, match="termination"):
        ad.termination_fn(obs, None, obs)
    with pytest.raises(NotImplementedError):
        ad.perturb(gravity=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same = make_vec("CartPole-v0", 2, autoreset_mode=AutoresetMode.SAME_STEP)
    same.reset(seed=0)
    for _ in range(60):
        obs, _, term, trunc, info = same.step(torch.tensor([0, 0]))
        if info["_final_obs"].any():
            i = int(torch.nonzero(info["_final_obs"])[0])
            assert info["final_obs"][i].abs().max() > 0.2 and obs[i].abs().max() <= 0.05
            break
    else:
        pytest.fail("no episode ended")


@pytest.mark.slow
def test_compiled_step_matches_eager():
    eager = CartPoleVecEnv(num_envs=128, max_episode_steps=30)
    comp = CartPoleVecEnv(num_envs=128, max_episode_steps=30, compile=True)
    eager.reset(seed=0)
    comp.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        a = torch.randint(0, 2, (128,), generator=gen)
        out_e, out_c = eager.step(a), comp.step(a)
        torch.testing.assert_close(out_c[0], out_e[0])
        assert torch.equal(out_c[2], out_e[2]) and torch.equal(out_c[3], out_e[3])


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_state_dict_round_trip_continues_bit_identically(env_id: str) -> None:
    from riskrl.envs import make_vec

    def run(env, n):
        gen = torch.Generator().manual_seed(1)
        outs = []
        for _ in range(n):
            if env.single_action_space.shape:
                a = torch.rand(env.num_envs, 1, generator=gen) * 4 - 2
            else:
                a = torch.randint(0, 2, (env.num_envs,), generator=gen)
            outs.append(env.step(a)[:4])
        return outs

    shift = {"length": (0.4, 0.6)} if env_id == "CartPole-v1" else {"m": (0.8, 1.2)}
    env = make_vec(env_id, num_envs=5, obs_noise_std=0.01, **shift)
    env.reset(seed=3)
    run(env, 30)
    saved = env.state_dict()
    expected = run(env, 300)
    other = make_vec(env_id, num_envs=5)
    other.load_state_dict(saved)
    got = run(other, 300)
    for e, g in zip(expected, got):
        for x, y in zip(e, g):
            assert torch.equal(x, y)
    with pytest.raises(ValueError, match="shape"):
        make_vec(env_id, num_envs=2).load_state_dict(saved)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cls", "mode"),
    [(cls, AutoresetMode.NEXT_STEP) for cls in ALL]
    # SAME_STEP's bookkeeping is the base class's, not the env's: one discrete, one continuous env
    + [(CartPoleVecEnv, AutoresetMode.SAME_STEP), (PendulumVecEnv, AutoresetMode.SAME_STEP)],
)
def test_compiled_step_matches_eager_all_envs(cls: type[TorchVectorEnv], mode: AutoresetMode) -> None:
    """The compiled fast path (compiled ahead of time on CPU; uint8 flags internally) returns eager's
    tensors, dtypes and info: flags and counters exactly, floats to rounding (inductor may fuse /
    vectorise transcendental functions differently). Each case compiles its own program (~10-20 s)."""
    n = 37
    kw = {"num_envs": n, "max_episode_steps": 13, "autoreset_mode": mode, "episode_statistics": True}
    eager, comp = cls(**kw), cls(**kw, compile=True)
    eager.reset(seed=4)
    comp.reset(seed=4)
    gen = torch.Generator().manual_seed(0)
    ended = 0
    for _ in range(40):
        if eager.single_action_space.shape:
            hi = float(eager.single_action_space.high[0])
            a = (torch.rand(n, *eager.single_action_space.shape, generator=gen) * 2 - 1) * hi
        else:
            a = torch.randint(0, int(eager.single_action_space.n), (n,), generator=gen)
        oe, oc = eager.step(a), comp.step(a)
        for x, y in zip(oe[:4], oc[:4]):
            assert x.dtype == y.dtype and x.shape == y.shape
            torch.testing.assert_close(y, x) if x.is_floating_point() else torch.testing.assert_close(
                y, x, rtol=0, atol=0
            )
        ie, ic = oe[4], oc[4]
        assert set(ie) == set(ic)
        if "_episode" in ic:
            assert ic["_episode"].dtype == torch.bool and torch.equal(ie["_episode"], ic["_episode"])
            torch.testing.assert_close(ic["episode"]["r"], ie["episode"]["r"])
            assert torch.equal(ie["episode"]["l"], ic["episode"]["l"])
            ended += int(ic["_episode"].sum())
        if mode == AutoresetMode.SAME_STEP:
            torch.testing.assert_close(ic["final_obs"], ie["final_obs"])
            assert torch.equal(ie["_final_obs"], ic["_final_obs"])
    assert ended > 0
    se, sc = eager.state_dict(), comp.state_dict()
    assert sc["prev_done"].dtype == torch.bool
    for k in ("state", "steps", "prev_done", "ep_ret", "ep_len", "counter", "key"):
        torch.testing.assert_close(sc[k], se[k], msg=k)
    # A compiled env resumes from an eager env's checkpoint.
    comp.load_state_dict(se)
    a = (
        torch.zeros(n, *eager.single_action_space.shape)
        if eager.single_action_space.shape
        else torch.zeros(n, dtype=torch.long)
    )
    for x, y in zip(eager.step(a)[:4], comp.step(a)[:4]):
        torch.testing.assert_close(y, x)


@pytest.mark.slow
def test_many_compiled_envs_stay_compiled() -> None:
    """More compiled envs in one process than dynamo's recompile limit (8) must each still get compiled:
    the ahead-of-time step is compiled once and shared by envs of one configuration, and the
    torch.compile step (action noise) gets a compiled graph per env."""
    from torch._dynamo.utils import counters

    from riskrl.envs.aot import AotStep

    torch._dynamo.reset()
    before = counters["stats"]["unique_graphs"]
    limit = int(torch._dynamo.config.recompile_limit)
    runs = set()
    for _ in range(limit + 2):
        env = CartPoleVecEnv(num_envs=3, compile=True)
        env.reset(seed=0)
        env.step(torch.tensor([0, 1, 1]))
        assert isinstance(env._core_fn, AotStep) and env._core_fn._run is not None
        runs.add(env._core_fn._run)
        noisy = CartPoleVecEnv(num_envs=3, compile=True, action_noise_std=0.1)
        noisy.reset(seed=0)
        noisy.step(torch.tensor([0, 1, 1]))
    assert len(runs) == 1  # one program for one configuration
    assert counters["stats"]["unique_graphs"] - before >= limit + 2


def test_reset_obs_is_not_a_view_of_the_state() -> None:
    from riskrl.envs import make_vec

    env = make_vec("CartPole-v1", num_envs=1)
    obs, _ = env.reset(seed=0)
    before = obs.clone()
    env.step(torch.tensor([1]))
    assert torch.equal(obs, before)


def test_reset_seed_makes_autoresets_reproducible_and_options_apply_once() -> None:
    from riskrl.envs import make_vec

    env = make_vec("CartPole-v1", num_envs=3, episode_statistics=True)

    def lengths() -> list[int]:
        env.reset(seed=0)
        out = []
        for _ in range(200):
            _, _, _, _, info = env.step(torch.zeros(3, dtype=torch.int64))
            if "_episode" in info:
                out += info["episode"]["l"][info["_episode"]].tolist()
        return out

    first = lengths()
    assert lengths() == first  # the autoreset stream restarts with the seed
    obs, _ = env.reset(seed=0, options={"low": 0.04, "high": 0.05})
    assert bool(((obs >= 0.04) & (obs <= 0.05)).all())
    obs, _ = env.reset(seed=0)
    assert bool((obs < 0.04).any())  # the next reset is back to gymnasium's default bounds
