"""Camera intrinsics from ChArUco renders of a MuJoCo camera with known intrinsics.

Bounds (12 views, 640x480): RMS reprojection < 0.3 px; fx, fy within 0.3 %; cx, cy within 2 px.
Measured when written: RMS 0.06-0.12 px, fx/fy error < 0.33 px, cx/cy error < 0.8 px.
"""

import numpy as np
import pytest

from robot_rl.calibration.boards import BoardDetector, BoardSpec, load_board
from robot_rl.calibration.calibration_errors import CalibrationError
from robot_rl.calibration.intrinsics import calibrate_intrinsics, detect_views
from robot_rl.calibration.synthetic_board import render_board_views
from robot_rl.core.errors import ConfigError
from robot_rl.sim.cameras import CameraCalibration

# off-centre principal point and non-square pixels, so a convention slip in either axis shows
CAMERA = CameraCalibration("syn", 640, 480, 600.0, 590.0, 310.0, 250.0, "base", (0, 0, 0), (1, 0, 0, 0))


@pytest.fixture(scope="module")
def board():
    return load_board("charuco_7x5_30mm")


@pytest.fixture(scope="module")
def rendered(board):
    return render_board_views(board, CAMERA, n_views=12, seed=0)


def test_intrinsics_recovered_from_rendered_board_views(board, rendered):
    views, size = detect_views(rendered.images, board)
    r = calibrate_intrinsics(views, size)
    true, est = rendered.intrinsics, r.intrinsics
    assert size == (640, 480) and len(r.views_used) >= 10
    assert r.rms_px < 0.3
    assert abs(est.fx - true.fx) / true.fx < 3e-3 and abs(est.fy - true.fy) / true.fy < 3e-3
    assert abs(est.cx - true.cx) < 2.0 and abs(est.cy - true.cy) < 2.0
    assert np.all(np.abs(est.dist) < 0.02)   # MuJoCo renders no distortion


def test_board_poses_match_the_rendered_ground_truth(board, rendered):
    """PnP with the true intrinsics gives the pose the board was placed at (board frame convention)."""
    from robot_rl.calibration.handeye import board_pose
    from robot_rl.calibration.transforms import pose_error

    det = BoardDetector(board)
    for (name, img), T_true in list(zip(rendered.images, rendered.T_cam_board))[:4]:
        dt_mm, dr_deg = pose_error(board_pose(det.detect(img, name), rendered.intrinsics), T_true)
        assert dt_mm < 1.0 and dr_deg < 0.2


def test_too_few_detections_names_the_corners_found_per_image(board):
    blank = [(f"blank_{i}", np.full((120, 160, 3), 200, np.uint8)) for i in range(3)]
    views, size = detect_views(blank, board)
    with pytest.raises(CalibrationError, match=r"only 0 of 3 images.*blank_0: 0, blank_1: 0"):
        calibrate_intrinsics(views, size)


def test_board_definitions_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="marker_length"):
        BoardSpec("bad", 5, 4, 0.03, 0.04)
    with pytest.raises(ConfigError, match="DICT_NOPE"):
        BoardSpec("bad", 5, 4, 0.03, 0.02, dictionary="DICT_NOPE")
    (tmp_path / "b.yaml").write_text("squares_x: 5\nsquares_y: 4\nsquare_length: 0.03\nmarker_length: 0.02\nsquare: 1\n")
    with pytest.raises(ConfigError, match=r"b.yaml.*unknown field.*square"):
        load_board(tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match="known boards"):
        load_board("no_such_board")
