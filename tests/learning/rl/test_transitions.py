"""Chunk transitions: returns, discounts, padding and history indexing against hand-computed values."""

import numpy as np
import pytest

from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.learning.rl.chunk_env import ChunkEnv
from robot_rl.learning.rl.transitions import SOURCES, Transitions, chunk_transitions, store_transitions

SPEC = PolicySpec(obs=(FeatureSpec("state", (2,)),), action=FeatureSpec("action", (1,)), n_obs_steps=2, horizon=4,
                  n_action_steps=3, rate_hz=10.0)


def _episode(T):
    obs = {"state": np.stack([np.arange(T + 1), -np.arange(T + 1)], 1).astype(np.float32)}
    return obs, np.arange(T, dtype=np.float32)[:, None]


def test_returns_discounts_and_indexing():
    obs, actions = _episode(7)
    rewards = np.zeros(7)
    rewards[6] = 1.0
    t = chunk_transitions(obs, actions, rewards, True, SPEC, gamma=0.5)
    assert len(t) == 3                                     # chunks start at 0, 3, 6
    np.testing.assert_array_equal(t.steps, [3, 3, 1])
    np.testing.assert_allclose(t.rewards, [0, 0, 1.0])
    np.testing.assert_allclose(t.discounts, [0.125, 0.125, 0.0])   # terminal inside the last chunk
    np.testing.assert_array_equal(t.obs["state"][1, :, 0], [2, 3])  # history of the chunk starting at step 3
    np.testing.assert_array_equal(t.obs["state"][0, :, 0], [0, 0])  # padded with the first step
    np.testing.assert_array_equal(t.next_obs["state"][1, :, 0], [5, 6])
    np.testing.assert_array_equal(t.actions[2, :, 0], [6, 6, 6])     # padded with the last executed action
    assert t.dones.tolist() == [False, False, True]


def test_truncated_episode_bootstraps_and_rewards_are_discounted_within_chunk():
    obs, actions = _episode(4)
    t = chunk_transitions(obs, actions, np.array([1.0, 1.0, 1.0, 1.0]), False, SPEC, gamma=0.5,
                          interventions=np.array([0, 0, 0, 1]), source="demo", stride=1)
    assert len(t) == 4
    np.testing.assert_allclose(t.rewards, [1.75, 1.75, 1.5, 1.0])
    np.testing.assert_allclose(t.discounts, [0.125, 0.125, 0.25, 0.5])
    assert t.sources.tolist() == [SOURCES["demo"]] + [SOURCES["intervention"]] * 3
    assert t.interventions.tolist() == [False, True, True, True]


def test_select_and_concat_round_trip():
    obs, actions = _episode(7)
    t = chunk_transitions(obs, actions, np.zeros(7), False, SPEC, 0.9, extras={"noise": np.ones((3, 4, 1))})
    both = Transitions.concat([t.select([0]), t.select(slice(1, None))])
    np.testing.assert_array_equal(both.obs["state"], t.obs["state"])
    assert both.extras["noise"].shape == (3, 4, 1)
    with pytest.raises(ValueError, match="extras"):
        chunk_transitions(obs, actions, np.zeros(7), False, SPEC, 0.9, extras={"noise": np.ones((2, 4, 1))})


def test_store_transitions_match_recorded_episodes(reach_store):
    from robot_rl.data.episode_store import EpisodeStore

    store = EpisodeStore.open(reach_store)
    spec = PolicySpec(obs=(FeatureSpec("state", (7,), stream="ee_pos+ee_quat"),), action=FeatureSpec("action", (7,)),
                      n_obs_steps=2, horizon=8, n_action_steps=4, rate_hz=store.streams["action"].rate_hz)
    t = store_transitions(store, spec, gamma=0.99, stride=4)
    assert len(t) > 0 and set(t.episodes.tolist()) == {0, 1, 2}
    for ep in range(3):
        meta = store.episode_meta(ep)
        rows = t.episodes == ep
        assert (t.rewards[rows] > 0).sum() == int(meta["success"])   # sparse: one rewarded chunk on success
        if meta["success"]:
            assert t.dones[rows][-1] and t.rewards[rows][-1] > 0
        a, _ = store.read("action", ep)
        np.testing.assert_allclose(t.actions[rows][0], a[:4])
        pos, _ = store.read("ee_pos", ep)
        np.testing.assert_allclose(t.obs["state"][rows][1, -1, :3], pos[4], atol=1e-6)


def test_chunk_env_transitions_agree_with_chunk_rule():
    from robot_rl.sim.env import TwinEnv

    spec = PolicySpec(obs=(FeatureSpec("state", (3,), stream="ee_pos"),), action=FeatureSpec("action", (7,)),
                      n_obs_steps=2, horizon=8, n_action_steps=4, rate_hz=10.0)
    env = ChunkEnv(TwinEnv("reach", seed=0), spec, gamma=0.9, max_steps=10)
    obs = env.reset(seed=3)
    assert obs["state"].shape == (2, 3)
    steps = 0
    while True:
        s = env.step(np.zeros((4, 7)), extras={"noise": np.zeros(2)})
        steps += s.steps
        if s.done:
            break
    t = env.episode_transitions()
    env.close()
    assert steps == 10 and t.steps.tolist() == [4, 4, 2] and s.truncated
    np.testing.assert_allclose(t.discounts, [0.9 ** 4, 0.9 ** 4, 0.9 ** 2])
    np.testing.assert_allclose(t.next_obs["state"][-1], s.obs["state"])
