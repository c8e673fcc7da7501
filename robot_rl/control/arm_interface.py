"""The arm's 1 kHz hardware interface: what a backend reports each tick and what it accepts.

Implemented by the MuJoCo twin (`robot_rl.sim.twin_arm.TwinArm`) and by real arms behind the same
two calls (`robot_rl.hardware.arms.franka.FrankaArm` through pylibfranka). Arms that only accept pose
set-points (`PoseBackend`, e.g. `robot_rl.hardware.arms.ur.URArm` through ur_rtde) receive the
controller's reference pose instead of torques.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class ArmState:
    """One sample of the arm, all in the robot base frame.

    t: sample time in seconds on the controller's clock (host monotonic for real arms and the
       wall-clock loop; simulation time for the synchronous twin);
    q, dq: (7,) joint positions (rad) and velocities (rad/s);
    ee_pos: (3,) tool-centre-point position (m); ee_quat: (4,) orientation (w, x, y, z);
    J: (6, 7) TCP Jacobian, linear rows then angular rows, base frame;
    M: (7, 7) joint-space inertia (kg m^2); coriolis: (7,) Coriolis/centrifugal torques (Nm);
    gravity: (7,) gravity torques g(q) (Nm) — informational when the backend compensates gravity;
    tau_measured: (7,) measured joint torques without gravity (Nm);
    f_ext: (6,) estimated external wrench the environment applies at the TCP (N, Nm), force then torque,
       base frame (pressing down on a table reads +z);
    gripper_width: finger opening (m, sum of both fingers).
    Backends may reuse the arrays of one ArmState between ticks; copy to keep a sample.
    """

    t: float
    q: np.ndarray
    dq: np.ndarray
    ee_pos: np.ndarray
    ee_quat: np.ndarray
    J: np.ndarray
    M: np.ndarray
    coriolis: np.ndarray
    gravity: np.ndarray
    tau_measured: np.ndarray
    f_ext: np.ndarray
    gripper_width: float = 0.0

    def copy(self) -> "ArmState":
        return ArmState(
            self.t, self.q.copy(), self.dq.copy(), self.ee_pos.copy(), self.ee_quat.copy(), self.J.copy(),
            self.M.copy(), self.coriolis.copy(), self.gravity.copy(), self.tau_measured.copy(),
            self.f_ext.copy(), float(self.gripper_width),
        )


@runtime_checkable
class ArmBackend(Protocol):
    """A torque-controlled 7-DoF arm.

    `read_state()` returns the latest sample; `write_torque(tau)` commands (7,) joint torques in Nm,
    excluding gravity when `gravity_compensated` is True (Franka firmware and the twin add it).
    On the twin, `write_torque` advances physics by one 1 ms tick.
    Optional `brake()`: called instead of `write_torque` every tick while the controller is stopped on
    a stale or non-finite state (`Controller.brake_requested`): stop the arm by the robot's own means
    (Franka: robot.stop(), the robot brakes; the twin: joint damping brake). A backend without it gets
    a torque ramp to zero, which lets a moving arm coast.
    """

    gravity_compensated: bool

    def read_state(self) -> ArmState: ...

    def write_torque(self, tau: np.ndarray) -> None: ...


@runtime_checkable
class PoseBackend(Protocol):
    """A position-controlled arm (it servoes to TCP poses with its own controller).

    `read_state()` as ArmBackend, except that J, M, coriolis, gravity and tau_measured may be zeros and
    an arm with fewer than 7 joints reports them in q[:n], dq[:n] (the rest 0). `write_pose(pos, quat)`
    streams the next TCP set-point (m, (w, x, y, z), base frame) once per tick; `stop_motion()` is called
    every tick while the controller is stopped: decelerate to rest on the first call, then hold.
    """

    def read_state(self) -> ArmState: ...

    def write_pose(self, pos: np.ndarray, quat: np.ndarray) -> None: ...

    def stop_motion(self) -> None: ...


@runtime_checkable
class GripperBackend(Protocol):
    """A parallel gripper. `command(closure)`: 0 = fully open, 1 = fully closed (force limited)."""

    def command(self, closure: float) -> None: ...
