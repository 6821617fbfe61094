"""learn_offline: pessimistic DQN targets, MPC plans under a stubbed model, CI-sized offline runs."""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import pytest
import torch
from hostile_corpus import read_parts, ref, write_parts

import riskrl
from riskrl.agents import BayesDQN, BayesMPC
from riskrl.agents.behavior import UNIFORM_STD, BehaviorPolicy, sharpen_spread
from riskrl.agents.callbacks import BaseCallback
from riskrl.agents.dqn import _pessimistic_target
from riskrl.checkpoint import CheckpointError
from riskrl.data import Dataset, collect
from riskrl.envs import make_vec


def balance(obs: torch.Tensor) -> torch.Tensor:
    """Scripted CartPole expert (return 500)."""
    return ((obs[:, 2] * 10 + obs[:, 3] * 2 + obs[:, 0] * 0.5 + obs[:, 1]) > 0).long()


def swing_up(obs: torch.Tensor) -> torch.Tensor:
    """Scripted Pendulum expert: energy pumping, PD control near the top (return about -120)."""
    c, s, w = obs[:, 0], obs[:, 1], obs[:, 2]
    energy = 0.5 * w**2 + 10 * (c - 1)
    pd = torch.clamp(-10 * torch.atan2(s, c) - 2 * w, -2, 2)
    return torch.where(c > 0.85, pd, torch.sign(w) * 2.0 * (energy < 0)).unsqueeze(1)


# ----------------------------------------------------------------------------- stubbed posteriors


def test_pessimistic_target_is_mean_minus_beta_std() -> None:
    """Members' targets average to mean - beta * std at the action maximising that score."""
    q = torch.tensor(
        [  # (K=3, B=2, A=2)
            [[1.0, 3.0], [0.0, 0.0]],
            [[1.0, 0.0], [2.0, 0.5]],
            [[1.0, 3.0], [4.0, 1.0]],
        ]
    )
    mean, std = q.mean(0), q.std(0, correction=0)
    for beta in (0.0, 0.5, 2.0):
        target = _pessimistic_target(q, q, beta)
        assert target.shape == (3, 2)
        score = mean - beta * std
        best = score.argmax(-1)
        want = score.gather(1, best.unsqueeze(1)).squeeze(1)
        torch.testing.assert_close(target.mean(0), want)
        # each member keeps its own value, shifted by the shared penalty
        q_best = q.gather(2, best.view(1, 2, 1).expand(3, 2, 1)).squeeze(-1)
        torch.testing.assert_close(target, q_best - beta * q_best.std(0, correction=0))
    # state 0: action 1 has the higher mean (2 > 1) but a spread; pessimism switches to action 0
    assert _pessimistic_target(q, q, 0.0).mean(0)[0] == pytest.approx(2.0)
    assert _pessimistic_target(q, q, 2.0).mean(0)[0] == pytest.approx(1.0)
    # Double DQN: the selecting nets pick the action, the target nets score it
    select = torch.zeros(3, 2, 2)
    select[:, :, 1] = 1.0
    torch.testing.assert_close(_pessimistic_target(q, select, 1.0).mean(0), mean[:, 1] - std[:, 1])


