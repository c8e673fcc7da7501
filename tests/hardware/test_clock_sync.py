"""Device-clock to host-clock mapping on synthetic timestamps with a known ground truth."""

import numpy as np
import pytest

from robot_rl.hardware.clock_sync import DeviceClockMapper


def synthetic_stream(n=900, fps=30.0, offset=1234.5, drift_ppm=80.0, min_delay=0.004, jitter=0.003, seed=0):
    """Device timestamps of frames and their host receive times: exposure + min delay + exponential jitter."""
    rng = np.random.default_rng(seed)
    device_t = 50.0 + np.arange(n) / fps
    exposure_host = offset + device_t + drift_ppm * 1e-6 * (device_t - device_t[0])
    receive_t = exposure_host + min_delay + rng.exponential(jitter, n)
    return device_t, receive_t, exposure_host + min_delay


def test_mapping_recovers_offset_and_drift_within_a_fraction_of_a_millisecond():
    device_t, receive_t, truth = synthetic_stream()
    mapper = DeviceClockMapper(window=600)
    mapped = np.array([mapper.update(d, r) for d, r in zip(device_t, receive_t)])
    steady = slice(300, None)
    error = np.abs(mapped[steady] - truth[steady])
    assert error.max() < 0.5e-3  # vs 3 ms mean jitter on the receive times
    assert mapper.mapping.drift * 1e6 == pytest.approx(80.0, abs=20.0)
    assert mapper.mapping.mapping_error_s < 0.5e-3
    assert mapper.mapping.delay_p50_s == pytest.approx(0.003 * np.log(2), abs=1e-3)


def test_mapped_times_are_never_later_than_receive_times():
    device_t, receive_t, _ = synthetic_stream(n=200)
    mapper = DeviceClockMapper(window=100)
    for d, r in zip(device_t, receive_t):
        assert mapper.update(d, r) <= r + 1e-12


def test_device_clock_jumping_back_restarts_the_estimate():
    mapper = DeviceClockMapper()
    mapper.update(10.0, 100.0)
    mapper.update(10.033, 100.04)
    assert mapper.update(0.5, 200.0) == pytest.approx(200.0)
    assert mapper.resets == 1 and mapper.mapping.samples == 1


def test_a_capture_delivered_twice_counts_once_with_its_earliest_arrival():
    mapper = DeviceClockMapper()
    mapper.update(1.0, 101.0)
    assert mapper.update(1.0, 101.5) == pytest.approx(101.0)  # the second piece does not restart the estimate
    assert mapper.resets == 0 and mapper.mapping.samples == 1
