"""recorder_node: a lifecycle node that records episodes of the configured topics into the episode store.

Parameters (configs/ros/recorder.yaml): store_path, index_stream, task, rig, source, calibration_id,
max_episode_s, reset_s, auto_start, status_period_s, on_interrupted (commit | discard | error: what to
do with an episode a crashed recorder left open), autostart (configure + activate at start-up, for
launching without a lifecycle manager), and `streams.<name>.{topic, kind, field, dtype, shape,
rate_hz, units, frame, codec, latency_s, interp}` (the topic-to-stream mapping).

Lifecycle: configure opens the store (created with the configured streams if absent); activate
subscribes (images BEST_EFFORT depth 5, state RELIABLE depth 100), serves ~/start, ~/stop_and_save,
~/discard, ~/mark_success, ~/mark_failure (std_srvs/srv/Trigger) and publishes ~/status
(std_msgs/msg/String, JSON, TRANSIENT_LOCAL); deactivate saves an open episode, then drops
subscriptions and services; cleanup waits for pending saves and closes the store. The logic lives
in robot_rl.runtime.recording.RecordingSession; this node only wires it to ROS.
"""

from __future__ import annotations

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from robot_rl.core.errors import RobotRLError
from robot_rl.runtime.recording import RecordingSession, SessionConfig, open_writer, routes_from_config
from robot_rl_ros.params import declare_defaults, nested
from robot_rl_ros.shell import run_until_shutdown
from robot_rl_ros.stamps import StampMapping
from robot_rl_ros.transport import RosTransport

DEFAULTS = {
    "store_path": "",
    "index_stream": "",
    "task": "",
    "rig": "",
    "source": "teleop",
    "calibration_id": "",
    "max_episode_s": 0.0,
    "reset_s": 0.0,
    "auto_start": False,
    "status_period_s": 0.5,
    "on_interrupted": "commit",
    "autostart": False,
}


class RecorderNode(LifecycleNode):
    def __init__(self, name: str = "recorder", **kwargs) -> None:
        super().__init__(name, automatically_declare_parameters_from_overrides=True,
                         allow_undeclared_parameters=True, **kwargs)
        declare_defaults(self, DEFAULTS)
        self.session: RecordingSession | None = None
        self.transport: RosTransport | None = None
        self.stamps: StampMapping | None = None
        self._timer = None

    def _param(self, name: str):
        return self.get_parameter(name).value

    # -- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            store_path = self._param("store_path")
            if not store_path:
                raise RobotRLError(f"node {self.get_name()}: parameter store_path is empty")
            routes = routes_from_config(nested(self, "streams"), where=f"{self.get_name()}.streams")
            self.stamps = StampMapping.for_node(self)
            config = SessionConfig(
                task=self._param("task"), rig=self._param("rig"), source=self._param("source"),
                calibration_id=self._param("calibration_id"),
                max_episode_s=float(self._param("max_episode_s")), reset_s=float(self._param("reset_s")),
                auto_start=bool(self._param("auto_start")),
                extra={"ros_stamp_offset_s": self.stamps.offset_s, "recorder_node": self.get_fully_qualified_name()},
            )
            writer = open_writer(store_path, routes, index_stream=self._param("index_stream") or None,
                                 on_interrupted=self._param("on_interrupted"))
            try:
                self.session = RecordingSession(writer, routes, config, clock=self._now)
            except BaseException:
                writer.close()  # releases the store's writer lock for the next configure
                raise
        except (RobotRLError, ValueError) as e:
            self.get_logger().error(f"configure failed: {e}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"configured: store {store_path}, streams {[r.spec.name for r in routes]}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.transport = RosTransport(self, self.stamps)
        self.session.attach(self.transport, prefix="~/")
        self._timer = self.create_timer(float(self._param("status_period_s")), self.session.tick)
        self.get_logger().info("active: recording services up")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.session is not None and self.session.status()["state"] == "recording":
            reply = self.session.stop_and_save()  # recorded data is kept, never dropped by a transition
            self.get_logger().info(f"deactivated while recording: {reply.message}")
        self._detach()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close_session()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close_session()
        return TransitionCallbackReturn.SUCCESS

    # -- helpers -----------------------------------------------------------------------------
    def _now(self) -> float:
        """Session clock: the node's ROS clock mapped like the header stamps (see stamps.py)."""
        return self.stamps.to_seconds(self.get_clock().now().to_msg())

    def _detach(self) -> None:
        """Stop publishing and serving: timer, then the session's link, then every ROS entity."""
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self.session is not None:
            self.session.detach()
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def close_session(self) -> None:
        """Shutdown path (also after Ctrl-C, when the ROS context is already gone): detach first, then
        save an open episode, wait until every saved episode is durable, and close the store."""
        self._detach()
        if self.session is not None:
            status = self.session.status()
            self.session.close(save_open=True)
            if status["state"] == "recording":
                self.get_logger().info(f"episode {status['episode']} saved at shutdown")
            self.session = None


def main(args=None) -> None:
    rclpy.init(args=args)
    node = RecorderNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        code = run_until_shutdown(node, executor)
    finally:
        node.close_session()
        node.destroy_node()
        rclpy.try_shutdown()
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
