"""Hand-eye calibration on twin renders with exact robot poses (eye-in-hand: wrist camera, board on the
table; eye-to-hand: front camera, board held by the hand), intrinsics from the compiled model.

Bounds (10 views, 640x480): camera pose error < 1 mm and < 0.1 deg; refined reprojection RMS < 0.2 px
and below the closed form's. Measured when written: 0.03-0.13 mm, 0.011-0.013 deg, 0.05-0.07 px.
"""

import numpy as np
import pytest

from robot_rl.calibration.boards import BoardDetector, load_board
from robot_rl.calibration.calibration_errors import CalibrationError
from robot_rl.calibration.handeye import HandEyeView, calibrate_handeye, park_martin
from robot_rl.calibration.synthetic_handeye import render_handeye_views
from robot_rl.calibration.transforms import from_rvec, invert, pose_error


BOARD = "charuco_7x5_30mm"


@pytest.fixture(scope="module")
def rendered():
    cache = {}

    def get(mode):
        if mode not in cache:
            cache[mode] = render_handeye_views(load_board(BOARD), mode, n_views=10, seed=0)
        return cache[mode]
    return get


@pytest.mark.parametrize("mode", ["eye_in_hand", "eye_to_hand"])
def test_handeye_recovers_the_twin_camera_pose(mode, rendered):
    board = load_board(BOARD)
    data = rendered(mode)
    det = BoardDetector(board)
    views = [HandEyeView(T, det.detect(img, name)) for (name, img), T in zip(data.images, data.T_base_hand)]
    r = calibrate_handeye(views, data.intrinsics, mode)
    dt_mm, dr_deg = pose_error(r.T_parent_cam, data.T_parent_cam)
    assert r.parent == ("hand" if mode == "eye_in_hand" else "base")
    assert len(r.views_used) >= 7
    assert dt_mm < 1.0 and dr_deg < 0.1, (dt_mm, dr_deg)
    bt_mm, br_deg = pose_error(r.T_parent_board, data.T_parent_board)
    assert bt_mm < 1.0 and br_deg < 0.1
    assert r.rms_px < 0.2 and r.rms_px <= r.initial_rms_px


def test_cli_calibrates_from_an_image_folder_and_a_poses_file(rendered, tmp_path, capsys):
    """The real-data path: PNG files, a poses.yaml of flange poses, intrinsics from a calibration folder."""
    import cv2

    from robot_rl.calibration import load_calibration
    from robot_rl.calibration.calibration_files import write_intrinsics
    from robot_rl.calibration.transforms import to_pos_quat
    from robot_rl.cli import main
    from robot_rl.core.config import save_yaml

    data = rendered("eye_in_hand")
    images = tmp_path / "images"
    images.mkdir()
    poses = {}
    for (name, img), T in zip(data.images, data.T_base_hand):
        cv2.imwrite(str(images / f"{name}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        pos, quat = to_pos_quat(T)
        poses[name] = {"position": pos, "quat": quat}
    save_yaml({"poses": poses}, images / "poses.yaml")
    intr_dir = tmp_path / "intr"
    write_intrinsics(intr_dir, "panda_twin", "wrist", data.intrinsics, {})
    assert main(["calibrate", "handeye", "camera=wrist", f"images={images}", f"handeye.poses={images / 'poses.yaml'}",
                 f"handeye.intrinsics={intr_dir}", f"calibration_dir={tmp_path / 'cal'}", "calibration_id=he-1",
                 "progress=false", f"out={tmp_path / 'run'}"]) == 0
    cal = load_calibration(tmp_path / "cal" / "panda_twin" / "he-1")
    dt_mm, dr_deg = pose_error(cal.extrinsics["wrist"].T_parent_cam, data.T_parent_cam)
    assert cal.extrinsics["wrist"].parent == "hand" and dt_mm < 1.0 and dr_deg < 0.1
    # a pose missing for an image is named
    del poses["view_003"]
    save_yaml({"poses": poses}, images / "poses.yaml")
    assert main(["calibrate", "handeye", "camera=wrist", f"images={images}", f"handeye.poses={images / 'poses.yaml'}",
                 f"out={tmp_path / 'run2'}"]) == 1
    assert "view_003" in capsys.readouterr().err


def test_park_martin_solves_exact_motions():
    rng = np.random.default_rng(1)
    X = from_rvec(rng.normal(size=3), rng.normal(size=3) * 0.1)
    A = [from_rvec(rng.normal(size=3), rng.normal(size=3) * 0.3) for _ in range(6)]
    B = [invert(X) @ a @ X for a in A]
    dt_mm, dr_deg = pose_error(park_martin(A, B), X)
    assert dt_mm < 1e-6 and dr_deg < 1e-6


def test_rotations_about_one_axis_are_refused():
    X = from_rvec([0.1, 0.2, 0.3], [0.01, 0.02, 0.03])
    A = [from_rvec([0, 0, a], [a, 0, 0]) for a in (0.3, 0.6, 1.0)]
    with pytest.raises(CalibrationError, match="two non-parallel axes"):
        park_martin(A, [invert(X) @ a @ X for a in A])


def test_too_few_views_names_the_corners_per_image():
    from robot_rl.calibration.boards import BoardView
    from robot_rl.calibration.intrinsics import Intrinsics

    empty = BoardView("img_7", np.zeros(0, np.int32), np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32))
    with pytest.raises(CalibrationError, match="img_7: 0"):
        calibrate_handeye([HandEyeView(np.eye(4), empty)], Intrinsics.from_values(64, 48, 50, 50, 32, 24))


def test_opencv_methods_need_a_cv2_build_that_exposes_calibrateHandEye(rendered):
    import cv2

    data = rendered("eye_in_hand")
    det = BoardDetector(load_board(BOARD))
    views = [HandEyeView(T, det.detect(img, name)) for (name, img), T in zip(data.images, data.T_base_hand)]
    if hasattr(cv2, "calibrateHandEye"):
        r = calibrate_handeye(views, data.intrinsics, "eye_in_hand", method="opencv_park")
        assert max(pose_error(r.T_parent_cam, data.T_parent_cam)) < 1.0
    else:
        with pytest.raises(CalibrationError, match="does not expose cv2.calibrateHandEye.*park_martin"):
            calibrate_handeye(views, data.intrinsics, "eye_in_hand", method="opencv_park")
