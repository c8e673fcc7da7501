"""recorder_node, installed by colcon and run as a process: lifecycle transitions, and a recording
session driven through its services that ends with the published messages in the store."""

import json

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS2 wheels not installed: pip install -e '.[ros]'", exc_type=ImportError)
pytestmark = pytest.mark.ros

from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from robot_rl.data.episode_store import EpisodeStore  # noqa: E402
from tests.ros.conftest import RECORDER_PARAMS  # noqa: E402

ARM_JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Recorder:
    """Test-side handle on a running recorder_node: lifecycle, services, latest status."""

    def __init__(self, graph, process) -> None:
        self.graph, self.process = graph, process
        self.status = None
        graph.node.create_subscription(String, "/recorder/status", self._on_status, STATUS_QOS)

    def _on_status(self, msg) -> None:
        self.status = json.loads(msg.data)

    def transition(self, transition_id: int) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition_id
        return self.graph.call(ChangeState, "/recorder/change_state", request, timeout_s=20).success

    def state(self) -> str:
        return self.graph.call(GetState, "/recorder/get_state", timeout_s=20, resend_s=2).current_state.label

    def trigger(self, name: str):
        return self.graph.call(Trigger, f"/recorder/{name}")

    def wait_status(self, predicate, what: str, timeout_s: float = 10.0) -> dict:
        try:
            return self.graph.spin_until(lambda: self.status is not None and predicate(self.status) and self.status,
                                         timeout_s, what)
        except AssertionError as e:
            raise AssertionError(f"{e}; last status {self.status}; node log:\n{self.process.log()[-3000:]}") from None

    def has_service(self, name: str) -> bool:
        return any(n == name for n, _ in self.graph.node.get_service_names_and_types())


STREAMS = ("joint_pos", "joint_vel", "ee_pos", "ee_quat", "ee_force", "gripper_pos", "ee_target_pos", "ee_target_quat",
           "cam_front_rgb", "cam_wrist_rgb")


def optional_except(*published) -> dict:
    """Overrides making every stream but `published` optional (an episode missing a required one is refused)."""
    return {f"streams.{s}.required": "false" for s in STREAMS if s not in published}


def recorder_args(store, **params) -> list[str]:
    args = ["--params-file", str(RECORDER_PARAMS), "-p", f"store_path:={store}", "-p", "status_period_s:=0.05"]
    for key, value in params.items():
        args += ["-p", f"{key}:={value}"]
    return args


def test_lifecycle_configure_activate_deactivate_cycle(graph, node_process, tmp_path):
    store = tmp_path / "demos.zarr"
    rec = Recorder(graph, node_process("recorder_node", recorder_args(store)))

    assert rec.state() == "unconfigured"
    assert rec.transition(Transition.TRANSITION_CONFIGURE) and rec.state() == "inactive"
    assert "joint_pos" in EpisodeStore.open(store).streams  # configure created the store
    assert not rec.has_service("/recorder/start")

    assert rec.transition(Transition.TRANSITION_ACTIVATE) and rec.state() == "active"
    assert rec.wait_status(lambda s: s["state"] == "idle", "status idle")["store"] == str(store)
    assert rec.trigger("start").success
    rec.wait_status(lambda s: s["state"] == "recording", "status recording")

    # deactivating while recording saves what was recorded (here nothing: the episode is dropped)
    assert rec.transition(Transition.TRANSITION_DEACTIVATE) and rec.state() == "inactive"
    graph.spin_until(lambda: not rec.has_service("/recorder/start"), 10, "services gone after deactivate")

    assert rec.transition(Transition.TRANSITION_ACTIVATE) and rec.state() == "active"
    reply = rec.trigger("start")
    assert reply.success and "episode 0" in reply.message
    assert rec.transition(Transition.TRANSITION_DEACTIVATE)
    assert rec.transition(Transition.TRANSITION_CLEANUP) and rec.state() == "unconfigured"
    assert rec.process.stop() == 0, rec.process.log()


def _stamp(t_ns: int) -> Time:
    return Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9)


