"""WindowSampler: diffusion_policy windows on the policy grid, multi-rate alignment, episode splits."""

import numpy as np
import pytest

from robot_rl.core.errors import ConfigError, StaleDataError
from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.data.sampler import WindowSampler, split_episodes
from robot_rl.data.schema import StreamSpec
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter


def write_store(path, streams, episodes, metas=None):
    """episodes: list of {stream: (values, times)}; written through the real EpisodeWriter."""
    store = EpisodeStore.create(path, streams)
    with EpisodeWriter(store) as writer:
        for i, episode in enumerate(episodes):
            writer.begin_episode((metas or [{}] * len(episodes))[i])
            samples = [(t, name, v) for name, (vals, times) in episode.items() for v, t in zip(vals, times)]
            for t, name, v in sorted(samples, key=lambda s: s[0]):
                writer.append(name, v, t)
            writer.commit()
    return EpisodeStore.open(path)


def action_only(path, lengths, metas=None):
    """Episodes of a 10 Hz (1,) action whose value is 100 * episode + step."""
    streams = [StreamSpec("action", "float32", (1,), 10.0), StreamSpec("state", "float32", (1,), 10.0)]
    episodes = []
    for e, n in enumerate(lengths):
        t = np.arange(n) / 10.0
        v = (100 * e + np.arange(n, dtype=np.float32))[:, None]
        episodes.append({"action": (v, t), "state": (v, t)})
    return write_store(path, streams, episodes, metas)


def spec(n_obs=2, horizon=4, n_act=2, obs=None):
    obs = obs or (FeatureSpec("state", (1,)),)
    return PolicySpec(obs=obs, action=FeatureSpec("action", (1,)), n_obs_steps=n_obs, horizon=horizon,
                      n_action_steps=n_act)


def windows(sampler):
    return sampler.features["action"][sampler.rows(np.arange(len(sampler)))][..., 0]


def test_windows_replicate_edges_at_both_borders(tmp_path):
    sampler = WindowSampler(action_only(tmp_path / "s", [5]), spec(n_obs=2, horizon=4, n_act=2))
    # pad_before = 1, pad_after = 1: starts -1..2
    np.testing.assert_array_equal(windows(sampler), [[0, 0, 1, 2], [0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 4]])


def test_window_count_follows_diffusion_policy(tmp_path):
    sampler = WindowSampler(action_only(tmp_path / "s", [20]), spec(n_obs=2, horizon=16, n_act=8))
    assert len(sampler) == 20 - 16 + 1 + 7 + 1
    w = windows(sampler)
    assert (w[0, :2] == 0).all() and (w[-1, -7:] == 19).all()


def test_no_window_crosses_episodes(tmp_path):
    sampler = WindowSampler(action_only(tmp_path / "s", [5, 7, 6]), spec(n_obs=3, horizon=6, n_act=3))
    w = windows(sampler)
    episode_of = w // 100
    assert (episode_of == episode_of[:, :1]).all()
    assert len(w) == sum(n - 6 + 2 + 2 + 1 for n in [5, 7, 6])
    for i in range(len(sampler)):
        assert sampler.window_episode(i) == episode_of[i, 0]


def test_observation_steps_end_at_the_current_step(tmp_path):
    sampler = WindowSampler(action_only(tmp_path / "s", [6]), spec(n_obs=2, horizon=4, n_act=2))
    rows = sampler.rows(1)[:2]
    np.testing.assert_array_equal(sampler.features["state"][rows][:, 0], [0, 1])


