"""Universal Robots arms (UR3e/5e/10e/16e, CB3) through ur_rtde: a position-controlled PoseBackend.

A UR takes pose set-points, not torques. The control loop process runs the same Controller as for
torque arms up to its reference (`Controller.update_reference`: target validation, workspace box,
jump rejection, interpolation, speed limits, smoothing, target and state watchdogs, e-stop) and streams
that reference here at the UR's 500 Hz servo rate:

    RTDEReceiveInterface(ip).getActualTCPPose() -> [x, y, z, rx, ry, rz] (m, rotation vector, base frame)
    RTDEControlInterface(ip).servoL(pose, speed, acceleration, time, lookahead_time, gain)
    RTDEControlInterface.servoStop(a)    decelerate out of servo mode (stopL(a) if that is refused)

State: t is the host receive time of a *new* RTDE sample (the robot's own timestamp must advance; a
repeated sample keeps t, so the controller's state watchdog sees a stalled stream); q, dq fill
q[:6], dq[:6] (q[6] = 0); f_ext is getActualTCPForce (the force acting on the TCP, base frame: the
ArmState convention); J, M, torques are zeros (unused).
While the robot is protective- or emergency-stopped, or RTDE is disconnected, the state is frozen too:
the controller latches a stop (Fault.STATE_STALE) and this backend stops streaming; after clearing
the stop on the pendant, `reset()` the loop (the reference re-anchors at the measured pose). A refused
command (servoL returning False, an exception) is final: restart the loop once the cause is fixed.
servoStop/stopL decelerate at least hard enough that a TCP at max_ee_speed stops within the rig's
control.safety.max_stop_distance after the stale state is noticed (`stop_deceleration`).
With `watchdog_hz` the UR side stops the robot by itself when this process stops sending (ur_rtde's
setWatchdog: every servoL counts; kickWatchdog keeps it fed while stopped).
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from robot_rl.control.arm_interface import ArmState
from robot_rl.core.clock import now
from robot_rl.core.errors import ConfigError
from robot_rl.hardware.arms.gripper_link import ArmGripper, with_gripper
from robot_rl.hardware.arms.poses import pose_from_rotvec, pose_to_rotvec, same_hemisphere
from robot_rl.hardware.device_errors import HardwareError, require

log = logging.getLogger(__name__)


class URArm(ArmGripper):
    """PoseBackend (+ GripperBackend when a gripper link is given) over one UR at `ip`.

    servo_time: time each servoL set-point is valid (s; the loop period, 0.002 at 500 Hz);
    lookahead_time (0.03-0.2 s) and gain (100-2000): servoL's smoothing and proportional gain;
    stop_deceleration: tool deceleration of servoStop / stopL (m/s^2); watchdog_hz: 0 disables
    the UR-side watchdog; tcp_offset: [x, y, z, rx, ry, rz] from the flange, or None to keep the
    pendant's TCP.
    """

    gravity_compensated = True

    def __init__(self, ip: str, servo_time: float = 0.002, lookahead_time: float = 0.1, gain: float = 300.0,
                 stop_deceleration: float = 2.0, watchdog_hz: float = 20.0, tcp_offset=None, gripper=None,
                 clock: Callable[[], float] = now) -> None:
        if not 0.03 <= lookahead_time <= 0.2:
            raise ConfigError(f"ur {ip}: arm.lookahead_time={lookahead_time} outside ur_rtde's 0.03..0.2 s")
        if not 100.0 <= gain <= 2000.0:
            raise ConfigError(f"ur {ip}: arm.gain={gain} outside ur_rtde's 100..2000")
        rtde_control = require("rtde_control", "ur")
        rtde_receive = require("rtde_receive", "ur")
        self.ip, self.gripper, self.clock = ip, gripper, clock
        self.servo_time, self.lookahead_time, self.gain = float(servo_time), float(lookahead_time), float(gain)
        self.stop_deceleration = float(stop_deceleration)
        frequency = 1.0 / self.servo_time
        try:
            self.recv = rtde_receive.RTDEReceiveInterface(ip, frequency)
            self.ctrl = rtde_control.RTDEControlInterface(ip, frequency)
            if tcp_offset is not None:
                self.ctrl.setTcp([float(v) for v in tcp_offset])
            self.watchdog = float(watchdog_hz) > 0 and bool(self.ctrl.setWatchdog(float(watchdog_hz)))
        except RuntimeError as e:
            raise HardwareError(f"ur {ip}: cannot connect over RTDE ({e}); check that the robot is on, in remote "
                                f"control, and that this host reaches {ip} (ports 30004, 30002)") from e
        self.unavailable: str | None = None    # why the robot cannot be commanded now (None: it can)
        self.failed: str | None = None         # a command failed: unavailable until the loop restarts
        self.stopped = False                   # servoStop sent; streaming resumes on the next write_pose
        self._robot_t: float | None = None
        self.state = ArmState(0.0, np.zeros(7), np.zeros(7), np.zeros(3), np.array([1.0, 0, 0, 0]),
                              np.zeros((6, 7)), np.zeros((7, 7)), np.zeros(7), np.zeros(7), np.zeros(7), np.zeros(6))

    # ----------------------------------------------------------------------------- PoseBackend
    def read_state(self) -> ArmState:
        """The latest RTDE sample; frozen (same t) when no new one arrived or the robot is unavailable."""
        r = self.recv
        try:
            reason = (self.failed if self.failed is not None
                      else "the RTDE connection is lost" if not r.isConnected()
                      else "the robot is emergency-stopped" if r.isEmergencyStopped()
                      else "the robot is protective-stopped" if r.isProtectiveStopped() else None)
            ts = r.getTimestamp() if reason is None else self._robot_t
            if ts != self._robot_t:
                pose, q, dq, f = r.getActualTCPPose(), r.getActualQ(), r.getActualQd(), r.getActualTCPForce()
        except RuntimeError as e:
            reason, ts = f"RTDE receive failed ({e})", self._robot_t
        self._set_unavailable(reason)
        s = self.state
        if ts == self._robot_t:
            return s
        self._robot_t = ts
        s.t = self.clock()
        s.q[:6] = q
        s.dq[:6] = dq
        pos, quat = pose_from_rotvec(pose)
        s.ee_pos[:] = pos
        s.ee_quat[:] = same_hemisphere(quat, s.ee_quat)
        s.f_ext[:] = f
        if self.gripper is not None:
            s.gripper_width = self.gripper.width
        return s

    def write_pose(self, pos: np.ndarray, quat: np.ndarray) -> None:
        """Stream the next TCP set-point (servoL for `servo_time`); a no-op while the robot is unavailable."""
        if self.unavailable is not None:
            return
        self.stopped = False
        try:
            ok = self.ctrl.servoL(pose_to_rotvec(pos, quat), 0.0, 0.0, self.servo_time, self.lookahead_time, self.gain)
        except RuntimeError as e:
            ok, why = False, str(e)
        else:
            why = "servoL returned False (is the ur_rtde control script running?)"
        if not ok:   # the command path is broken: stop for good (restart the loop once it is fixed)
            self.failed = f"{why}; restart the control loop once the cause is fixed"
            self._set_unavailable(self.failed)

    def stop_motion(self) -> None:
        """Decelerate out of servo mode once (servoStop, stopL if refused); then keep the UR watchdog fed."""
        if self.unavailable is not None:
            return
        try:
            if not self.stopped:
                self.stopped = True
                if not self.ctrl.servoStop(self.stop_deceleration):
                    self.ctrl.stopL(self.stop_deceleration)
                log.warning("ur %s: servo stopped (the controller is stopped: e-stop, stale state or a fault)", self.ip)
            elif self.watchdog:
                self.ctrl.kickWatchdog()
        except RuntimeError as e:
            self.failed = f"stopping failed ({e}); restart the control loop once the cause is fixed"
            self._set_unavailable(self.failed)

    # ----------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Stop servoing, stop the control script, disconnect; safe to call twice."""
        if self.gripper is not None:
            self.gripper.close()
            self.gripper = None
        try:
            if not self.stopped and self.unavailable is None:
                self.stopped = True
                self.ctrl.servoStop(self.stop_deceleration)
            self.ctrl.stopScript()
            self.ctrl.disconnect()
            self.recv.disconnect()
        except RuntimeError as e:
            log.warning("ur %s: closing RTDE failed (%s)", self.ip, e)

    def _set_unavailable(self, reason: str | None) -> None:
        if reason == self.unavailable:
            return
        if reason is None:
            log.warning("ur %s: available again (%s cleared); reset() the loop to move", self.ip, self.unavailable)
            try:   # a protective stop ends ur_rtde's control script: start it again
                if not self.ctrl.isProgramRunning():
                    self.ctrl.reuploadScript()
            except RuntimeError as e:
                reason = f"restarting the ur_rtde control script failed ({e})"
                log.error("ur %s: %s", self.ip, reason)
        else:
            log.error("ur %s: %s: no set-points are sent and the control loop latches a stop (state stale)",
                      self.ip, reason)
        self.unavailable = reason


