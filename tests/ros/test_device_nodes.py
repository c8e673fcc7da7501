"""camera_node and gripper_node on emulated devices: an OpenCV camera playing a video file (the
RealSense path is the same node with driver realsense), and the Robotiq register-map emulator on a
socat pty pair (the unchanged Modbus driver)."""

import time

import cv2
import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy", reason="ROS2 wheels not installed: pip install -e '.[ros]'", exc_type=ImportError)
pytestmark = pytest.mark.ros

from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402

from tests.hardware.conftest import pty_pair  # noqa: E402,F401  (fixture)
from tests.ros.conftest import REPO, Listener, node_args  # noqa: E402
from tests.ros.test_twin_graph import JsonTopic, up  # noqa: E402

N = 40


def test_camera_node_publishes_frames_with_camera_info_of_the_same_stamp(graph, spin, tmp_path):
    from robot_rl_ros.camera_node import CameraNode

    video = tmp_path / "front.avi"   # frame i: flat RGB (0, 0, 5 i) -> blue rising
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (128, 128))
    for i in range(N):
        writer.write(np.full((128, 128, 3), (5 * i, 0, 0), np.uint8))
    writer.release()
    listen = Listener(graph)
    listen.listen("/cameras/front/color/image_raw", Image, qos_profile_sensor_data)
    listen.listen("/cameras/front/color/camera_info", CameraInfo, qos_profile_sensor_data)
    status = JsonTopic(graph, "/camera_front/status")
    params = tmp_path / "camera.yaml"   # configs/ros/camera.yaml's section, with the OpenCV driver's arguments
    params.write_text(yaml.safe_dump({"camera_front": {"ros__parameters": {
        "camera": "front", "driver": "opencv", "device_args": {"source": str(video)},
        "calibration": str(REPO / "calibration" / "twin" / "cameras.yaml")}}}))
    camera = CameraNode("camera_front", context=graph.context, cli_args=node_args(params))
    up(camera)
    spin(camera)
    s = status.wait(graph, lambda s: s.get("ended"), "the whole file played", timeout_s=20)
    assert s["frames"] == N
    images = listen.got["/cameras/front/color/image_raw"]
    infos = dict(listen.got["/cameras/front/color/camera_info"])
    assert images, "no frame arrived"
    for ns, img in images:   # best effort: frames published before discovery matched may be missing
        assert img.encoding == "rgb8" and (img.height, img.width) == (128, 128)
        assert img.header.frame_id == "front_color_optical_frame"
    # each frame's CameraInfo carries the same stamp and calibrated intrinsics (best effort drops either
    # message alone under load, so: most frames matched, and every matched pair right)
    matched = [infos[ns] for ns, _ in images if ns in infos]
    assert len(matched) >= len(images) // 2, f"{len(matched)} of {len(images)} frames have a CameraInfo of their stamp"
    for info in matched:
        assert (info.width, info.height) == (128, 128) and info.k[0] > 0 and info.k[8] == 1.0
    blue = [np.frombuffer(m.data, np.uint8).reshape(128, 128, 3)[..., 2].mean() for _, m in images]
    assert blue == sorted(blue) and blue[-1] - blue[0] >= 5 * (len(blue) - 1) - 10     # frames in file order
    assert [ns for ns, _ in images] == sorted(ns for ns, _ in images)


