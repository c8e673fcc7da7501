"""Latency by cross-correlation: arrays with a known delay, and a twin episode with an injected camera
latency recorded through the ordinary episode recorder.

Bounds: a pure delay between 20 Hz streams is recovered to 1 ms (sub-sample); the twin's wrist camera
latency (50 ms injected, 4 s episode) to 10 ms; shifting the measured arm stream by 23.7 ms shifts the
arm's lag by 23.7 ms to 1 ms. Measured when written: 0.2 ms; camera errors -4.4, -5.3, -3.5, +5.2,
-0.5 ms on seeds 0-4; < 0.1 ms.
"""

import numpy as np
import pytest

from robot_rl.calibration.calibration_errors import CalibrationError
from robot_rl.calibration.latency import estimate_lag, velocity
from robot_rl.calibration.store_latency import LatencyOptions, estimate_store_latencies
from robot_rl.calibration.synthetic_latency import record_latency_episode
from robot_rl.data.episode_store import EpisodeStore

CAMERA_DELAY_S = 0.05


def _random_path(seed: int):
    rng = np.random.default_rng(seed)
    knots_t, knots = np.linspace(0, 10.5, 60), np.cumsum(rng.normal(size=(60, 3)), axis=0) * 0.02
    return lambda t: np.stack([np.interp(t, knots_t, knots[:, i]) for i in range(3)], axis=1)


def test_pure_delay_between_20hz_streams_is_found_below_the_sample_period():
    path, delay = _random_path(0), 0.0373
    t_cmd = np.arange(0, 10, 0.05)
    t_meas = t_cmd + 0.013                       # its own clock phase
    est = estimate_lag(*velocity(t_cmd, path(t_cmd)), *velocity(t_meas, path(t_meas - delay)))
    assert abs(est.lag_s - delay) < 1e-3 and est.peak_corr > 0.95


def test_a_lag_beyond_the_search_window_is_an_error():
    path = _random_path(1)
    t = np.arange(0, 10, 0.05)
    with pytest.raises(CalibrationError, match="edge of the search window"):
        estimate_lag(*velocity(t, path(t)), *velocity(t, path(t - 0.3)), max_lag_s=0.1)


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    path = tmp_path_factory.mktemp("latency") / "shake.zarr"
    return record_latency_episode(path, {"cam_wrist_rgb": CAMERA_DELAY_S}, duration_s=4.0, seed=0)


def test_injected_camera_latency_is_recovered_from_a_twin_episode(episode):
    store = EpisodeStore.open(episode.store)
    assert store.episode_meta(0)["calibration_id"] == "twin-v1"
    r = estimate_store_latencies(store, LatencyOptions(camera_mounts={"cam_wrist_rgb": "hand"}))
    err_ms = (r.latency_s()["cam_wrist_rgb"] - CAMERA_DELAY_S) * 1e3
    assert abs(err_ms) < 10.0, err_ms
    assert r.cameras["cam_wrist_rgb"].peak_corr > 0.8
    # the arm follows its commanded target late (controller tracking; no closed-form ground truth)
    assert 0.0 < r.command_latency_s()["robot"] < 0.15 and r.command["robot"].peak_corr > 0.9


def test_delaying_the_measured_arm_stream_delays_the_arm_lag_by_as_much(episode):
    store = EpisodeStore.open(episode.store)
    cmd, t_cmd = store.read("ee_target_pos", 0)
    meas, t_meas = store.read("ee_pos", 0)
    base = estimate_lag(*velocity(t_cmd, cmd), *velocity(t_meas, meas), max_lag_s=0.3)
    later = estimate_lag(*velocity(t_cmd, cmd), *velocity(t_meas + 0.0237, meas), max_lag_s=0.3)
    assert abs((later.lag_s - base.lag_s) - 0.0237) < 1e-3


def test_missing_streams_are_reported_not_guessed(episode):
    store = EpisodeStore.open(episode.store)
    opts = LatencyOptions(devices={"conveyor": ("belt_cmd", "belt_pos", 1.0)}, cameras=[])
    with pytest.raises(CalibrationError, match=r"conveyor: streams \['belt_cmd', 'belt_pos'\] not in the store"):
        estimate_store_latencies(store, opts)


def test_camera_frames_of_the_episode_serve_as_calibration_images(episode):
    from robot_rl.calibration.sources import iter_images

    frames = list(iter_images(f"store:{episode.store}:cam_wrist_rgb", every=30))
    assert [n for n, _ in frames][:2] == ["ep0_f0", "ep0_f30"] and frames[0][1].shape == (128, 128, 3)