def stop_deceleration(limits, configured: float, source: str = "ur") -> float:
    """Tool deceleration (m/s^2) for servoStop/stopL: at least `configured`, and enough that a TCP at
    max_ee_speed, which travels state_timeout before the stale state is noticed, stops within
    max_stop_distance."""
    v, d = limits.max_ee_speed, limits.max_stop_distance
    room = d - v * limits.state_timeout
    if room <= 0.0:
        raise ConfigError(f"{source}: control.safety.max_stop_distance={d} m is covered before a stale state is "
                          f"noticed (max_ee_speed {v} m/s x state_timeout {limits.state_timeout} s); lower "
                          f"max_ee_speed or state_timeout, or raise max_stop_distance")
    return max(float(configured), v * v / (2.0 * room))


def make_loop_backend(rig, task=None) -> URArm:
    """Loop factory (`backend: ur`): arm.ip, arm.lookahead_time, arm.gain, arm.stop_deceleration (raised
    where needed to stop within control.safety.max_stop_distance, see `stop_deceleration`),
    arm.watchdog_hz, arm.tcp_offset; control.loop_hz sets the servo rate (500 Hz on e-Series)."""
    if task:
        raise ConfigError(f"rig {rig.name}: backend ur runs without a task (task={task!r}); tasks with a "
                          f"success check exist only in the twin")
    a = rig.arm
    if not a.get("ip"):
        raise ConfigError(f"rig {rig.name}: backend ur needs arm.ip (the robot's address)")
    return with_gripper(rig.gripper, str(a["ip"]), lambda gripper: URArm(
        str(a["ip"]), 1.0 / rig.loop_hz, float(a.get("lookahead_time", 0.1)), float(a.get("gain", 300.0)),
        stop_deceleration(rig.safety, float(a.get("stop_deceleration", 2.0)), f"rig {rig.name}"),
        float(a.get("watchdog_hz", 20.0)), a.get("tcp_offset"), gripper))