def test_gripper_node_follows_gripper_commands_and_publishes_the_opening(graph, spin, pty_pair):  # noqa: F811
    pytest.importorskip("serial", reason="pyserial not installed: pip install -e '.[hardware]'")
    from robot_rl.hardware.emulators.robotiq_emulator import RobotiqEmulator
    from robot_rl_ros.gripper_node import GripperNode

    emu_end, driver_end = pty_pair
    with RobotiqEmulator(emu_end, activation_time_s=0.02, time_scale=20.0) as emu:
        gripper = GripperNode(context=graph.context, cli_args=node_args(
            REPO / "configs" / "ros" / "gripper.yaml", **{"device_args.port": driver_end,
                                                          "device_args.timeout_s": 0.5}))
        up(gripper)
        spin(gripper)
        listen = Listener(graph)
        listen.listen("/gripper/joint_states", JointState)
        command = graph.node.create_publisher(JointState, "/gripper/command", 10)
        graph.spin_until(lambda: command.get_subscription_count() > 0 and listen.latest("/gripper/joint_states"), 10,
                         "gripper node up")
        stroke = gripper.stroke
        assert listen.latest("/gripper/joint_states").position[0] == pytest.approx(stroke, abs=1e-3)   # open
        command.publish(JointState(name=["closure"], position=[1.0]))
        graph.spin_until(lambda: listen.latest("/gripper/joint_states").position[0] < 0.002, 10, "closed")
        command.publish(JointState(name=["closure"], position=[0.5]))
        graph.spin_until(lambda: abs(listen.latest("/gripper/joint_states").position[0] - 0.5 * stroke) < 0.002, 10,
                         "half open")
        moves = [c for c in emu.commands if c.get("go_to")]
        assert len(moves) == 2, emu.commands
        stamps = [ns for ns, _ in listen.got["/gripper/joint_states"]]
        assert stamps == sorted(stamps) and listen.latest("/gripper/joint_states").name == ["panda_finger_width"]
        gripper.close()     # while the emulator still answers: disconnect leaves the gripper stopped
    assert emu.commands[-1]["go_to"] is False


def test_teleop_node_gamepad_moves_the_target_and_its_buttons_drive_the_recorder(graph, spin):
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import Joy
    from std_srvs.srv import Trigger

    from robot_rl_ros.teleop_node import TeleopNode

    calls = []

    def on_start(request, response):
        calls.append("start")
        response.success, response.message = True, "episode 0 recording"
        return response

    graph.node.create_service(Trigger, "/recorder/start", on_start)
    listen = Listener(graph)
    listen.listen("/arm/target_pose", PoseStamped)
    listen.listen("/gripper/command", JointState)
    ee = graph.node.create_publisher(PoseStamped, "/arm/ee_pose", 10)
    joy = graph.node.create_publisher(Joy, "/joy", qos_profile_sensor_data)
    teleop = TeleopNode(context=graph.context, cli_args=node_args(
        REPO / "configs" / "ros" / "teleop.yaml", mode="device", device="gamepad",
        **{"teleop.require_deadman": "true"}))
    up(teleop)
    spin(teleop)
    graph.spin_until(lambda: ee.get_subscription_count() > 0 and joy.get_subscription_count() > 0, 10, "teleop up")
    pose = PoseStamped()
    pose.header.frame_id = "base"
    pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = 0.4, 0.0, 0.3
    pose.pose.orientation.x = 1.0
    ee.publish(pose)

    # stick forward without the deadman: nothing is commanded
    joy.publish(Joy(axes=[0.0, -1.0, 0.0, 0.0, 0.0, 0.0], buttons=[0] * 8))
    graph.spin_until(lambda: teleop.device.axes()[0] > 0.5, 5, "the stick deflected")
    t_deflected = time.monotonic()
    graph.spin_until(lambda: teleop.operator.last is not None and teleop.operator.last.t > t_deflected + 0.1, 5,
                     "device reads with the stick deflected")
    assert not teleop.operator.last.enabled and listen.got["/arm/target_pose"] == []
    # deadman (left bumper) held: the target moves +x from the measured TCP, at most max_target_lead ahead
    joy.publish(Joy(axes=[0.0, -1.0, 0.0, 0.0, 0.0, 0.0], buttons=[0, 0, 0, 0, 1, 0, 0, 0]))
    graph.spin_until(lambda: len(listen.got["/arm/target_pose"]) >= 10, 10, "targets while the deadman is held")
    xs = [m.pose.position.x for _, m in listen.got["/arm/target_pose"]]
    assert xs == sorted(xs) and 0.4 < xs[-1] <= 0.4 + 0.04 + 1e-9
    last = listen.got["/arm/target_pose"][-1][1]
    assert last.header.frame_id == "base" and abs(last.pose.position.y) < 1e-9 and last.pose.orientation.x == 1.0
    assert listen.latest("/gripper/command").position[0] == 0.0       # open until toggled
    # the start button calls the recorder
    joy.publish(Joy(axes=[0.0] * 6, buttons=[0, 0, 0, 0, 1, 0, 0, 1]))
    graph.spin_until(lambda: calls == ["start"], 10, "/recorder/start called")
