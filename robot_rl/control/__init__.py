"""Layer 2: the Cartesian impedance controller shared by the twin and real arms.

`ArmState`/`ArmBackend` (state.py) are the 1 kHz hardware interface, `ImpedanceLaw` (impedance.py)
the torque law, `SafetyLimits` (limits.py) every named limit, `TargetTrajectory` (trajectory.py) the
interpolator between timestamped policy-rate targets, `Controller` (controller.py) the per-tick
pipeline, and `loop.py`/`shared.py` the loop process and its shared-memory channels.
No torch and nothing ROS may be imported here.
"""

import os as _os

# MuJoCo picks its OpenGL backend when first imported (this package imports it): default to
# headless EGL so the twin's cameras render without a display; a user's MUJOCO_GL wins.
_os.environ.setdefault("MUJOCO_GL", "egl")

from robot_rl.control.arm_interface import ArmBackend, ArmState, GripperBackend
from robot_rl.control.limits import SafetyLimits
from robot_rl.control.impedance import GainProfile, ImpedanceLaw, PROFILES
from robot_rl.control.controller import Controller, ControllerMode, Fault

__all__ = [
    "ArmBackend", "ArmState", "GripperBackend", "SafetyLimits", "GainProfile", "ImpedanceLaw", "PROFILES",
    "Controller", "ControllerMode", "Fault",
]
