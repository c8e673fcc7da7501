"""twin_node with real rclpy: a recording session driven by the scripted teleop node, the e-stop, and a
lifecycle deactivate/activate cycle (nodes in-process on a multi-threaded executor)."""

import json

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS2 wheels not installed: pip install -e '.[ros]'", exc_type=ImportError)
pytestmark = pytest.mark.ros

from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402

from robot_rl.data.episode_store import EpisodeStore  # noqa: E402
from tests.ros.conftest import REPO, RECORDER_PARAMS, Listener, node_args  # noqa: E402

TWIN_PARAMS = REPO / "configs" / "ros" / "twin.yaml"
TELEOP_PARAMS = REPO / "configs" / "ros" / "teleop.yaml"
SUCCESS = TransitionCallbackReturn.SUCCESS
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def twin_node(graph, **params):
    from robot_rl_ros.twin_node import TwinNode

    node = TwinNode(context=graph.context, cli_args=node_args(TWIN_PARAMS, **{"cameras": "none", **params}))
    up(node)
    return node


def up(node) -> None:
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS


class JsonTopic:
    """Latest value of a latched JSON status topic."""

    def __init__(self, graph, topic: str, qos=LATCHED) -> None:
        self.value = None
        graph.node.create_subscription(String, topic, lambda m: setattr(self, "value", json.loads(m.data)), qos)

    def wait(self, graph, predicate, what: str, timeout_s: float = 15.0) -> dict:
        try:
            return graph.spin_until(lambda: self.value is not None and predicate(self.value) and self.value,
                                    timeout_s, what)
        except AssertionError as e:
            raise AssertionError(f"{e}; last value {self.value}") from None


def seconds(ns: int, offset: float) -> float:
    """Header stamp (ns) -> robot_rl seconds, exactly as robot_rl_ros.stamps maps it."""
    return ns // 10**9 + (ns % 10**9) * 1e-9 - offset


def test_recording_session_with_scripted_teleop_stores_the_published_topics(graph, spin, tmp_path):
    from robot_rl_ros.recorder_node import RecorderNode
    from robot_rl_ros.teleop_node import TeleopNode

    store = tmp_path / "demos.zarr"
    listen = Listener(graph)
    for topic, kind in (("/arm/joint_states", JointState), ("/arm/ee_pose", PoseStamped),
                        ("/arm/target_pose", PoseStamped), ("/gripper/joint_states", JointState)):
        listen.listen(topic, kind)
    listen.listen("/cameras/front/color/image_raw", Image, qos_profile_sensor_data)
    listen.listen("/cameras/front/color/camera_info", CameraInfo, qos_profile_sensor_data)
    twin_status, rec_status = JsonTopic(graph, "/twin/status"), JsonTopic(graph, "/recorder/status")
    teleop_status = JsonTopic(graph, "/teleop/status")

    twin = twin_node(graph, cameras="front", camera_fps=5.0)
    teleop = TeleopNode(context=graph.context, cli_args=node_args(TELEOP_PARAMS, mode="scripted", task="reach"))
    recorder = RecorderNode(context=graph.context, cli_args=node_args(   # the twin renders no wrist camera here
        RECORDER_PARAMS, store_path=store, task="reach", source="scripted", status_period_s=0.05,
        **{"streams.cam_wrist_rgb.required": "false"}))
    for node in (teleop, recorder):
        up(node)
    spin(twin, teleop, recorder)
    joints = twin.bridge.pub_joints.handle
    graph.spin_until(lambda: joints.get_subscription_count() >= 3, 15, "twin joint states matched (test, teleop, "
                     "recorder)")

    assert graph.call(Trigger, "/twin/reset_episode").success
    teleop_status.wait(graph, lambda s: s["episode"] == 2 and s["ready"], "teleop follows episode 2")
    assert graph.call(Trigger, "/recorder/start").success
    twin_status.wait(graph, lambda s: s["episode"] == 2 and s["success"], "the scripted teleop reaches the goal")
    rec_status.wait(graph, lambda s: s["samples"].get("cam_front_rgb", 0) >= 3, "camera frames recorded")
    assert graph.call(Trigger, "/recorder/mark_success").success
    assert graph.call(Trigger, "/recorder/stop_and_save").success
    status = rec_status.wait(graph, lambda s: s["episodes_saved"] == 1, "episode saved")
    assert status["rejected"] == {} and status["dropped"] == {}, status

    ep = EpisodeStore.open(store).episode(0)
    assert ep.meta["success"] is True and ep.meta["task"] == "reach" and ep.meta["source"] == "scripted"
    offset = ep.meta["extra"]["ros_stamp_offset_s"]

    def check(stream, topic, value_of, reliable=True, tol=1e-6, mean_tol=None):
        values, times = ep.read(stream)
        assert len(times) >= 3, f"{stream}: {len(times)} samples"
        got = [(seconds(ns, offset), msg) for ns, msg in listen.got[topic]]
        window = [(t, m) for t, m in got if times[0] <= t <= times[-1]]
        if reliable:   # every message published during the episode is in the store, and nothing else
            np.testing.assert_array_equal(times, [t for t, _ in window], err_msg=stream)
        by_time = dict(window)
        assert set(times) <= set(by_time), f"{stream}: stored times that were never published"
        expected = np.array([value_of(by_time[t]) for t in times]).reshape(len(times), -1).astype(float)
        stored = values.reshape(len(times), -1).astype(float)
        if mean_tol is not None:   # lossy codec (jpeg): compare frame by frame on average
            assert np.abs(stored - expected).mean(axis=1).max() < mean_tol, stream
        else:
            np.testing.assert_allclose(stored, expected, atol=tol, err_msg=stream)
        return times

    check("joint_pos", "/arm/joint_states", lambda m: m.position)
    check("joint_vel", "/arm/joint_states", lambda m: m.velocity, tol=1e-5)
    check("ee_pos", "/arm/ee_pose", lambda m: [m.pose.position.x, m.pose.position.y, m.pose.position.z])
    check("ee_quat", "/arm/ee_pose", lambda m: [m.pose.orientation.w, m.pose.orientation.x, m.pose.orientation.y,
                                                 m.pose.orientation.z])
    check("ee_target_pos", "/arm/target_pose", lambda m: [m.pose.position.x, m.pose.position.y, m.pose.position.z])
    check("gripper_pos", "/gripper/joint_states", lambda m: m.position)
    frames = check("cam_front_rgb", "/cameras/front/color/image_raw",   # best effort: stored frames were sent
                   lambda m: np.frombuffer(m.data, np.uint8).reshape(m.height, m.width, 3), reliable=False,
                   mean_tol=2.0)
    # every frame came with its CameraInfo (same stamp, the calibrated intrinsics)
    infos = {seconds(ns, offset): m for ns, m in listen.got["/cameras/front/color/camera_info"]}
    assert all(infos[t].width == 128 and infos[t].k[0] > 0 for t in frames if t in infos)
    # the episode's states end where the twin reported success
    final = ep.read("ee_pos")[0][-1]
    goal = twin.sim.state().task_obs
    assert np.linalg.norm(final - goal) < 0.03


