"""ArmBridge: an arm driver on a Transport (ROS-free; arm_node and twin_node wrap it).

The driver is the 1 kHz impedance loop process (`robot_rl.control.loop.ControlLoopProcess`) or the
paced twin (`robot_rl_ros.paced_twin.PacedTwin`); both offer
    state() -> snapshot (the fields of robot_rl.control.shared.LoopSnapshot: t, q, dq, tau, ee_pos,
               ee_quat, f_ext, gripper_width, ref_pos, ref_quat, mode, counts, tick_us, ...)
    push_target(EETarget), estop(), reset(), set_profile(name), profiles.
The bridge publishes the graph's arm topics (robot_rl_ros.graph) from snapshots handed to
`publish(snap)` by its owner at the state rate, turns each /arm/target_pose into a timestamped
EETarget (gripper closure from the latest /gripper/command), and serves /arm/estop, /arm/reset and
/arm/gain_profile/<profile>. If targets stop arriving the controller's own target watchdog holds the
pose (robot_rl.control.controller); the bridge adds nothing to that path.

After an e-stop it measures how long the arm takes to stop (largest joint speed below
`stopped_speed`) and reports it in /arm/diagnostics; longer than `estop_max_stop_s` is logged as an
error.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from robot_rl.control.controller import ControllerMode, Fault
from robot_rl.core.clock import now
from robot_rl.core.config import dataclass_from_dict
from robot_rl.core.types import EETarget
from robot_rl.runtime.transport import Reply, Sample, Transport
from robot_rl_ros import graph


@dataclass(frozen=True)
class ArmBridgeConfig:
    gripper_rate_hz: float = 50.0       # /gripper/joint_states (when the arm backend drives the gripper)
    diagnostics_rate_hz: float = 10.0
    frame: str = "base"                 # frame of poses and wrenches; targets in another frame are refused
    publish_gripper: bool = True        # the arm backend drives the gripper (twin, Franka Hand)
    estop_max_stop_s: float = 0.5       # the arm must stop within this after an e-stop
    stopped_speed: float = 0.02         # rad/s: the largest joint speed that counts as stopped

    @staticmethod
    def from_dict(d: dict | None, where: str = "bridge") -> "ArmBridgeConfig":
        return dataclass_from_dict(ArmBridgeConfig, d, where)


class ArmBridge:
    def __init__(self, driver, transport: Transport, cfg: ArmBridgeConfig | None = None,
                 logger=None, clock=now) -> None:
        self.driver, self.cfg, self.clock = driver, cfg or ArmBridgeConfig(), clock
        self.log = logger or logging.getLogger(__name__)
        self.gripper = 0.0
        self.profile = getattr(getattr(driver, "rig", None), "profile", "")
        self.targets = self.rejected_targets = 0
        self.last_target_rx: float | None = None
        self.estop_t: float | None = None
        self.estop_stop_s: float | None = None
        self._estop_overrun_logged = False
        self._last_t = -np.inf
        self._next_gripper = self._next_diag = -np.inf
        self._lock = threading.Lock()
        T = transport
        self.pub_joints = T.publisher(graph.ARM_JOINT_STATES)
        self.pub_pose = T.publisher(graph.EE_POSE)
        self.pub_wrench = T.publisher(graph.EE_WRENCH)
        self.pub_diag = T.publisher(graph.ARM_DIAGNOSTICS)
        self.pub_gripper = T.publisher(graph.GRIPPER_JOINT_STATES) if self.cfg.publish_gripper else None
        self.subs = [T.subscribe(graph.TARGET_POSE, self.on_target)]
        if self.cfg.publish_gripper:
            self.subs.append(T.subscribe(graph.GRIPPER_COMMAND, self.on_gripper))
        T.serve(graph.ESTOP, "trigger", lambda _: self.estop())
        T.serve(graph.RESET, "trigger", lambda _: self.reset())
        for name in driver.profiles:
            T.serve(f"{graph.GAIN_PROFILE}/{name}", "trigger", lambda _, n=name: self.set_profile(n))

    # -- inputs ---------------------------------------------------------------------------------
    def on_target(self, sample: Sample) -> None:
        if sample.frame and sample.frame != self.cfg.frame:
            self.rejected_targets += 1
            raise ValueError(f"{graph.TARGET_POSE.name}: target in frame {sample.frame!r}, expected "
                             f"{self.cfg.frame!r}")
        f = sample.fields
        self.driver.push_target(EETarget(sample.t, f["position"], f["quat"], self.gripper))
        self.targets += 1
        self.last_target_rx = self.clock()

    def on_gripper(self, sample: Sample) -> None:
        self.gripper = graph.gripper_closure(sample)

    # -- services -------------------------------------------------------------------------------
    def estop(self) -> Reply:
        self.driver.estop()
        with self._lock:
            self.estop_t, self.estop_stop_s, self._estop_overrun_logged = self.clock(), None, False
        return Reply(True, f"e-stop latched: braking, must stop within {self.cfg.estop_max_stop_s} s; "
                           f"{graph.RESET} to release")

    def reset(self) -> Reply:
        self.driver.reset()
        with self._lock:
            self.estop_t = None
        return Reply(True, "stop cleared: the controller re-anchors at the measured pose and holds")

    def set_profile(self, name: str) -> Reply:
        self.driver.set_profile(name)
        self.profile = name
        return Reply(True, f"gain profile {name}")

    # -- outputs --------------------------------------------------------------------------------
    def publish(self, snap) -> None:
        """Publish one state snapshot (owner calls this at the state rate; repeats are skipped)."""
        t = float(snap.t)
        if t <= self._last_t:
            return
        self._last_t = t
        frame = self.cfg.frame
        self.pub_joints.publish(Sample(t, {"position": snap.q, "velocity": snap.dq, "effort": snap.tau},
                                       names=graph.ARM_JOINTS))
        self.pub_pose.publish(Sample(t, {"position": snap.ee_pos, "quat": snap.ee_quat}, frame))
        self.pub_wrench.publish(Sample(t, {"force": snap.f_ext[:3], "torque": snap.f_ext[3:6]}, frame))
        if self.pub_gripper is not None and t >= self._next_gripper:
            self._next_gripper = max(self._next_gripper + 1.0 / self.cfg.gripper_rate_hz, t)
            self.pub_gripper.publish(Sample(t, {"position": np.array([snap.gripper_width])},
                                            names=(graph.GRIPPER_JOINT,)))
        self._watch_estop(snap)
        if t >= self._next_diag:
            self._next_diag = max(self._next_diag + 1.0 / self.cfg.diagnostics_rate_hz, t)
            self.pub_diag.publish(self.diagnostics(snap))

    def _watch_estop(self, snap) -> None:
        with self._lock:
            if self.estop_t is None or self.estop_stop_s is not None:
                return
            elapsed = float(snap.t) - self.estop_t
            if elapsed >= 0 and float(np.abs(snap.dq).max()) < self.cfg.stopped_speed:
                self.estop_stop_s = elapsed
                self.log.info(f"e-stop: arm stopped {elapsed * 1e3:.0f} ms after the request")
            elif elapsed > self.cfg.estop_max_stop_s and not self._estop_overrun_logged:
                self._estop_overrun_logged = True
                self.log.error(f"e-stop: the arm still moves {elapsed:.2f} s after the request (max joint speed "
                               f"{np.abs(snap.dq).max():.3f} rad/s; estop_max_stop_s {self.cfg.estop_max_stop_s})")

    def diagnostics(self, snap) -> dict:
        mode = int(snap.mode)
        counts = np.asarray(snap.counts)
        d = {
            "t": float(snap.t), "mode": ControllerMode(mode).name.lower(), "mode_id": mode,
            "ref_pos": [float(v) for v in snap.ref_pos], "ref_quat": [float(v) for v in snap.ref_quat],
            "profile": self.profile,
            "faults": {f.name.lower(): int(counts[f]) for f in Fault if counts[f]},
            "tick_us": float(snap.tick_us), "tick_us_max": float(snap.tick_us_max),
            "targets": self.targets, "targets_refused": self.rejected_targets, "gripper_command": self.gripper,
            "last_target_age_s": None if self.last_target_rx is None else self.clock() - self.last_target_rx,
        }
        with self._lock:
            if self.estop_t is not None:
                d["estop"] = {"stop_s": self.estop_stop_s, "max_stop_s": self.cfg.estop_max_stop_s,
                              "stopped": self.estop_stop_s is not None}
        extra = getattr(self.driver, "diagnostics", None)
        if callable(extra):
            d.update(extra())
        return d
