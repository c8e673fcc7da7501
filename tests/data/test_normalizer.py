"""Normalizer statistics streamed over a store, and the affine contract for checkpoints."""

import numpy as np
import pytest

from robot_rl.core.errors import ConfigError
from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.data.normalizer_stats import NormalizerStats, RunningStats, compute_stats, stream_stats
from robot_rl.data.schema import StreamSpec
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter

SPEC = PolicySpec(obs=(FeatureSpec("state", (4,), stream="joint_pos+gripper"),
                       FeatureSpec("cam", (3, 8, 8), kind="rgb", normalize="image")),
                  action=FeatureSpec("action", (2,), normalize="limits"))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Three episodes of random joint_pos (3,), a constant gripper (1,) and actions (2,); returns the
    store and the raw arrays per episode."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("norm") / "store"
    store = EpisodeStore.create(path, [StreamSpec("action", "float32", (2,), 10.0),
                                       StreamSpec("joint_pos", "float64", (3,), 100.0),
                                       StreamSpec("gripper", "float32", (1,), 100.0)])
    raw = []
    with EpisodeWriter(store) as writer:
        for e, n in enumerate([300, 170, 420]):
            ep = {"joint_pos": rng.normal([0, 5, -3], [1, 0.1, 10], size=(n, 3)),
                  "gripper": np.full((n, 1), 0.04, np.float32),
                  "action": rng.uniform(-2, 7, size=(n // 10, 2)).astype(np.float32)}
            writer.begin_episode({"success": e != 1})
            for name, values in ep.items():
                rate = 10.0 if name == "action" else 100.0
                for i, v in enumerate(values):
                    writer.append(name, v, i / rate)
            writer.commit()
            raw.append(ep)
    return EpisodeStore.open(path), raw


def test_running_stats_match_numpy_across_blocks():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(1000, 5))
    running = RunningStats(5)
    for block in np.array_split(x, [1, 7, 300, 301, 999]):
        running.update(block)
    s = running.stats()
    np.testing.assert_allclose(s["mean"], x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(s["std"], x.std(0), rtol=1e-5)
    np.testing.assert_allclose(s["min"], x.min(0), rtol=1e-6)
    np.testing.assert_allclose(s["max"], x.max(0), rtol=1e-6)


def test_store_stats_equal_numpy_on_the_full_data(recorded):
    store, raw = recorded
    stats = compute_stats(store, SPEC).stats
    state = np.concatenate([np.concatenate([ep["joint_pos"], ep["gripper"]], 1) for ep in raw])
    action = np.concatenate([ep["action"] for ep in raw])
    for key, x in (("state", state), ("action", action)):
        np.testing.assert_allclose(stats[key]["mean"], x.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stats[key]["std"], x.std(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stats[key]["min"], x.min(0), rtol=1e-6)
        np.testing.assert_allclose(stats[key]["max"], x.max(0), rtol=1e-6)


def test_small_blocks_and_episode_selection(recorded):
    store, raw = recorded
    s = stream_stats(store, "joint_pos", episodes=[2, 0], block_rows=64).stats()
    x = np.concatenate([raw[0]["joint_pos"], raw[2]["joint_pos"]])
    np.testing.assert_allclose(s["mean"], x.mean(0), rtol=1e-5)
    successful = compute_stats(store, SPEC, success=True).stats["action"]
    np.testing.assert_allclose(successful["max"], np.concatenate([raw[0]["action"], raw[2]["action"]]).max(0))


def test_limits_map_data_to_minus_one_one_and_guard_constant_dims(recorded):
    store, raw = recorded
    norm = compute_stats(store, SPEC)
    action = np.concatenate([ep["action"] for ep in raw])
    y = norm.normalize("action", action)
    np.testing.assert_allclose(y.min(0), -1.0, atol=1e-5)
    np.testing.assert_allclose(y.max(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(norm.unnormalize("action", y), action, rtol=1e-5, atol=1e-5)
    state = norm.normalize("state", np.concatenate([raw[0]["joint_pos"], raw[0]["gripper"]], 1))
    assert np.all(np.isfinite(state)) and np.all(state[:, 3] == 0.0)  # constant gripper -> 0
    scale, offset = norm.affine("cam")
    assert scale.shape == (3, 1, 1) and np.allclose(scale, 1 / 255) and np.all(offset == 0)


def test_gaussian_mode_guards_zero_std():
    norm = NormalizerStats({"x": {"min": np.zeros(2), "max": np.ones(2), "mean": np.array([1.0, 2.0]),
                                  "std": np.array([0.5, 0.0])}}, {"x": "gaussian"})
    scale, offset = norm.affine("x")
    assert np.all(np.isfinite(scale)) and scale[0] == 2.0
    np.testing.assert_allclose(norm.normalize("x", np.array([[1.0, 2.0]])), [[0.0, 0.0]])


def test_flat_round_trip_and_agreement_with_the_policy_normalizer(recorded):
    store, _ = recorded
    norm = compute_stats(store, SPEC)
    flat = norm.to_flat()
    assert {"state.scale", "state.offset", "state.min", "state.std", "action.mean", "cam.scale"} <= set(flat)
    assert all(v.dtype == np.float32 for v in flat.values())
    back = NormalizerStats.from_flat(flat, SPEC)
    for key in ("state", "action"):
        for a, b in zip(back.affine(key), norm.affine(key)):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match="unexpected array 'state.bogus'"):
        NormalizerStats.from_flat({**flat, "state.bogus": np.zeros(1)}, SPEC)


def test_shape_mismatch_names_the_feature(recorded):
    store, _ = recorded
    bad = PolicySpec(obs=(FeatureSpec("state", (3,), stream="joint_pos+gripper"),), action=FeatureSpec("action", (2,)))
    with pytest.raises(ConfigError, match="spec state has shape"):
        compute_stats(store, bad)