def test_estop_stops_the_twin_within_the_configured_time_and_lifecycle_cycles(graph, spin):
    twin = spin(twin_node(graph, **{"bridge.diagnostics_rate_hz": 50.0}))
    max_stop_s = twin.bridge_cfg.estop_max_stop_s
    listen = Listener(graph)
    listen.listen("/arm/joint_states", JointState)
    diag = JsonTopic(graph, "/arm/diagnostics", QoSProfile(depth=10))
    target = graph.node.create_publisher(PoseStamped, "/arm/target_pose", 10)
    graph.spin_until(lambda: target.get_subscription_count() > 0 and listen.latest("/arm/joint_states"), 15,
                     "twin up and subscribed")

    snap = twin.sim.state()
    goal = PoseStamped()
    goal.header.frame_id = "base"
    goal.header.stamp = (graph.node.get_clock().now() + rclpy_duration(0.5)).to_msg()
    goal.pose.position.x, goal.pose.position.y, goal.pose.position.z = snap.ee_pos + [0.0, 0.09, 0.0]
    w, x, y, z = snap.ee_quat
    goal.pose.orientation.w, goal.pose.orientation.x, goal.pose.orientation.y, goal.pose.orientation.z = w, x, y, z
    target.publish(goal)
    graph.spin_until(lambda: np.abs(listen.latest("/arm/joint_states").velocity).max() > 0.1, 10, "the arm moves")

    reply = graph.call(Trigger, "/arm/estop")
    assert reply.success and "e-stop latched" in reply.message
    d = diag.wait(graph, lambda d: d.get("estop", {}).get("stopped"), "arm stopped after the e-stop", 10)
    assert d["mode"] == "stopped" and d["faults"]["estop"] == 1
    assert 0 < d["estop"]["stop_s"] <= max_stop_s, d["estop"]
    def after_stop():
        return [m for ns, m in listen.got["/arm/joint_states"] if seconds(ns, twin.stamps.offset_s) > d["t"]]

    graph.spin_until(lambda: len(after_stop()) > 20, 10, "states after the stop")
    assert max(np.abs(m.velocity).max() for m in after_stop()) < 0.05        # and it stays stopped

    assert graph.call(Trigger, "/arm/reset").success
    diag.wait(graph, lambda d: d["mode"] == "hold" and "estop" not in d, "released: holding")

    # lifecycle: deactivate removes topics and services, activate brings them back
    assert twin.trigger_deactivate() == SUCCESS
    graph.spin_until(lambda: not any(n == "/arm/estop" for n, _ in graph.node.get_service_names_and_types()), 10,
                     "services gone")
    n_before = len(listen.got["/arm/joint_states"])
    assert twin.trigger_activate() == SUCCESS
    graph.spin_until(lambda: len(listen.got["/arm/joint_states"]) > n_before + 10, 15, "publishing again")
    assert graph.call(Trigger, "/arm/estop").success


def rclpy_duration(seconds_: float):
    from rclpy.duration import Duration

    return Duration(nanoseconds=int(seconds_ * 1e9))
