"""recorder_node: a lifecycle node that records episodes of the configured topics into the episode store.

Parameters (configs/ros/recorder.yaml): store_path, index_stream, task, rig (configs/robot/<rig>.yaml:
the resolution of image streams that name their `camera`), source, calibration_id, max_episode_s,
reset_s, auto_start, status_period_s, max_stamp_skew_s, on_interrupted (commit | discard | error: what
to do with an episode a crashed recorder left open), autostart (configure + activate at start-up, for
launching without a lifecycle manager), and `streams.<name>.{topic, kind, field, names, camera, dtype,
shape, rate_hz, units, frame, codec, latency_s, interp, reliability, depth, required}` (the
topic-to-stream mapping). A parameter the node does not know (a typo) fails configure, naming it;
parameters are read at configure, so setting one on a configured node is refused with the reason.

Lifecycle: configure opens the store (created with the configured streams if absent; an episode a
crashed recorder left open is committed as `recovered` or discarded first, and logged); activate
subscribes (QoS per stream: Route.qos, `reliability: auto` matching the publishers found, re-checked
on every status period so a publisher that appears later is matched too), serves ~/start,
~/stop_and_save, ~/discard, ~/mark_success, ~/mark_failure (std_srvs/srv/Trigger) and publishes
~/status (std_msgs/msg/String, JSON, TRANSIENT_LOCAL); deactivate saves an open episode, then drops
subscriptions and services; cleanup waits for pending saves and closes the store. The logic lives
in robot_rl.runtime.recording_session.RecordingSession; this node only wires it to ROS.
"""

from __future__ import annotations

import difflib

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import ReliabilityPolicy

from robot_rl.core.errors import ConfigError, RobotRLError
from robot_rl.runtime.recording_session import (RecordingSession, Route, SessionConfig, open_writer, recover_interrupted,
                                        routes_from_config)
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
    "max_stamp_skew_s": 1.0,
    "on_interrupted": "commit",
    "autostart": False,
}
BUILTIN = ("use_sim_time", "start_type_description_service")  # declared by rclpy itself


