"""Franka arms (FR3, Panda) through pylibfranka torque control: the ArmBackend of the 1 kHz loop.

pylibfranka (>= 0.15) exposes libfranka's external-loop control: `Robot(ip, RealtimeConfig)`,
`robot.start_torque_control()` -> an ActiveControl whose `readOnce()` blocks until the robot's next
1 kHz state packet and returns `(RobotState, Duration)`, and `writeOnce(Torques(tau))` sends joint
torques without gravity (the firmware adds it). `robot.load_model()` gives the dynamics (`mass`,
`coriolis`, `gravity`, `zero_jacobian`: flat column-major lists).

This adapter only converts and guards; the impedance law and every limit stay in
`robot_rl.control.Controller`, exactly as in the twin:
- RobotState -> ArmState: O_T_EE (column-major 4x4) -> TCP position + quaternion (kept in one
  hemisphere), Model -> J (6, 7), M, coriolis, gravity; tau_J - gravity -> tau_measured;
  -O_F_ext_hat_K -> f_ext (libfranka counts the robot's force on the environment positive, ArmState the
  environment's force on the TCP); t = host monotonic receive time;
- before each write: a non-finite command is replaced by a ramp to zero, then the torque is held
  inside Franka's hardware limits (tau_max, 1000 Nm/s), independently of the controller's own limits:
  a command the firmware would refuse (a torque-discontinuity reflex) never leaves the host;
- a vendor exception (network loss, reflex, robot error) asks the robot to stop, logs the error with
  the robot's error flags and freezes the state: the controller's state watchdog then latches a stop
  (Fault.STATE_STALE) and the loop reports `faulted` while it keeps publishing. Clear the cause
  (Desk, `automatic_error_recovery`) and restart the loop.
- `brake()` (the loop calls it while the controller is stopped on a stale state: the host cannot
  brake an arm whose state it does not see) asks the robot to stop the motion (`robot.stop()`: the
  robot brakes by itself), once, and leaves the arm stopped like a vendor failure does.
Torque control starts on the first `read_state()`, i.e. when the loop process starts ticking.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import numpy as np

from robot_rl.control.arm_interface import ArmState
from robot_rl.core.clock import now
from robot_rl.core.errors import ConfigError
from robot_rl.hardware.arms.gripper_link import ArmGripper, with_gripper
from robot_rl.hardware.arms.poses import pose_from_column_major, same_hemisphere
from robot_rl.hardware.device_errors import HardwareError, require

log = logging.getLogger(__name__)

# Franka FR3 / Panda datasheets: joint torque limits (Nm) and torque rate limit (Nm/s)
TAU_MAX = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
DTAU_MAX = 1000.0
REALTIME = ("enforce", "ignore")


class FrankaArm(ArmGripper):
    """ArmBackend (+ GripperBackend when a gripper link is given) over one Franka arm at `ip`.

    realtime: "enforce" (libfranka refuses to run without real-time scheduling) or "ignore" (a dev
    host; expect communication_constraints_violation reflexes under load).
    collision: optional set_collision_behavior thresholds {lower_torque, upper_torque (7,) Nm,
    lower_force, upper_force (6,) N/Nm}. dt: the robot's control period (s).
    """

    gravity_compensated = True

    def __init__(self, ip: str, realtime: str = "enforce", collision: dict | None = None, gripper=None,
                 dt: float = 0.001, clock: Callable[[], float] = now) -> None:
        if realtime not in REALTIME:
            raise ConfigError(f"franka {ip}: arm.realtime={realtime!r}, expected one of {REALTIME}")
        pf = require("pylibfranka", "franka")
        self.pf, self.ip, self.gripper, self.clock = pf, ip, gripper, clock
        mode = pf.RealtimeConfig.kEnforce if realtime == "enforce" else pf.RealtimeConfig.kIgnore
        try:
            self.robot = pf.Robot(ip, mode)
            if collision:
                self.robot.set_collision_behavior(*(list(map(float, collision[k])) for k in
                                                    ("lower_torque", "upper_torque", "lower_force", "upper_force")))
            self.model = self.robot.load_model()
        except (pf.FrankaException, RuntimeError) as e:
            raise HardwareError(f"franka {ip}: cannot connect ({type(e).__name__}: {e}); check that the arm is "
                                f"unlocked, FCI is activated in Desk and this host reaches {ip}") from e
        except KeyError as e:
            raise ConfigError(f"franka {ip}: arm.collision needs lower_torque, upper_torque, lower_force, "
                              f"upper_force; missing {e}") from None
        self.control = None
        self.error: str | None = None          # set once a vendor call failed: the arm is stopped
        self.guard_hits = 0                    # torque commands the hardware guard had to change
        self._tau_max = np.array(TAU_MAX)
        self._dtau = DTAU_MAX * dt
        self._sent = np.zeros(7)
        self._cmd, self._lo, self._hi = np.zeros(7), np.zeros(7), np.zeros(7)
        self._last_rs = None
        self.state = ArmState(0.0, np.zeros(7), np.zeros(7), np.zeros(3), np.array([1.0, 0, 0, 0]),
                              np.zeros((6, 7)), np.zeros((7, 7)), np.zeros(7), np.zeros(7), np.zeros(7), np.zeros(6))

    # ----------------------------------------------------------------------------- ArmBackend
    def read_state(self) -> ArmState:
        """The next robot state (blocks until the robot's next packet); frozen once the arm failed."""
        if self.error is not None:
            return self.state
        pf = self.pf
        try:
            if self.control is None:
                self.control = self.robot.start_torque_control()
            rs, _ = self.control.readOnce()
            J = self.model.zero_jacobian(rs)
            M = self.model.mass(rs)
            c = self.model.coriolis(rs)
            g = self.model.gravity(rs)
        except (pf.FrankaException, RuntimeError) as e:
            self._fail("readOnce", e)
            return self.state
        self._last_rs = rs
        s = self.state
        s.t = self.clock()
        s.q[:] = rs.q
        s.dq[:] = rs.dq
        pos, quat = pose_from_column_major(rs.O_T_EE)
        s.ee_pos[:] = pos
        s.ee_quat[:] = same_hemisphere(quat, s.ee_quat)
        s.J.T.flat = J                  # column-major lists: fill the transposed view in C order
        s.M.T.flat = M
        s.coriolis[:] = c
        s.gravity[:] = g
        np.subtract(rs.tau_J, s.gravity, out=s.tau_measured)
        np.negative(rs.O_F_ext_hat_K, out=s.f_ext)   # libfranka: robot on environment; ArmState: environment on TCP
        if self.gripper is not None:
            s.gripper_width = self.gripper.width
        return s

    def write_torque(self, tau: np.ndarray) -> None:
        """Send (7,) joint torques (Nm, without gravity) after the hardware guard; a no-op once failed."""
        if self.error is not None or self.control is None:
            return
        cmd = self.guard(tau)
        try:
            self.control.writeOnce(self.pf.Torques(cmd.tolist()))
        except (self.pf.FrankaException, RuntimeError) as e:
            self._fail("writeOnce", e)

    def guard(self, tau: np.ndarray) -> np.ndarray:
        """Non-finite -> ramp to zero; then clip to tau_max and to DTAU_MAX from the last command sent.
        Plain ufuncs into preallocated buffers: this runs every 1 ms tick."""
        raw = np.asarray(tau, dtype=np.float64)
        finite = raw.shape == (7,) and math.isfinite(raw.dot(raw))
        cmd, lo, hi = self._cmd, self._lo, self._hi
        np.subtract(self._sent, self._dtau, out=lo)
        np.maximum(lo, -self._tau_max, out=lo)
        np.add(self._sent, self._dtau, out=hi)
        np.minimum(hi, self._tau_max, out=hi)
        if finite:
            np.minimum(np.maximum(raw, lo, out=cmd), hi, out=cmd)
        else:
            np.minimum(np.maximum(0.0, lo, out=cmd), hi, out=cmd)
        if not finite or not np.array_equal(cmd, raw):
            self.guard_hits += 1
        self._sent[:] = cmd
        return cmd

    def brake(self) -> None:
        """The controller is stopped on a stale state: let the robot stop the motion itself (once)."""
        if self.error is None:
            self.error = (f"franka {self.ip}: the control loop saw no fresh robot state and stopped; the robot was "
                          f"told to stop the motion. Find the cause (network, host load), then restart the loop")
            log.error(self.error)
            self._stop_robot()

    # ----------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """End torque control (motion_finished) and release the gripper; safe to call twice."""
        if self.control is not None and self.error is None:
            try:
                done = self.pf.Torques([0.0] * 7)
                done.motion_finished = True
                self.control.writeOnce(done)
            except (self.pf.FrankaException, RuntimeError) as e:
                log.warning("franka %s: finishing torque control failed (%s: %s)", self.ip, type(e).__name__, e)
        self.control = None
        if self.gripper is not None:
            self.gripper.close()
            self.gripper = None

    def _fail(self, where: str, e: Exception) -> None:
        flags = ""
        if self._last_rs is not None:
            flags = f"; robot errors {self._last_rs.current_errors}, last motion errors " \
                    f"{self._last_rs.last_motion_errors}"
        self.error = (f"franka {self.ip}: {where} failed ({type(e).__name__}: {e}){flags}. The arm was told to stop "
                      f"and the control loop holds a latched stop (state stale); clear the cause in Desk or with "
                      f"automatic_error_recovery, then restart the loop")
        log.error(self.error)
        self._stop_robot()

    def _stop_robot(self) -> None:
        try:
            self.robot.stop()
        except (self.pf.FrankaException, RuntimeError) as e2:
            log.error("franka %s: robot.stop() failed too (%s: %s)", self.ip, type(e2).__name__, e2)
        self.control = None


def make_loop_backend(rig, task=None) -> FrankaArm:
    """Loop factory (`backend: franka`): arm.ip (or arm.fci_ip), arm.realtime, arm.collision, gripper."""
    if task:
        raise ConfigError(f"rig {rig.name}: backend franka runs without a task (task={task!r}); tasks with a "
                          f"success check exist only in the twin")
    ip = rig.arm.get("ip", rig.arm.get("fci_ip"))
    if not ip:
        raise ConfigError(f"rig {rig.name}: backend franka needs arm.ip (the FCI address, e.g. 172.16.0.2)")
    if abs(rig.loop_hz - 1000.0) > 1e-9:
        raise ConfigError(f"rig {rig.name}: a Franka is torque-controlled at 1 kHz; control.loop_hz={rig.loop_hz}")
    return with_gripper(rig.gripper, str(ip), lambda gripper: FrankaArm(
        str(ip), str(rig.arm.get("realtime", "enforce")), rig.arm.get("collision"), gripper))
