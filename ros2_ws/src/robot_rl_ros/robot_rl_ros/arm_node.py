"""arm_node: the 1 kHz Cartesian impedance loop process (robot_rl.control.loop) on the node graph.

Parameters (configs/ros/arm.yaml): rig (configs/robot/<rig>.yaml or a rig file; its `backend` picks
the arm: twin, franka, ur, a plug-in), profile, state_rate_hz (snapshots published per second),
state_timeout_s (> 0 overrides the rig's control.safety.state_timeout), and bridge.*
(robot_rl_ros.arm_bridge.ArmBridgeConfig).

Configure starts the loop process (its own process: controller, safety, watchdogs; the arm holds its
pose from the first tick); activate publishes /arm/joint_states, /arm/ee_pose, /arm/ee_wrench,
/arm/diagnostics (and /gripper/joint_states when the backend drives the gripper), takes
/arm/target_pose (header stamp: when to reach it) and /gripper/command, and serves /arm/estop,
/arm/reset, /arm/gain_profile/<profile>. When targets stop arriving (policy or teleop node gone)
the loop's target watchdog holds the pose after control.safety.target_timeout. Deactivate stops
publishing and serving; the loop keeps holding. Cleanup stops the loop process.
"""

from __future__ import annotations

from robot_rl.control.rig import load_rig
from robot_rl.core.clock import RateLoop
from robot_rl.core.config import to_plain
from robot_rl_ros.arm_bridge import ArmBridge, ArmBridgeConfig
from robot_rl_ros.shell import ShellNode, main_for


class LoopDriver:
    """ControlLoopProcess as an ArmBridge driver, with the loop's own timing in the diagnostics."""

    def __init__(self, loop) -> None:
        self.loop, self.rig, self.profiles = loop, loop.rig, loop.profiles
        self.push_target, self.estop, self.reset = loop.push_target, loop.estop, loop.reset
        self.set_profile, self.state = loop.set_profile, loop.state

    def diagnostics(self) -> dict:
        s = self.loop.state()
        return {"backend": self.rig.backend, **self.loop.miss_counters(), "loop_us": float(s.loop_us),
                "realtime": bool(self.loop.realtime), "loop_alive": bool(self.loop.proc and self.loop.proc.is_alive())}


class ArmNode(ShellNode):
    DEFAULTS = {"rig": "panda_twin", "profile": "", "state_rate_hz": 250.0, "state_timeout_s": 0.0}

    def __init__(self, name: str = "arm", **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.loop = None
        self.bridge: ArmBridge | None = None

    def setup(self) -> None:
        from robot_rl.control.loop import ControlLoopProcess

        raw = to_plain(load_rig(str(self.param("rig"))).raw)
        timeout = float(self.param("state_timeout_s"))
        if timeout > 0:
            raw.setdefault("control", {}).setdefault("safety", {})["state_timeout"] = timeout
        rig = load_rig(raw)
        self.bridge_cfg = ArmBridgeConfig.from_dict(self.params("bridge", required=False), self.where("bridge"))
        profile = str(self.param("profile"))
        if profile and profile not in rig.profiles:
            raise ValueError(f"{self.where('profile')}: {profile!r} is not one of {sorted(rig.profiles)}")
        self.loop = ControlLoopProcess(rig).start()
        if profile:
            self.loop.set_profile(profile)
        self.get_logger().info(f"loop process for rig {rig.name} (backend {rig.backend}) running at "
                               f"{rig.loop_hz:g} Hz, SCHED_FIFO: {self.loop.realtime}")

    def attach(self, transport) -> None:
        self.bridge = ArmBridge(LoopDriver(self.loop), transport, self.bridge_cfg, self.get_logger())
        self.start_worker(self._publish, "arm-state")

    def _publish(self) -> None:
        rate = RateLoop(float(self.param("state_rate_hz")))
        while not self.stopping:
            self.bridge.publish(self.loop.state())
            rate.wait()

    def detach(self) -> None:
        super().detach()
        self.bridge = None

    def release(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            self.loop = None


main = main_for(ArmNode)

if __name__ == "__main__":
    main()
