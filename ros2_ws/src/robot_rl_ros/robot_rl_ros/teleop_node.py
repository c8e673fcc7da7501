"""teleop_node: an operator (teleop device, or the scripted expert on the twin) publishing EE targets.

Parameters (configs/ros/teleop.yaml): mode (device | scripted), rig (workspace box and rates),
frame, max_target_lead, status_period_s;
  device mode: device (spacemouse | gamepad, robot_rl.hardware registry names), device_args.*
  (constructor arguments), rate_hz, teleop.* (robot_rl.hardware.teleop.TeleopConfig: speeds,
  deadband, require_deadman, frame), joy_topic / joy_axes / joy_buttons (gamepad: sensor_msgs/Joy
  from the `joy` package, axes and buttons named by index as in robot_rl.hardware.teleop.gamepad);
  scripted mode: task, task_params.* (as twin_node's), noise, seed (robot_rl.sim.experts; the
  twin's episodes are followed through /twin/status).
Publishes /gripper/command and /arm/target_pose (stamped with the time to reach the target) and
~/status (latched JSON). Device session keys (start, stop and save, discard, mark success/failure)
call the recorder's services (/recorder/<name>), answers logged and reported in ~/status.
"""

from __future__ import annotations

import queue

import numpy as np

from robot_rl.core.clock import RateLoop, now
from robot_rl.core.config import dataclass_from_dict
from robot_rl.core.errors import ConfigError
from robot_rl.runtime.transport import STATUS, Topic, TransportError
from robot_rl_ros import graph
from robot_rl_ros.policy_link import TargetPublisher
from robot_rl_ros.shell import ShellNode, main_for

MODES = ("device", "scripted")
SESSION_EVENTS = ("start", "stop_and_save", "discard", "mark_success", "mark_failure")


def joint_values(sample, names) -> np.ndarray:
    """The `position` entries of `names`, by name (any publisher order)."""
    if not sample.names:
        return np.asarray(sample.fields["position"], float)[: len(names)]
    index = {n: i for i, n in enumerate(sample.names)}
    return np.asarray(sample.fields["position"], float)[[index[n] for n in names]]


