"""Every limit the 1 kHz loop enforces, in one parameter object (read from the rig config)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np

from robot_rl.core.config import dataclass_from_dict
from robot_rl.core.errors import ConfigError

# Franka Emika Panda datasheet values (same sources as hardware/panda/panda_cell.xml)
PANDA_Q_MIN = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
PANDA_Q_MAX = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
PANDA_DQ_MAX = (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61)
PANDA_TAU_MAX = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)


@dataclass(frozen=True)
class SafetyLimits:
    """Limits in SI units, base frame. Times are seconds on the controller clock.

    workspace_min/max: (3,) box the commanded TCP position is clipped into (m).
    max_ee_speed / max_ee_angular_speed: cap on the TCP speed (m/s, rad/s), on the reference and on
        the measured twist: above ee_speed_guard times it the law stops pushing along the motion and
        brakes the excess with ee_speed_damping (N s/m) / ee_angular_speed_damping (Nm s/rad).
    boundary_deceleration: the reference slows down towards a workspace face so that it could stop
        there at this deceleration (m/s^2): it reaches the face at rest, not at max_ee_speed.
    max_pos_error / max_rot_error: per-axis clip of the pose error fed to the law (m, rad), which
        bounds the spring force to K * error.
    max_torque_rate: per-tick change of commanded torque (Nm per tick, 1 Nm/ms on Franka).
    tau_max: (7,) commanded torque saturation (Nm).
    q_min/q_max: (7,) joint limits (rad); joint_limit_margin: distance inside them where a repulsive
        spring of joint_limit_stiffness (Nm/rad) acts.
    dq_max: (7,) joint speed limits (rad/s); above joint_velocity_guard * dq_max the guard damps
        with joint_velocity_damping (Nm s/rad); above dq_max the controller stops (latched fault).
    max_external_force: TCP contact force (N) above which the reference is re-anchored at the
        measured pose, relieving the push.
    max_contact_force: once the measured contact force exceeds contact_detection_force (N), the law
        pushes into the surface by at most this force (N); keep it below max_external_force.
    max_target_jump: largest accepted distance (m) between a target and the previous waypoint.
    max_target_rotation_jump: largest accepted rotation (rad) between a target and the previous waypoint.
    target_timeout: no fresh target for this long -> hold the current pose.
    hold_ramp_time: time to ramp the reference velocity to zero when holding (s).
    state_timeout: state older than this, or not advancing for this long -> stop (latched).
    stop_damping: joint damping (Nm s/rad) used to brake on stop / e-stop.
    max_stop_distance: how far (m) the TCP may travel after a stale-state stop; a backend that brakes
        by itself (UR stopL/servoStop) derives its deceleration from it and max_ee_speed.
    target_smoothing: first-order filter gain per tick on the reference (1 = none).
    reject_outside_workspace: reject (True) or clip (False) targets outside the workspace box.
    """

    workspace_min: tuple[float, float, float] = (0.15, -0.45, 0.015)
    workspace_max: tuple[float, float, float] = (0.80, 0.45, 0.75)
    max_ee_speed: float = 0.5
    max_ee_angular_speed: float = 1.5
    ee_speed_guard: float = 0.9
    ee_speed_damping: float = 400.0
    ee_angular_speed_damping: float = 20.0
    boundary_deceleration: float = 2.0
    max_pos_error: float = 0.03
    max_rot_error: float = 0.2
    max_torque_rate: float = 1.0
    tau_max: tuple[float, ...] = PANDA_TAU_MAX
    q_min: tuple[float, ...] = PANDA_Q_MIN
    q_max: tuple[float, ...] = PANDA_Q_MAX
    joint_limit_margin: float = 0.1
    joint_limit_stiffness: float = 100.0
    dq_max: tuple[float, ...] = PANDA_DQ_MAX
    joint_velocity_guard: float = 0.8
    joint_velocity_damping: float = 10.0
    max_external_force: float = 40.0
    max_contact_force: float = 30.0
    contact_detection_force: float = 5.0
    max_target_jump: float = 0.10
    max_target_rotation_jump: float = 0.5
    target_timeout: float = 0.25
    hold_ramp_time: float = 0.1
    state_timeout: float = 0.02
    stop_damping: float = 8.0
    max_stop_distance: float = 0.05
    target_smoothing: float = 0.05
    reject_outside_workspace: bool = False

    def __post_init__(self) -> None:
        for name in ("workspace_min", "workspace_max"):
            v = tuple(float(x) for x in getattr(self, name))
            if len(v) != 3:
                raise ConfigError(f"SafetyLimits.{name}: expected 3 values, got {v}")
            object.__setattr__(self, name, v)
        for name in ("tau_max", "q_min", "q_max", "dq_max"):
            v = tuple(float(x) for x in getattr(self, name))
            if len(v) != 7:
                raise ConfigError(f"SafetyLimits.{name}: expected 7 values, got {v}")
            object.__setattr__(self, name, v)
        if any(lo >= hi for lo, hi in zip(self.workspace_min, self.workspace_max)):
            raise ConfigError(f"SafetyLimits.workspace_min {self.workspace_min} must be below workspace_max "
                              f"{self.workspace_max} on every axis")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not (np.isfinite(v) and v > 0) and f.name != "target_smoothing":
                raise ConfigError(f"SafetyLimits.{f.name}: must be a finite value > 0, got {v}")
        if not 0.0 < self.target_smoothing <= 1.0:
            raise ConfigError(f"SafetyLimits.target_smoothing: must be in (0, 1], got {self.target_smoothing}")
        if not 0.0 < self.ee_speed_guard <= 1.0:
            raise ConfigError(f"SafetyLimits.ee_speed_guard: must be in (0, 1], got {self.ee_speed_guard}")
        if not self.contact_detection_force < self.max_contact_force <= self.max_external_force:
            raise ConfigError(f"SafetyLimits: need contact_detection_force ({self.contact_detection_force} N) < "
                              f"max_contact_force ({self.max_contact_force} N) <= max_external_force "
                              f"({self.max_external_force} N)")
        if not 0.0 < self.joint_velocity_guard < 1.0:
            raise ConfigError(f"SafetyLimits.joint_velocity_guard: must be in (0, 1), got {self.joint_velocity_guard}")

    @staticmethod
    def from_dict(d: Mapping[str, Any] | None) -> "SafetyLimits":
        return dataclass_from_dict(SafetyLimits, d, "safety")