def test_recording_session_through_services_stores_the_published_messages(graph, node_process, tmp_path):
    store = tmp_path / "demos.zarr"
    rec = Recorder(graph, node_process("recorder_node", recorder_args(
        store, autostart="true", task="lift", **optional_except("joint_pos", "joint_vel", "ee_pos", "ee_quat", "cam_front_rgb"))))
    node = graph.node
    joints = node.create_publisher(JointState, "/arm/joint_states", 100)
    pose = node.create_publisher(PoseStamped, "/arm/ee_pose", 100)
    camera = node.create_publisher(Image, "/cameras/front/color/image_raw", 5)
    rec.wait_status(lambda s: s["state"] == "idle", "recorder active", timeout_s=20)
    graph.spin_until(lambda: min(p.get_subscription_count() for p in (joints, pose, camera)) > 0, 10,
                     "recorder subscriptions matched")

    assert rec.trigger("start").success
    t0 = node.get_clock().now().nanoseconds + 10_000_000  # after the episode start
    sent = {"joint": [], "pose": [], "image": []}
    for i in range(20):
        t_ns = t0 + i * 10_000_000  # 100 Hz
        # the publisher's joint order differs from the recorder's: the recorder picks joints by name
        js = JointState(name=ARM_JOINTS[::-1], position=[0.1 * i + j for j in range(7)][::-1], velocity=[-0.01 * i] * 7)
        js.header.stamp = _stamp(t_ns)
        joints.publish(js)
        ps = PoseStamped()
        ps.header.stamp, ps.header.frame_id = _stamp(t_ns + 1_000_000), "base"
        ps.pose.position.x, ps.pose.position.y, ps.pose.position.z = 0.4, 0.01 * i, 0.3
        ps.pose.orientation.w = 1.0
        pose.publish(ps)
        sent["joint"].append((t_ns, [0.1 * i + j for j in range(7)]))
        sent["pose"].append((t_ns + 1_000_000, [0.4, 0.01 * i, 0.3]))
    for i in range(3):  # (reliable delivery; each frame is awaited so the test also shows the order)
        t_ns = t0 + i * 33_000_000
        img = Image(height=128, width=128, encoding="rgb8", step=128 * 3,
                    data=np.full((128, 128, 3), 40 * (i + 1), np.uint8).tobytes())
        img.header.stamp = _stamp(t_ns)
        camera.publish(img)
        sent["image"].append((t_ns, 40 * (i + 1)))
        rec.wait_status(lambda s, n=i + 1: s["samples"]["cam_front_rgb"] == n, f"camera frame {i + 1} recorded")
    status = rec.wait_status(lambda s: s["samples"]["joint_pos"] == 20 and s["samples"]["ee_pos"] == 20,
                             "20 joint states and poses recorded")
    assert status["dropped"] == {} and status["rejected"] == {} and status["missing"] == {}, status

    assert rec.trigger("mark_success").success
    reply = rec.trigger("stop_and_save")
    assert reply.success, reply.message
    rec.wait_status(lambda s: s["episodes_saved"] == 1, "episode saved")

    ep = EpisodeStore.open(store).episode(0)
    assert ep.meta["success"] is True and ep.meta["task"] == "lift" and ep.meta["source"] == "teleop"
    offset = ep.meta["extra"]["ros_stamp_offset_s"]

    def seconds(t_ns):  # header stamp -> robot_rl seconds, as documented in robot_rl_ros/stamps.py
        return t_ns // 10**9 + (t_ns % 10**9) * 1e-9 - offset

    values, times = ep.read("joint_pos")
    np.testing.assert_array_equal(times, [seconds(t) for t, _ in sent["joint"]])
    np.testing.assert_allclose(values, [v for _, v in sent["joint"]], rtol=1e-6)
    np.testing.assert_allclose(ep.read("joint_vel")[0][:, 0], [-0.01 * i for i in range(20)], rtol=1e-6)
    values, times = ep.read("ee_pos")
    np.testing.assert_array_equal(times, [seconds(t) for t, _ in sent["pose"]])
    np.testing.assert_allclose(values, [v for _, v in sent["pose"]], rtol=1e-6)
    np.testing.assert_allclose(ep.read("ee_quat")[0], [[1.0, 0.0, 0.0, 0.0]] * 20)
    values, times = ep.read("cam_front_rgb")
    np.testing.assert_array_equal(times, [seconds(t) for t, _ in sent["image"]])
    for frame, (_, level) in zip(values, sent["image"]):
        assert np.abs(frame.astype(int) - level).max() <= 2  # jpeg, flat image
    assert ep.length("cam_wrist_rgb") == 0 and ep.length("ee_force") == 0  # nobody published these
    assert abs(times[0] - rec.graph.node.get_clock().now().nanoseconds * 1e-9 + offset) < 60


def test_configure_fails_naming_the_bad_parameter(graph, tmp_path, capfd):
    from rclpy.lifecycle import TransitionCallbackReturn

    from robot_rl_ros.recorder_node import RecorderNode

    node = RecorderNode(context=graph.context, cli_args=[
        "--ros-args", *recorder_args(tmp_path / "s.zarr"), "-p", "streams.joint_pos.kind:=odometry"])
    graph.executor.add_node(node)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert graph.call(GetState, "/recorder/get_state", resend_s=2).current_state.label == "unconfigured"
    finally:
        graph.executor.remove_node(node)
        node.destroy_node()
    assert "recorder.streams.joint_pos.kind: 'odometry'" in capfd.readouterr().err
    assert not (tmp_path / "s.zarr").exists()


def test_ctrl_c_while_recording_saves_the_open_episode(graph, node_process, tmp_path):
    store = tmp_path / "demos.zarr"
    rec = Recorder(graph, node_process("recorder_node", recorder_args(
        store, autostart="true", **optional_except("joint_pos", "joint_vel"))))
    joints = graph.node.create_publisher(JointState, "/arm/joint_states", 100)
    rec.wait_status(lambda s: s["state"] == "idle", "recorder active", timeout_s=20)
    graph.spin_until(lambda: joints.get_subscription_count() > 0, 10, "recorder subscribed")
    assert rec.trigger("start").success
    t0 = graph.node.get_clock().now().nanoseconds + 10_000_000
    for i in range(5):
        msg = JointState(name=ARM_JOINTS, position=[float(i)] * 7, velocity=[0.0] * 7)
        msg.header.stamp = _stamp(t0 + i * 10_000_000)
        joints.publish(msg)
    rec.wait_status(lambda s: s["samples"]["joint_pos"] == 5, "5 joint states recorded")

    assert rec.process.stop() == 0, rec.process.log()  # SIGINT, as Ctrl-C or `ros2 launch` shutdown
    ep = EpisodeStore.open(store).episode(0)
    assert ep.length("joint_pos") == 5 and ep.meta["notes"] == "saved at session close"
