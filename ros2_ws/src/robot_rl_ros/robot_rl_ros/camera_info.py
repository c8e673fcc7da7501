"""CameraInfo samples (kind camera_info) from a calibration file entry or a device's intrinsics."""

from __future__ import annotations

import numpy as np

from robot_rl.runtime.transport import Sample


def info_from_calibration(c, t: float, frame: str) -> Sample:
    """From a robot_rl.sim.cameras.CameraCalibration (calibration/<rig>/cameras.yaml; undistorted)."""
    k = np.array([c.fx, 0.0, c.cx, 0.0, c.fy, c.cy, 0.0, 0.0, 1.0])
    return Sample(t, {"k": k, "size": np.array([c.width, c.height])}, frame)


def info_from_intrinsics(i: dict, t: float, frame: str) -> Sample:
    """From a device intrinsics dict (fx, fy, ppx, ppy, width, height, coeffs; RealSenseCamera.intrinsics)."""
    k = np.array([i["fx"], 0.0, i["ppx"], 0.0, i["fy"], i["ppy"], 0.0, 0.0, 1.0])
    fields = {"k": k, "size": np.array([i["width"], i["height"]])}
    if any(i.get("coeffs") or ()):
        fields["d"] = np.asarray(i["coeffs"], float)
    return Sample(t, fields, frame)