def test_val_split_holds_whole_episodes_and_is_seeded(tmp_path):
    sampler = WindowSampler(action_only(tmp_path / "s", [5] * 10), spec())
    train, val = sampler.split(0.2, seed=3)
    assert len(val.episodes) == 2 and len(train.episodes) == 8
    assert set(train.episodes).isdisjoint(val.episodes)
    assert set(train.episodes) | set(val.episodes) == set(range(10))
    val_eps = set((windows(val) // 100).ravel().tolist())
    assert val_eps == set(val.episodes.tolist())
    assert len(train) + len(val) == len(sampler)
    again = sampler.split(0.2, seed=3)[1]
    np.testing.assert_array_equal(again.episodes, val.episodes)


def test_split_keeps_one_training_episode():
    train, val = split_episodes(np.arange(2), 0.9, seed=0)
    assert len(train) == 1 and len(val) == 1
    train, val = split_episodes(np.arange(4), 0.0)
    assert len(val) == 0
    with pytest.raises(ConfigError, match="val_ratio"):
        split_episodes(np.arange(4), 1.0)


def test_filters_by_success_and_source(tmp_path):
    metas = [{"success": True, "source": "teleop"}, {"success": False, "source": "teleop"},
             {"success": True, "source": "policy"}, {}]
    store = action_only(tmp_path / "s", [5, 5, 5, 5], metas)
    assert WindowSampler(store, spec(), success=True).episodes.tolist() == [0, 2]
    assert WindowSampler(store, spec(), success=True, sources=["teleop"]).episodes.tolist() == [0]
    assert WindowSampler(store, spec(), episodes=[3, 1]).episodes.tolist() == [3, 1]


def multirate(path, camera_gap=None, camera_start=0.0):
    """Actions at 10 Hz, state at 100 Hz (value = time), camera at 30 Hz (pixel value = frame index)."""
    streams = [StreamSpec("action", "float32", (2,), 10.0),
               StreamSpec("state", "float64", (1,), 100.0),
               StreamSpec("cam", "uint8", (4, 4, 3), 30.0, codec="png", interp="hold")]
    t_act = np.arange(20) / 10.0 + 0.05
    t_state = np.arange(0, 2.1, 0.01)
    t_cam = np.arange(camera_start, 2.1, 1 / 30)
    if camera_gap is not None:
        t_cam = t_cam[(t_cam < camera_gap[0]) | (t_cam > camera_gap[1])]
    frames = np.stack([np.full((4, 4, 3), i, np.uint8) for i in range(len(t_cam))])
    episode = {"action": (np.stack([t_act, -t_act], 1), t_act), "state": (t_state[:, None], t_state),
               "cam": (frames, t_cam)}
    return write_store(path, streams, [episode]), t_act, t_cam


def test_multirate_streams_are_aligned_to_the_action_grid(tmp_path):
    store, t_act, t_cam = multirate(tmp_path / "s")
    s = PolicySpec(obs=(FeatureSpec("state", (1,)), FeatureSpec("cam", (3, 4, 4), kind="rgb")),
                   action=FeatureSpec("action", (2,)), n_obs_steps=2, horizon=4, n_action_steps=2)
    sampler = WindowSampler(store, s)
    np.testing.assert_allclose(sampler.grid.times, t_act)
    np.testing.assert_allclose(sampler.features["state"][:, 0], t_act, atol=1e-6)  # linear: state = time
    expected = np.searchsorted(t_cam, t_act, side="right") - 1
    np.testing.assert_array_equal(sampler.image_rows["cam"], expected)
    assert (t_cam[expected] <= t_act).all()


def test_stale_camera_raises_and_can_skip_the_episode(tmp_path):
    store, _, _ = multirate(tmp_path / "s", camera_gap=(0.8, 1.3))
    s = PolicySpec(obs=(FeatureSpec("cam", (3, 4, 4), kind="rgb"),), action=FeatureSpec("action", (2,)),
                   n_obs_steps=2, horizon=4, n_action_steps=2)
    with pytest.raises(StaleDataError, match=r"cam\[episode 0\].*max staleness"):
        WindowSampler(store, s)
    assert len(WindowSampler(store, s, max_staleness={"cam": 0.6})) > 0
    with pytest.warns(UserWarning, match="skipping episode 0"):
        assert len(WindowSampler(store, s, on_stale="skip")) == 0


def test_feature_concatenates_plus_joined_streams(tmp_path):
    store = action_only(tmp_path / "s", [6])
    s = spec(obs=(FeatureSpec("both", (2,), stream="state+action"),))
    sampler = WindowSampler(store, s)
    np.testing.assert_array_equal(sampler.features["both"][:, 0], sampler.features["both"][:, 1])
    with pytest.raises(ConfigError, match="spec both has shape"):
        WindowSampler(store, spec(obs=(FeatureSpec("both", (3,), stream="state+action"),)))


def test_grid_steps_before_a_late_camera_are_dropped_with_a_warning(tmp_path):
    store, t_act, t_cam = multirate(tmp_path / "s", camera_start=0.31)
    s = PolicySpec(obs=(FeatureSpec("cam", (3, 4, 4), kind="rgb"),), action=FeatureSpec("action", (2,)),
                   n_obs_steps=2, horizon=4, n_action_steps=2)
    with pytest.warns(UserWarning, match=r"dropped 3 grid steps before streams \['cam'\] start"):
        sampler = WindowSampler(store, s)
    np.testing.assert_allclose(sampler.grid.times, t_act[3:])
    np.testing.assert_allclose(sampler.features["action"][:, 0], t_act[3:], atol=1e-6)
