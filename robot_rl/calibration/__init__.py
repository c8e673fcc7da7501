"""Layer 2: calibration of a rig from board images, robot poses and recorded episodes.

Camera intrinsics (ChArUco + OpenCV), hand-eye extrinsics (eye-in-hand, eye-to-hand; closed form +
reprojection refinement), per-device latencies (cross-correlation of commanded and measured motion), the
results under calibration/<rig>/<calibration_id>/ and `load_calibration`, plus synthetic MuJoCo-twin data
with known ground truth. `robot-rl calibrate` is the command line.
"""

from robot_rl.calibration.calibration_errors import CalibrationError
from robot_rl.calibration.calibration_files import Calibration, CameraExtrinsics, load_calibration

__all__ = ["Calibration", "CalibrationError", "CameraExtrinsics", "load_calibration"]
