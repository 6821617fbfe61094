"""The bsuite bridge: bsuite's envs as gymnasium Envs, logged by bsuite's own CSV logger."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("bsuite")

from bsuite.environments.deep_sea import DeepSea

from riskrl.agents import BayesDQN
from riskrl.bsuite import BsuiteEnv, bsuite_ids, load_results


def _play(env: BsuiteEnv, mapping: np.ndarray, good: bool) -> tuple[float, int]:
    """One episode: always "right" (good) or always "left"; returns (return, steps)."""
    obs, _ = env.reset()
    size = mapping.shape[0]
    total, steps, done = 0.0, 0, False
    while not done:
        row, col = divmod(int(obs.argmax()), size)
        right = int(mapping[row, col])
        obs, r, term, trunc, info = env.step(right if good else 1 - right)
        total, steps, done = total + r, steps + 1, term or trunc
        assert not trunc
    assert term and not obs.any()  # bsuite's null observation after the last step
    assert set(info["bsuite_info"]) == {"total_bad_episodes", "denoised_return"}
    return total, steps


def test_bridge_episodes_are_read_by_bsuites_loader(tmp_path) -> None:
    env = BsuiteEnv("deep_sea/0", results_dir=tmp_path)  # N = 10, mapping_seed 42
    assert env.observation_space.shape == (100,) and env.action_space.n == 2
    assert env.bsuite_num_episodes == 10_000
    mapping = env.raw_env._action_mapping
    np.testing.assert_array_equal(mapping, DeepSea(size=10, mapping_seed=42)._action_mapping)
    pattern = [True, False, False, True, False, False, False, True, False, False, True, False]
    for good in pattern:
        ret, steps = _play(env, mapping, good)
        assert steps == 10
        assert ret == pytest.approx(0.99 if good else 0.0)
    env.close()
    df, sweep_vars = load_results(tmp_path)
    assert "agent_name" in sweep_vars
    assert (df.bsuite_id == "deep_sea/0").all() and (df["size"] == 10).all()
    # bsuite's logger writes at episodes 1..10 and 12 (its logarithmic schedule)
    assert df.episode.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12]
    bad = np.cumsum([not g for g in pattern])
    np.testing.assert_array_equal(df.total_bad_episodes, bad[df.episode - 1])
    np.testing.assert_array_equal(df.denoised_return, np.cumsum(pattern)[df.episode - 1])
    np.testing.assert_array_equal(df.steps, 10 * df.episode)


def test_agent_trains_on_the_bridge_and_bsuite_logs_it(tmp_path) -> None:
    env = BsuiteEnv("deep_sea/0", results_dir=tmp_path)
    agent = BayesDQN(env, seed=0, hidden=(16,), n_members=2, learning_starts=20, batch_size=8)
    agent.learn(200)
    df, _ = load_results(tmp_path)
    # 200 agent steps = 18 episodes of 10 steps plus one autoreset step each (18 * 11 = 198) + 2 steps;
    # bsuite's logger writes episodes 1..10, 12, 14 and 17
    assert env.bsuite_env._episode == 18
    assert df.episode.tolist() == [*range(1, 11), 12, 14, 17]
    assert (df.episode_len == 10).all() and (df.steps == 10 * df.episode).all()


def test_seeded_stochastic_bridge_is_reproducible() -> None:
    rewards = []
    for _ in range(2):
        env = BsuiteEnv("deep_sea_stochastic/0")
        env.reset(seed=3)
        rs = []
        for _ in range(40):
            _, r, term, _, _ = env.step(1)
            rs.append(r)
            if term:
                env.reset()
        rewards.append(rs)
    assert rewards[0] == rewards[1]


def test_bridge_errors_and_ids() -> None:
    assert bsuite_ids("deep_sea")[:2] == ("deep_sea/0", "deep_sea/1") and len(bsuite_ids("deep_sea")) == 21
    with pytest.raises(ValueError, match="unknown bsuite experiment"):
        bsuite_ids("deep_lake")
    with pytest.raises(ValueError, match="unknown bsuite id"):
        BsuiteEnv("deep_sea/99")
    env = BsuiteEnv("deep_sea/0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(2)
