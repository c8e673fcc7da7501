"""Errors of the calibration layer."""

from robot_rl.core.errors import RobotRLError


class CalibrationError(RobotRLError):
    """The data cannot give a trustworthy calibration (too few board detections, too little motion, ...)."""
