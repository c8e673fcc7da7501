"""arm_node bridging the 1 kHz loop process (twin backend): targets move the arm, the loop's target
watchdog holds it when they stop, the e-stop stops it within the configured time, and a lifecycle
deactivate/activate cycle keeps the loop process and brings topics and services back."""

import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS2 wheels not installed: pip install -e '.[ros]'", exc_type=ImportError)
pytestmark = pytest.mark.ros

from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.duration import Duration  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from tests.ros.conftest import REPO, Listener, node_args  # noqa: E402
from tests.ros.test_twin_graph import SUCCESS, JsonTopic, up  # noqa: E402

ARM_PARAMS = REPO / "configs" / "ros" / "arm.yaml"


def send_target(graph, pub, position, quat, in_s: float) -> None:
    msg = PoseStamped()
    msg.header.frame_id = "base"
    msg.header.stamp = (graph.node.get_clock().now() + Duration(nanoseconds=int(in_s * 1e9))).to_msg()
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in position)
    o = msg.pose.orientation
    o.w, o.x, o.y, o.z = (float(v) for v in quat)
    pub.publish(msg)


def test_arm_node_targets_watchdog_estop_and_lifecycle(graph, spin):
    from robot_rl_ros.arm_node import ArmNode

    # a generous state timeout: a loaded CI host does not give the loop SCHED_FIFO
    arm = ArmNode(context=graph.context, cli_args=node_args(ARM_PARAMS, state_timeout_s=0.5))
    up(arm)
    spin(arm)
    L = arm.loop.rig.safety
    listen = Listener(graph)
    listen.listen("/arm/joint_states", JointState)
    listen.listen("/arm/ee_pose", PoseStamped)
    diag = JsonTopic(graph, "/arm/diagnostics", QoSProfile(depth=10))
    target = graph.node.create_publisher(PoseStamped, "/arm/target_pose", 100)
    graph.spin_until(lambda: target.get_subscription_count() > 0 and listen.latest("/arm/ee_pose"), 20, "arm up")
    d = diag.wait(graph, lambda d: d["mode"] == "hold", "holding at start")
    # the loop's deadline misses and what its miss policy did (held once / braked a tick) are published
    assert {"deadline_misses", "miss_held", "miss_braked", "miss_late_wakeup"} <= set(d), d
    start, quat = np.array(d["ref_pos"]), np.array(d["ref_quat"])

    # a stream of targets 5 mm apart at ~20 Hz: the arm tracks them
    for k in range(1, 11):
        send_target(graph, target, start + [0.0, 0.005 * k, 0.0], quat, 0.05)
        next_t = time.monotonic() + 0.05
        graph.spin_until(lambda: time.monotonic() >= next_t, 1, "the next period")
    diag.wait(graph, lambda d: d["mode"] == "tracking" and d["targets"] >= 10, "tracking the targets")
    # the targets stop (a dead policy or teleop): the loop's watchdog holds within target_timeout
    d = diag.wait(graph, lambda d: d["mode"] == "hold" and d["faults"].get("target_timeout", 0) >= 1,
                  "target watchdog", timeout_s=5)
    assert d["targets"] == 10
    graph.spin_until(lambda: diag.value["t"] > d["t"] + 0.8, 5, "settling")
    last = listen.latest("/arm/ee_pose").pose.position
    assert np.linalg.norm([last.x - start[0], last.y - start[1] - 0.05, last.z - start[2]]) < 0.01
    assert np.abs(listen.latest("/arm/joint_states").velocity).max() < 0.02

    # e-stop while moving towards a target 9 cm away
    send_target(graph, target, start + [0.0, 0.05 - 0.09, 0.0], quat, 0.5)
    graph.spin_until(lambda: np.abs(listen.latest("/arm/joint_states").velocity).max() > 0.1, 10, "moving")
    assert graph.call(Trigger, "/arm/estop").success
    d = diag.wait(graph, lambda d: d.get("estop", {}).get("stopped"), "stopped after the e-stop", 10)
    assert d["mode"] == "stopped" and 0 < d["estop"]["stop_s"] <= d["estop"]["max_stop_s"], d
    assert graph.call(Trigger, "/arm/reset").success
    diag.wait(graph, lambda d: d["mode"] == "hold", "released")
    assert graph.call(Trigger, "/arm/gain_profile/compliant").success
    diag.wait(graph, lambda d: d["profile"] == "compliant", "profile switched")

    # lifecycle: deactivate (topics and services go, the loop keeps holding), activate
    pid = arm.loop.proc.pid
    assert arm.trigger_deactivate() == SUCCESS
    graph.spin_until(lambda: target.get_subscription_count() == 0, 10, "target subscription gone")
    assert arm.loop.proc.is_alive() and int(arm.loop.state().mode) == 1     # HOLD
    n = len(listen.got["/arm/joint_states"])
    assert arm.trigger_activate() == SUCCESS
    graph.spin_until(lambda: len(listen.got["/arm/joint_states"]) > n + 20, 10, "publishing again")
    assert arm.loop.proc.pid == pid and L.target_timeout > 0