class TeleopNode(ShellNode):
    DEFAULTS = {"mode": "scripted", "rig": "panda_twin", "frame": "base", "max_target_lead": 0.04,
                "status_period_s": 0.5, "device": "spacemouse", "rate_hz": 50.0, "joy_topic": "/joy",
                "task": "reach", "noise": 0.0, "seed": 0}

    def __init__(self, name: str = "teleop", **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.operator = None
        self._events: queue.Queue = queue.Queue()
        self.replies: list[str] = []
        self.last_error = ""

    def setup(self) -> None:
        from robot_rl.control.rig import load_rig

        mode = str(self.param("mode"))
        if mode not in MODES:
            raise ConfigError(f"{self.where('mode')}: {mode!r} is not one of {MODES}")
        rig_name = str(self.param("rig"))
        rig = load_rig(rig_name)
        if mode == "scripted":
            from robot_rl_ros.teleop_link import ScriptedOperator

            self.operator = ScriptedOperator(str(self.param("task")), rig_name, float(self.param("noise")),
                                             int(self.param("seed")), self.params("task_params", required=False))
            self.rate_hz = 1.0 / self.operator.period
        else:
            from robot_rl.hardware.registry import create
            from robot_rl.hardware.teleop.teleop_state import TeleopConfig
            from robot_rl_ros.teleop_link import DeviceOperator

            name = str(self.param("device"))
            if name == "keyboard":
                raise ConfigError(f"{self.where('device')}: keyboard needs a key source a headless node does not "
                                  "have; use spacemouse, or gamepad through the joy package's /joy")
            config = dataclass_from_dict(TeleopConfig, self.params("teleop", required=False), self.where("teleop"))
            self.device = create("teleop", name, config=config, **self.params("device_args", required=False))
            self.device.connect()
            L = rig.safety
            self.rate_hz = float(self.param("rate_hz"))
            self.operator = DeviceOperator(self.device, self.rate_hz, L.workspace_min, L.workspace_max,
                                           float(self.param("max_target_lead")))
        self.mode = mode

    def attach(self, transport) -> None:
        T = transport
        self.targets = TargetPublisher(T, str(self.param("frame")))
        self.status_pub = T.publisher(Topic("~/status", "status", STATUS))
        op = self.operator
        if self.mode == "scripted":
            T.subscribe(graph.TWIN_STATUS, op.on_status)
            T.subscribe(graph.ARM_JOINT_STATES, lambda s: op.on_joints(joint_values(s, graph.ARM_JOINTS), s.t))
            T.subscribe(graph.GRIPPER_JOINT_STATES, lambda s: op.on_gripper(float(s.fields["position"][0])))
            T.subscribe(graph.TASK_STATE, lambda s: op.on_task_state(s.fields["position"]))
        else:
            T.subscribe(graph.EE_POSE, lambda s: op.on_pose(s.fields["position"], s.fields["quat"]))
            if str(self.param("device")) == "gamepad":
                self._subscribe_joy()
        self.start_worker(self._run, "teleop")
        self.start_worker(self._session, "teleop-session")

    def _subscribe_joy(self) -> None:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Joy

        axes = list(self.param("joy_axes")) if self.has_parameter("joy_axes") else []
        buttons = list(self.param("joy_buttons")) if self.has_parameter("joy_buttons") else []

        def on_joy(msg) -> None:
            for name, v in zip(axes, msg.axes):
                self.device.set_value(name, float(v))
            for name, v in zip(buttons, msg.buttons):
                self.device.set_value(name, float(v))

        self._joy = self.create_subscription(Joy, str(self.param("joy_topic")), on_joy, qos_profile_sensor_data)

    def _run(self) -> None:
        rate = RateLoop(self.rate_hz)
        period = float(self.param("status_period_s"))
        next_status = now()
        while not self.stopping:
            t = now()
            try:
                self._step(t)
                if t >= next_status:
                    next_status = t + period
                    self.status_pub.publish(self.status())
            except Exception as e:   # a device read or a bad message: logged, the next cycle tries again
                self.last_error = f"{type(e).__name__}: {e}"
                self.get_logger().error(self.last_error, throttle_duration_sec=2.0)
            rate.wait()

    def _step(self, t: float) -> None:
        if self.mode == "scripted":
            target, events = self.operator.step(t), ()
        else:
            target, events = self.operator.step(t)
        for e in events:
            if e.kind.value in SESSION_EVENTS:
                self._events.put(e.kind.value)
        if target is not None:
            self.targets.push_target(target)

    def _session(self) -> None:
        """Recorder service calls off the teleop thread (a call waits for the answer)."""
        while not self.stopping:
            try:
                name = self._events.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                reply = self.transport.call(f"{graph.RECORDER}/{name}", "trigger", timeout_s=2.0)
                text = f"{name}: {'ok' if reply.success else 'refused'}: {reply.message}"
            except TransportError as e:
                text = f"{name}: {e}"
            self.replies = (self.replies + [text])[-5:]
            self.get_logger().info(text)

    def status(self) -> dict:
        op = self.operator
        d = {"mode": self.mode, "targets_sent": self.targets.sent, "recorder_replies": self.replies,
             "last_error": self.last_error}
        if self.mode == "scripted":
            d.update(episode=op.episode, ready=op.ready, failures=list(getattr(op.teleop, "failures", ())))
        else:
            cmd = op.last
            d.update(enabled=bool(cmd and cmd.enabled), gripper_closed=bool(cmd and cmd.gripper_closed),
                     intervention=bool(cmd and cmd.intervention))
        return d

    def detach(self) -> None:
        super().detach()
        if getattr(self, "_joy", None) is not None:
            self.destroy_subscription(self._joy)
            self._joy = None

    def release(self) -> None:
        super().release()
        self.operator = None


main = main_for(TeleopNode)

if __name__ == "__main__":
    main()
