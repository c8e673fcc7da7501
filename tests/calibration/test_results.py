"""Calibration results on disk: written per id, read back by load_calibration, never overwritten silently."""

import numpy as np
import pytest

from robot_rl.calibration import load_calibration
from robot_rl.calibration.intrinsics import Intrinsics
from robot_rl.calibration.calibration_files import (CameraExtrinsics, calibration_dir, write_handeye, write_intrinsics,
                                          write_latency)
from robot_rl.calibration.transforms import from_rvec, pose_error
from robot_rl.core.config import config_dir
from robot_rl.core.errors import ConfigError
from robot_rl.sim.cameras import load_camera_calibration

INTR = Intrinsics.from_values(640, 480, 600.5, 599.5, 321.25, 238.75, [0.01, -0.02, 0.0, 0.0, 0.001])
T_HAND_CAM = from_rvec([0.2, -0.1, 1.5], [0.07, 0.0, 0.04])


def _write_all(root, cal_id="lab-1-a"):
    d = calibration_dir("lab-1", cal_id, root)
    write_intrinsics(d, "lab-1", "wrist", INTR, {"rms_px": 0.1})
    write_handeye(d, "lab-1", "wrist", CameraExtrinsics("hand", T_HAND_CAM), "base", np.eye(4), {"rms_px": 0.1})
    write_latency(d, "lab-1", {"cam_wrist_rgb": 0.041}, {"robot": 0.05}, {})
    return d


def test_results_round_trip_through_load_calibration(tmp_path):
    d = _write_all(tmp_path)
    cal = load_calibration(d)
    assert cal.calibration_id == "lab-1-a" and cal.rig == "lab-1"
    np.testing.assert_allclose(cal.intrinsics["wrist"].K, INTR.K)
    np.testing.assert_allclose(cal.intrinsics["wrist"].dist, INTR.dist)
    assert cal.extrinsics["wrist"].parent == "hand"
    assert max(pose_error(cal.extrinsics["wrist"].T_parent_cam, T_HAND_CAM)) < 1e-6
    assert cal.latency_s == {"cam_wrist_rgb": 0.041} and cal.command_latency_s == {"robot": 0.05}
    # the generated cameras.yaml is what the twin reads (robot_rl.sim.cameras)
    cal_id, cams = load_camera_calibration(d / "cameras.yaml")
    assert cal_id == "lab-1-a" and cams["wrist"].fx == pytest.approx(600.5) and cams["wrist"].parent == "hand"


def test_load_by_rig_folder_picks_the_newest_and_by_id_searches_the_root(tmp_path):
    _write_all(tmp_path, "lab-1-a")
    _write_all(tmp_path, "lab-1-b")
    assert load_calibration(tmp_path / "lab-1").calibration_id == "lab-1-b"
    assert load_calibration("lab-1-a", root=tmp_path).path == tmp_path / "lab-1" / "lab-1-a"
    with pytest.raises(ConfigError, match="no-such-id"):
        load_calibration("no-such-id", root=tmp_path)


def test_the_twin_calibration_file_loads():
    cal = load_calibration(config_dir().parent / "calibration" / "twin")
    assert cal.calibration_id == "twin-v1" and set(cal.intrinsics) == {"front", "wrist"}
    assert cal.extrinsics["front"].parent == "base" and cal.latency_s == {}


def test_existing_results_are_not_overwritten_silently(tmp_path):
    d = _write_all(tmp_path)
    with pytest.raises(ConfigError, match="already calibrated"):
        write_intrinsics(d, "lab-1", "wrist", INTR, {})
    with pytest.raises(ConfigError, match="already calibrated"):
        write_latency(d, "lab-1", {}, {}, {})
    write_intrinsics(d, "lab-1", "wrist", INTR, {}, overwrite=True)


def test_a_bad_field_is_named(tmp_path):
    d = tmp_path / "rig" / "x"
    d.mkdir(parents=True)
    (d / "handeye.yaml").write_text("cameras:\n  wrist:\n    extrinsics: {parent: flange, position: [0, 0, 0], "
                                    "quat: [1, 0, 0, 0]}\n")
    with pytest.raises(ConfigError, match=r"handeye.yaml: cameras.wrist.extrinsics: parent must be one of"):
        load_calibration(d)
