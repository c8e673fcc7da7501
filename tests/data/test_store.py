"""Episode store: layout, round trip, visibility on commit, bad input, fsspec URLs."""

import json

import numpy as np
import pytest
import zarr

from robot_rl.core.errors import StaleDataError, StoreError
from robot_rl.data.align import sample_at
from robot_rl.data.schema import EpisodeMeta, StreamSpec
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter

from .conftest import record_episode, small_specs


def test_round_trip_keeps_values_and_timestamps_per_stream(store, store_path):
    with EpisodeWriter(store) as w:
        sent = [record_episode(w, 1.0, success=True), record_episode(w, 0.5, t0=5.0, success=False)]
    r = EpisodeStore.open(store_path)
    assert r.n_episodes == 2
    for ep, episode_sent in enumerate(sent):
        for name, (values, times) in episode_sent.items():
            got, t = r.read(name, ep)
            np.testing.assert_array_equal(t, times)
            if name == "cam_front_rgb":  # jpeg is lossy
                assert np.abs(got.astype(int) - values.astype(int)).mean() < 3
            else:
                np.testing.assert_array_equal(got, values)
    assert [m["success"] for m in r.meta_list()] == [True, False]


def test_layout_is_diffusion_policy_compatible(store, store_path):
    with EpisodeWriter(store) as w:
        record_episode(w, 1.0)
        record_episode(w, 2.0)
    g = zarr.open_group(str(store_path), mode="r")
    np.testing.assert_array_equal(g["meta/episode_ends"][:], [10, 30])  # index stream: action at 10 Hz
    assert g["data/action"].shape[1:] == (7,)


def test_episode_is_invisible_until_commit(store, store_path):
    with EpisodeWriter(store) as w:
        record_episode(w, 1.0)
        w.begin_episode(EpisodeMeta(task="reach", source="teleop"))
        for i in range(50):
            w.append("joint_pos", np.zeros(7), i * 0.01)
        w.wait()
        assert EpisodeStore.open(store_path).n_episodes == 1
        w.commit(success=True)
        assert EpisodeStore.open(store_path).n_episodes == 2


def test_discard_leaves_no_trace_and_next_episode_reuses_rows(store, store_path):
    with EpisodeWriter(store) as w:
        record_episode(w, 1.0)
        w.begin_episode(EpisodeMeta())
        for i in range(30):
            w.append("joint_pos", np.full(7, -1.0), i * 0.01)
        w.discard()
        record_episode(w, 1.0)
    r = EpisodeStore.open(store_path)
    assert r.n_episodes == 2
    v, _ = r.read("joint_pos", 1)
    assert len(v) == 100 and np.all(v >= 0)


def test_multirate_streams_keep_own_counts(store, store_path):
    with EpisodeWriter(store) as w:
        record_episode(w, 2.0)
    r = EpisodeStore.open(store_path)
    assert r.episode(0).length("action") == 20
    assert r.episode(0).length("joint_pos") == 200
    assert r.episode(0).length("cam_front_rgb") == 60


@pytest.mark.parametrize(
    "stream, value, t, match",
    [
        ("nope", np.zeros(7), 0.0, "unknown stream 'nope'"),
        ("joint_pos", np.zeros(6), 0.0, r"shape \(6,\) != declared \(7,\)"),
        ("cam_front_rgb", np.zeros((32, 32, 3), np.float32), 0.0, "dtype float32 cannot be stored as uint8"),
        ("joint_pos", np.zeros(7), float("nan"), "timestamp nan"),
    ],
)
def test_bad_append_is_a_clear_error(store, stream, value, t, match):
    with EpisodeWriter(store) as w:
        w.begin_episode(EpisodeMeta())
        with pytest.raises(StoreError, match=match):
            w.append(stream, value, t)
        w.discard()


def test_non_monotonic_time_is_rejected_naming_the_values(store):
    with EpisodeWriter(store) as w:
        w.begin_episode(EpisodeMeta())
        w.append("joint_pos", np.zeros(7), 1.0)
        with pytest.raises(StoreError, match=r"timestamp 0.5 .*previous 1.0"):
            w.append("joint_pos", np.zeros(7), 0.5)
        w.discard()


def test_reading_missing_episode_names_the_index(store, store_path):
    with EpisodeWriter(store) as w:
        record_episode(w, 0.5)
    with pytest.raises(StoreError, match="episode 3 does not exist .store has 1"):
        EpisodeStore.open(store_path).read("action", 3)


def test_opening_a_non_store_is_a_clear_error(tmp_path):
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    plain.create_array("x", shape=(3,), dtype="f4")
    with pytest.raises(StoreError, match="not a robot_rl episode store"):
        EpisodeStore.open(tmp_path / "plain.zarr")
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(StoreError, match="no episode store here"):
        EpisodeStore.open(tmp_path / "file.txt")
    with pytest.raises(StoreError, match="does not exist"):
        EpisodeStore.open(tmp_path / "missing.zarr")


def test_bad_stream_specs_are_rejected():
    with pytest.raises(StoreError, match="must match"):
        StreamSpec("bad name", "float32", (3,), 10.0)
    with pytest.raises(StoreError, match="jpeg needs uint8"):
        StreamSpec("img", "uint16", (8, 8, 3), 30.0, codec="jpeg")
    with pytest.raises(StoreError, match="rate_hz must be a positive number"):
        StreamSpec("x", "float32", (3,), 0.0)


def test_second_writer_is_refused(store):
    with EpisodeWriter(store):
        with pytest.raises(StoreError, match="another process is writing"):
            EpisodeWriter(EpisodeStore.open(store.path, mode="a"))


def test_full_queue_drops_and_counts_instead_of_blocking(store, store_path):
    with EpisodeWriter(store, max_queue_bytes=32 * 32 * 3 * 2) as w:
        w.begin_episode(EpisodeMeta())
        accepted = [w.append("cam_front_rgb", np.zeros((32, 32, 3), np.uint8), i / 30) for i in range(200)]
        w.commit()
    assert not all(accepted)
    meta = EpisodeStore.open(store_path).episode_meta(0)
    assert meta["dropped"]["cam_front_rgb"] == accepted.count(False)
    assert EpisodeStore.open(store_path).episode(0).length("cam_front_rgb") == accepted.count(True)


def test_store_on_fsspec_memory_url():
    url = "memory://robot_rl_test/demo.zarr"
    store = EpisodeStore.create(url, small_specs())
    with EpisodeWriter(store) as w:
        sent = record_episode(w, 1.0)
    r = EpisodeStore.open(url)
    assert r.n_episodes == 1
    np.testing.assert_array_equal(r.read("joint_pos", 0)[0], sent["joint_pos"][0])


def test_sample_at_never_uses_a_stale_sample_silently():
    t = np.array([0.0, 0.1, 0.2])
    v = np.array([[0.0], [1.0], [2.0]])
    np.testing.assert_allclose(sample_at(v, t, 0.15, "hold", 0.1), [1.0])
    np.testing.assert_allclose(sample_at(v, t, 0.15, "linear", 0.2), [1.5])
    with pytest.raises(StaleDataError, match="ms old"):
        sample_at(v, t, 0.5, "hold", 0.1)
    with pytest.raises(StaleDataError, match="before the first sample"):
        sample_at(v, t, -0.1, "hold", 0.1)


def test_episode_info_is_json(store, store_path):
    with EpisodeWriter(store) as w:
        record_episode(w, 0.5, task="lift")
    raw = zarr.open_group(str(store_path), mode="r")["meta/episode_info"][0]
    assert json.loads(str(raw))["task"] == "lift"