class _StubParticles:
    """Pendulum dynamics stub: obs (cos, sin, thetadot). Negative torque moves every particle to
    theta = 0.3 (sure, penalty 0.09 per step); positive torque sends particles 0-3 upright
    (penalty 0) and particle 4 to theta = 0.55 (penalty 0.3025): a better mean, with a spread."""

    def mean_and_std(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state, action = x[..., :3], x[..., 3]
        p = x.shape[0]
        risky_theta = torch.zeros(p, 1)
        risky_theta[-1] = 0.55
        theta = torch.where(action > 0, risky_theta.expand(action.shape), torch.full_like(action, 0.3))
        target = torch.stack([torch.cos(theta), torch.sin(theta), torch.zeros_like(theta)], -1)
        return target - state, torch.zeros_like(state)


def test_mpc_offline_plan_changes_with_risk_tolerance() -> None:
    data = collect("random", "Pendulum-v1", 200, seed=0)
    agent = BayesMPC(
        "Pendulum-v1",
        seed=0,
        n_members=5,
        n_particles=5,
        horizon=5,
        population=64,
        cem_iterations=3,
        sample_aleatoric=False,
        hidden=[8],
        behavior_prior=False,
    )  # fmt: skip  (the prior would start the search at 5 steps' cloned policy, not mid-range)
    agent.learn_offline(data, 5)
    assert agent.trained
    agent.model.particles = lambda n, generator=None: _StubParticles()  # type: ignore[method-assign]
    obs = torch.tensor([[1.0, 0.0, 0.0]])
    first = {}
    for rt in (0.0, 4.0):
        agent.risk_tolerance = rt
        agent._eval_dist = None
        result = agent.plan(obs)
        first[rt] = float(result.actions[0, 0, 0])
    # neutral takes the better-on-average risky torque, averse a sure one (zero torque is sure too)
    assert first[0.0] > 0 >= first[4.0]


# ----------------------------------------------------------------------------- the learn_offline loop


def test_learn_offline_then_fine_tune_online() -> None:
    data = collect(balance, "CartPole-v1", 400, seed=0, num_envs=2, epsilon=0.2)
    agent = BayesDQN("CartPole-v1", seed=0, hidden=(16,), learning_starts=0, buffer_size=1000)
    calls = []

    class Count(BaseCallback):
        def _on_step(self) -> bool:
            calls.append(self.n_calls)
            return True

    before = [p.detach().clone() for p in agent.q_net.parameters()]
    agent.learn_offline(data, 30, callback=Count())
    assert calls == list(range(1, 31)) and agent.num_timesteps == 0
    assert agent._n_updates == 30
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.q_net.parameters()))
    assert len(agent.buffer) == 400
    assert torch.equal(agent.buffer.obs[:400], data.observations)
    agent.learn(50)  # online fine-tuning continues on the dataset plus new transitions
    assert agent.num_timesteps == 50 and 440 <= len(agent.buffer) <= 450  # reset steps add nothing
    # the same seed and data give the same offline result
    again = BayesDQN("CartPole-v1", seed=0, hidden=(16,), learning_starts=0, buffer_size=1000)
    again.learn_offline(data, 30)
    twin = BayesDQN("CartPole-v1", seed=0, hidden=(16,), learning_starts=0, buffer_size=1000)
    twin.learn_offline(data, 30)
    assert all(torch.equal(a, b) for a, b in zip(again.q_net.parameters(), twin.q_net.parameters()))
    with pytest.raises(ValueError, match="beta"):
        BayesDQN("CartPole-v1", beta=-1.0)
    with pytest.raises(ValueError, match="gradient_steps"):
        agent.learn_offline(data, -1)


def test_offline_bayes_dqn_reaches_400_on_expert_cartpole() -> None:
    """10k transitions of a scripted expert with 10% random actions: no episode fails, so the TD
    targets say little about which action is better. At the offline defaults (CQL's penalty on,
    risk_tolerance 0) the Q-values of the actions the expert does not take are pushed down and the
    greedy policy balances the pole; the same run without the penalty does not (the reason it is
    the default; the benchmark's 5 seeds: 9-13 without it, 500 with it)."""
    data = collect(balance, "CartPole-v1", 10_000, seed=0, num_envs=4, epsilon=0.1)

    def offline_return(**kwargs: float) -> riskrl.EvalResult:
        agent = BayesDQN("CartPole-v1", seed=0, hidden=(64, 64), batch_size=128, bootstrap_p=0.5, **kwargs)
        agent.learn_offline(data, 2000)
        assert agent.risk_tolerance == 0.0
        return riskrl.evaluate(agent, "CartPole-v1", 10, seed=1, bootstrap=False)

    result = offline_return()
    assert result.mean >= 400, result
    without = offline_return(cql_alpha=0.0)
    assert without.mean < 200, without


def test_offline_bayes_mpc_beats_random_on_medium_pendulum() -> None:
    data = collect(swing_up, "Pendulum-v1", 2000, seed=0, num_envs=4, epsilon=0.7)  # medium: ~40% of expert
    agent = BayesMPC("Pendulum-v1", seed=0, horizon=15, population=100, cem_iterations=3)
    agent.learn_offline(data, 800)
    assert agent.trainer.n_steps == 800 and math.isfinite(float(agent.trainer.last_loss))

    def env():
        return make_vec("Pendulum-v1", num_envs=2, max_episode_steps=100)

    planned = riskrl.evaluate(agent, env(), 2, seed=1, bootstrap=False)
    random = riskrl.evaluate(lambda o: torch.rand(o.shape[0], 1) * 4 - 2, env(), 2, seed=1, bootstrap=False)
    assert planned.mean > 0.5 * random.mean, (planned.returns, random.returns)  # less than half the cost