class RecorderNode(LifecycleNode):
    def __init__(self, name: str = "recorder", **kwargs) -> None:
        super().__init__(name, automatically_declare_parameters_from_overrides=True,
                         allow_undeclared_parameters=True, **kwargs)
        declare_defaults(self, DEFAULTS)
        self.session: RecordingSession | None = None
        self.transport: RosTransport | None = None
        self.stamps: StampMapping | None = None
        self._timer = None
        self._reliable: dict[str, bool] = {}   # topic -> reliability of its subscription
        self._errors: dict[str, int] = {}      # topic -> conversion errors of its subscription already counted
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Parameters are read at configure: a change while configured would be reported as applied but
        do nothing, so it is refused with the way to apply it."""
        if self.session is None:
            return SetParametersResult(successful=True)
        names = ", ".join(p.name for p in params)
        return SetParametersResult(successful=False, reason=(
            f"{self.get_name()}: {names} is read at configure; deactivate and clean up the node, set it, "
            f"then configure again"))

    def _check_parameter_names(self) -> None:
        """Refuse parameters nobody reads (a typo such as max_episod_s would otherwise be ignored);
        keys under streams.<name>. are checked by routes_from_config."""
        unknown = sorted(n for n in self._parameters if n not in DEFAULTS and n not in BUILTIN
                         and not n.startswith("streams.") and not n.startswith("qos_overrides."))
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(DEFAULTS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"node {self.get_name()}: unknown parameter(s) {unknown}{hint}; "
                              f"parameters are {sorted(DEFAULTS)} and streams.<name>.<key>")

    def _log(self, level: str, message: str) -> None:
        # one call site per severity: rclpy refuses a call site whose severity changes between calls
        if level == "info":
            self.get_logger().info(message)
        elif level == "warn":
            self.get_logger().warning(message)
        else:
            self.get_logger().error(message)

    # -- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._check_parameter_names()
            store_path = self._param("store_path")
            if not store_path:
                raise RobotRLError(f"node {self.get_name()}: parameter store_path is empty")
            streams = nested(self, "streams")
            rig = str(self._param("rig"))
            cameras = None
            by_camera = sorted(n for n, e in streams.items() if isinstance(e, dict) and e.get("camera"))
            if rig and by_camera:
                from robot_rl.control.rig import load_rig

                try:
                    cameras = load_rig(rig).cameras
                except ConfigError as e:
                    raise ConfigError(f"{self.get_name()}.rig: {rig!r} must name the rig file whose cameras give the "
                                      f"resolution of streams {by_camera} ({e}); or give those streams a shape") from None
            routes = routes_from_config(streams, where=f"{self.get_name()}.streams", cameras=cameras, rig=rig)
            self.stamps = StampMapping.for_node(self)
            config = SessionConfig(
                task=self._param("task"), rig=rig, source=self._param("source"),
                calibration_id=self._param("calibration_id"),
                max_episode_s=float(self._param("max_episode_s")), reset_s=float(self._param("reset_s")),
                auto_start=bool(self._param("auto_start")), max_stamp_skew_s=float(self._param("max_stamp_skew_s")),
                extra={"ros_stamp_offset_s": self.stamps.offset_s, "recorder_node": self.get_fully_qualified_name()},
            )
            recovered = recover_interrupted(store_path, str(self._param("on_interrupted")))
            if recovered is not None:
                self.get_logger().warning(
                    f"{store_path}: the episode a crashed recorder left open was {recovered['action']} "
                    f"(on_interrupted={self._param('on_interrupted')}): {recovered}")
            writer = open_writer(store_path, routes, index_stream=self._param("index_stream") or None)
            try:
                self.session = RecordingSession(writer, routes, config, clock=self._now, log=self._log)
            except BaseException:
                writer.close()  # releases the store's writer lock for the next configure
                raise
        except (RobotRLError, ValueError, OSError) as e:
            self.get_logger().error(f"configure failed: {e}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"configured: store {store_path}, streams "
                               f"{ {r.spec.name: list(r.spec.shape) for r in routes} }")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.transport = RosTransport(self, self.stamps)
        for topic in self.session.topic_names:
            self.session.topic_names[topic] = self.resolve_topic_name(topic)  # remapped: what the graph shows
        self._reliable.clear()
        self._errors.clear()
        self.session.attach(self.transport, prefix="~/", qos=self._qos)
        self._timer = self.create_timer(float(self._param("status_period_s")), self._tick)
        self.get_logger().info("active: recording services up; subscriptions "
                               f"{ {self.session.topic_names[t]: 'reliable' if r else 'best_effort' for t, r in self._reliable.items()} }")
        return super().on_activate(state)

    # -- QoS matching ------------------------------------------------------------------------
    def _offered_reliable(self, topic: str) -> bool | None:
        """Whether every publisher of `topic` offers reliable delivery (None: no publisher yet)."""
        infos = self.get_publishers_info_by_topic(self.session.topic_names.get(topic, topic))
        if not infos:
            return None
        return all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)

    def _qos(self, route: Route):
        qos = route.qos(self._offered_reliable(route.topic))
        self._reliable[route.topic] = qos.reliable
        return qos

    def _tick(self) -> None:
        """Status period: re-match `reliability: auto` subscriptions to the publishers now present (a
        best-effort publisher never matches a reliable subscription: 0 samples, one warning at discovery)."""
        session = self.session
        if session is None:
            return
        for topic, routes in session.topics.items():
            sub = session.subscription(topic)
            if sub is not None and sub.errors > self._errors.get(topic, 0):
                # messages the transport could not convert (it logs them, throttled): counted in the episode
                session.reject_unconverted(topic, sub.errors - self._errors.get(topic, 0), sub.last_error)
                self._errors[topic] = sub.errors
            route = routes[0]
            if route.reliability != "auto":
                continue
            qos = route.qos(self._offered_reliable(topic))
            if qos.reliable != self._reliable.get(topic):
                lossy = not qos.reliable and route.kind == "image"
                self._log("warn" if lossy else "info",
                          f"topic {session.topic_names[topic]}: publishers offer "
                          f"{'reliable' if qos.reliable else 'best effort'} delivery; resubscribing to match "
                          f"(streams.{route.spec.name}.reliability: auto)"
                          + ("; best effort loses a whole large frame with any fragment: losses are counted as "
                             "missing, a reliable publisher avoids them" if lossy else ""))
                session.subscribe(topic, qos)
                self._reliable[topic] = qos.reliable
                self._errors[topic] = 0
        session.tick()

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