def test_offline_agents_save_load_and_terminal_value(tmp_path) -> None:
    """After learn_offline the checkpoint holds the dataset in the buffer (links included) and
    passes Agent.load's checks; BayesMPC's terminal value is fitted on the dataset."""
    data = collect("random", "Pendulum-v1", 300, seed=0)
    agent = BayesMPC(
        "Pendulum-v1", seed=0, hidden=[16], horizon=5, population=20, buffer_size=1000,
        terminal_value=True, value_steps=20,
    )  # fmt: skip
    assert agent.value is not None and math.isnan(agent.value.last_loss)
    agent.learn_offline(data, 20)
    assert math.isfinite(agent.value.last_loss) and agent.model_updates == 1
    loaded = BayesMPC.load(agent.save(tmp_path / "mpc.riskrl"))
    assert loaded.trained and len(loaded.buffer) == 300
    assert loaded.behavior_fitted  # the cloned policy travels with the checkpoint
    for a, b in zip(agent.behavior.state_dict().values(), loaded.behavior.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(loaded.buffer.next_index[:300], data.next_index())
    assert torch.equal(loaded.buffer.actions[:300], data.actions)


def test_cql_penalty_adds_logsumexp_minus_the_data_action_value_per_member() -> None:
    """``cql_alpha`` adds exactly ``cql_alpha * (logsumexp_a Q_k(s, a) - Q_k(s, a_data))`` to every
    member's TD loss (the same batch, nets and targets otherwise), is on (1.0) by default, and learning
    with it pushes the Q-values of the actions the dataset never takes below those it takes."""
    data = collect(balance, "CartPole-v1", 600, seed=0, num_envs=2, epsilon=0.0)
    agent = BayesDQN("CartPole-v1", seed=0, hidden=(16,), learning_starts=0, buffer_size=1000)
    assert agent.config.cql_alpha == 1.0
    agent.learn_offline(data, 1)  # fills the buffer
    batch = agent.buffer.sample_n_step(32, 1, agent.config.gamma, generator=torch.Generator().manual_seed(3))
    args = [batch[k] for k in ("obs", "actions", "rewards", "discounts", "terminated", "next_obs")]
    plain = agent._td_errors(*args, 1.0)
    with_penalty = agent._td_errors(*args, 1.0, 0.5)
    q = agent.q_net.particles(agent._n_particles)(batch["obs"])  # (K, B, A); ensemble: exact members
    q_data = q.gather(2, batch["actions"].view(1, -1, 1).expand(q.shape[0], -1, 1)).squeeze(-1)
    want = 0.5 * (torch.logsumexp(q, -1) - q_data)
    torch.testing.assert_close(with_penalty - plain, want.detach(), rtol=1e-5, atol=1e-6)

    # the scripted expert without noise: which action it takes is a function of the state, so the
    # penalty lowers Q of the other action (the data never show it) relative to the taken one
    def gap(cql_alpha: float) -> float:
        a = BayesDQN(
            "CartPole-v1", seed=0, hidden=(32,), learning_starts=0, buffer_size=1000, cql_alpha=cql_alpha
        )
        a.learn_offline(data, 300)
        with torch.no_grad():
            qq = a.q_net.particles(a._n_particles)(data.observations.to(torch.float32)).mean(0)
        taken = data.actions.long().view(-1, 1)
        return float((qq.gather(1, taken) - qq.gather(1, 1 - taken)).mean())

    assert gap(1.0) > gap(0.0) + 0.25  # measured 0.58 vs 0.10
    with pytest.raises(ValueError, match="cql_alpha"):
        BayesDQN("CartPole-v1", cql_alpha=-0.1)
    with pytest.raises(ValueError, match="cql_alpha"):
        BayesDQN("CartPole-v1", cql_alpha=float("nan"))


# ----------------------------------------------------------------------------- BayesMPC's behaviour prior


def _cloned(env_id: str, policy: Any) -> tuple[BehaviorPolicy, Dataset]:
    """A BehaviorPolicy fitted (600 Adam steps) to 2000 transitions of ``policy`` on ``env_id``."""
    data = collect(policy, env_id, 2000, seed=0, num_envs=4)
    torch.manual_seed(0)
    clone = BehaviorPolicy(data.observations.shape[1], make_vec(env_id, 1).single_action_space, (64, 64))
    clone.obs_scaler.fit(data.observations)
    optimizer = torch.optim.Adam(clone.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(600):
        idx = torch.randint(0, len(data), (128,), generator=gen)
        loss = clone.loss(data.observations[idx], data.actions[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return clone, data


def test_behavior_policy_clones_actions_and_knows_how_random_they_are() -> None:
    """Box: the cloned mean follows a scripted policy's actions within the bounds, with a small std;
    on uniformly random actions the std is about the uniform's (0.58 of the half-range), so the
    prior does not narrow the search where the data show no preference. Discrete: the argmax
    agrees with the script."""
    clone, data = _cloned("Pendulum-v1", swing_up)
    with torch.no_grad():
        mean, std = clone.distribution(data.observations)
    assert mean.shape == std.shape == (len(data), 1) and float(mean.abs().max()) <= 2.0
    assert float((mean - data.actions).abs().mean()) < 0.3  # actions span [-2, 2]
    assert float(std.median()) < 0.15
    clone, data = _cloned("Pendulum-v1", "random")
    with torch.no_grad():
        mean, std = clone.distribution(data.observations)
    assert 0.45 < float(std.median()) < 0.7 and float(mean.abs().median()) < 0.3
    clone, data = _cloned("CartPole-v1", balance)
    with torch.no_grad():
        cloned = clone.action(data.observations)
    assert cloned.dtype == torch.int64 and float((cloned == data.actions).float().mean()) > 0.95
    with pytest.raises(ValueError, match="Box action spaces"):
        clone.distribution(data.observations)
    with pytest.raises(ValueError, match="Discrete or flat Box"):
        BehaviorPolicy(3, gymnasium.spaces.MultiBinary(2))


def test_offline_plan_starts_from_the_behavior_policy_and_online_training_never_fits_it() -> None:
    """With one candidate (the search's mean) the offline plan is exactly the sequence the cloned
    policy follows through the model; with the prior off it is the uninformed mid-range plan. Online
    training does not fit the policy, so it plans as before."""
    data = collect(swing_up, "Pendulum-v1", 600, seed=0, num_envs=2, epsilon=0.1)
    one = dict(
        hidden=[16], horizon=4, population=1, n_elites=1, keep_elites=0, cem_iterations=1, buffer_size=1000
    )
    agent = BayesMPC("Pendulum-v1", seed=0, **one)
    assert not agent.behavior_fitted
    agent.learn_offline(data, 100)
    assert agent.behavior_fitted
    obs = data.observations[:5]
    expected, std = agent.behavior_plan(obs, torch.Generator().manual_seed(0))  # ensemble: no randomness
    assert expected.shape == std.shape == (5, 4, 1) and float(expected.abs().max()) <= 2.0
    assert float(std.min()) >= agent.config.behavior_min_std
    torch.testing.assert_close(agent.plan(obs).actions, expected)
    assert not torch.equal(expected[:, 1:], expected[:, :1].expand(5, 3, 1))  # follows the model
    agent.config.behavior_prior = False
    agent._eval_dist = None  # no warm start from the previous plan
    assert torch.equal(agent.plan(obs).actions, torch.zeros(5, 4, 1))
    online = BayesMPC("Pendulum-v1", seed=0, learning_starts=20, retrain_interval=20, **one)
    online.learn(60)
    assert online.trained and not online.behavior_fitted
    cartpole = BayesMPC("CartPole-v1", seed=0, hidden=[16], horizon=4, population=8, n_elites=2)
    cartpole.learn_offline(collect(balance, "CartPole-v1", 400, seed=0), 100)
    probs, none = cartpole.behavior_plan(torch.zeros(3, 4), torch.Generator().manual_seed(0))
    assert none is None and probs.shape == (3, 4, 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 4))
    assert float(probs.min()) >= cartpole.config.behavior_min_std / 2  # the uniform share mixed in
    assert cartpole.plan(torch.zeros(3, 4)).actions.shape == (3, 4)
    with pytest.raises(ValueError, match="behavior_min_std"):
        BayesMPC("Pendulum-v1", behavior_min_std=1.5)


def test_behavior_std_power_narrows_only_spreads_narrower_than_uniform() -> None:
    """``sharpen_spread`` keeps spreads at or above a uniform's, shrinks narrower ones by their ratio
    to it raised to ``power - 1``; the plan's initial spreads follow it (then the floor)."""
    std = torch.tensor([0.05, 0.2, UNIFORM_STD / 2, UNIFORM_STD, 0.9, 2.0])
    assert torch.equal(sharpen_spread(std, 1.0), std)
    two = sharpen_spread(std, 2.0)
    torch.testing.assert_close(two[3:], std[3:])
    torch.testing.assert_close(two[2], torch.tensor(UNIFORM_STD / 4))
    torch.testing.assert_close(two[:3], std[:3] ** 2 / UNIFORM_STD)
    assert bool((sharpen_spread(std, 3.0)[:3] < two[:3]).all())

    def damping(obs: torch.Tensor) -> torch.Tensor:  # a smooth policy: the clone becomes sure of it
        return (-0.5 * obs[:, 2:3]).clamp(-2.0, 2.0)

    data = collect(damping, "Pendulum-v1", 600, seed=0, num_envs=2)
    agent = BayesMPC("Pendulum-v1", seed=0, hidden=[16], horizon=4, behavior_min_std=0.0)
    agent.learn_offline(data, 300)
    obs = data.observations[:5]
    mean1, std1 = agent.behavior_plan(obs, torch.Generator().manual_seed(0))
    agent.config.behavior_std_power = 2.0
    mean2, std2 = agent.behavior_plan(obs, torch.Generator().manual_seed(0))
    assert torch.equal(mean1, mean2)  # the starting plan is the clone's either way
    assert float(std1.max()) < UNIFORM_STD  # an expert's clone is narrower than a uniform
    torch.testing.assert_close(std2, std1**2 / UNIFORM_STD)
    with pytest.raises(ValueError, match="behavior_std_power"):
        BayesMPC("Pendulum-v1", behavior_std_power=0.5)


def test_behavior_prior_rescues_offline_bayes_mpc_on_expert_pendulum() -> None:
    """An expert's data (its action a function of the state, 10% random) let the model confound the
    torque's effect with the state's; plans far from the expert's actions exploit that error, and
    from hanging down the planner never swings up. Planning around the cloned policy does."""
    data = collect(swing_up, "Pendulum-v1", 10_000, seed=0, num_envs=4, epsilon=0.1)
    agent = BayesMPC("Pendulum-v1", seed=0, horizon=15, population=100, cem_iterations=3, buffer_size=10_000)
    agent.learn_offline(data, 1500)
    env = make_vec("Pendulum-v1", num_envs=3, max_episode_steps=100)
    with_prior = riskrl.evaluate(agent, env, 3, seed=100, bootstrap=False)
    agent.config.behavior_prior = False
    without = riskrl.evaluate(agent, env, 3, seed=100, bootstrap=False)
    # seed 100: two of the three episodes start hanging down (the scripted expert: about -120)
    assert with_prior.returns.min() > -250 and without.returns.min() < -600, (
        with_prior.returns,
        without.returns,
    )


def test_checkpoints_carry_the_behavior_policy_and_refuse_a_wrong_one(tmp_path) -> None:
    """The cloned policy's tensors are checked like every other (a wrong shape is refused, naming
    it); a checkpoint from before the behaviour prior (no such entry) loads and plans without it."""
    agent = BayesMPC(
        "Pendulum-v1", seed=0, hidden=[16], horizon=4, population=16, n_elites=4, buffer_size=500
    )
    agent.learn_offline(collect(swing_up, "Pendulum-v1", 300, seed=0), 30)
    path = agent.save(tmp_path / "offline.riskrl")
    manifest, tensors = read_parts(path)
    name = ref(manifest, "policy", "behavior", "layers.0.weight")
    tensors[name] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match="behavior"):
        BayesMPC.load(write_parts(tmp_path / "wrong.riskrl", manifest, tensors))
    manifest, tensors = read_parts(path)
    for key in manifest["state"]["policy"].pop("behavior").values():
        tensors.pop(key["__tensor__"])
    older = BayesMPC.load(write_parts(tmp_path / "older.riskrl", manifest, tensors))
    assert older.trained and not older.behavior_fitted
    assert older.plan(torch.zeros(2, 3)).actions.shape == (2, 4, 1)
