"""The graph's real topics round-trip through rosbag2: messages twin_node (and the scripted teleop)
publish are written, as received, into an MCAP bag the way `ros2 bag record` does, and
`robot-rl data import <bag> <store> format=rosbag` with configs/ros/bag_topics.yaml restores them
(counts, stamps, values).

/gripper/joint_states is checked on its own: rclpy's serialize_message (rmw_fastrtps) of a JointState with
empty velocity/effort is 8 bytes longer than its content (Fast DDS sizes the buffer with an estimate that
aligns each empty float64 sequence to 8 bytes and never writes those bytes), which `rosbags` alone
rejects ("CDR message size mismatch"); the converter's decode_cdr accepts exactly that length."""

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS2 wheels not installed: pip install -e '.[ros]'", exc_type=ImportError)
pytest.importorskip("rosbags", reason="rosbags not installed (robot_rl's rosbag converter needs it)")
pytestmark = pytest.mark.ros

from geometry_msgs.msg import PoseStamped, WrenchStamped  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402

from tests.ros.conftest import REPO, Listener, node_args  # noqa: E402
from tests.ros.test_twin_graph import TELEOP_PARAMS, JsonTopic, twin_node, up  # noqa: E402

TOPICS = {"/arm/joint_states": ("sensor_msgs/msg/JointState", JointState, "joint_pos"),
          "/arm/ee_pose": ("geometry_msgs/msg/PoseStamped", PoseStamped, "ee_pose"),
          "/arm/ee_wrench": ("geometry_msgs/msg/WrenchStamped", WrenchStamped, "ee_force"),
          "/arm/target_pose": ("geometry_msgs/msg/PoseStamped", PoseStamped, "ee_target"),
          "/cameras/front/color/image_raw": ("sensor_msgs/msg/Image", Image, "cam_front_rgb")}


def pose7(m):
    p, o = m.pose.position, m.pose.orientation
    return [p.x, p.y, p.z, o.w, o.x, o.y, o.z]


VALUE = {"joint_pos": lambda m: m.position, "ee_pose": pose7, "ee_target": pose7,
         "ee_force": lambda m: [m.wrench.force.x, m.wrench.force.y, m.wrench.force.z, m.wrench.torque.x,
                                m.wrench.torque.y, m.wrench.torque.z],
         "cam_front_rgb": lambda m: np.frombuffer(m.data, np.uint8).reshape(m.height, m.width, 3)}


def test_recorded_graph_topics_import_into_the_store(graph, spin, tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from robot_rl.cli import main
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl_ros.teleop_node import TeleopNode

    listen = Listener(graph)
    for topic, (_, msg_type, stream) in TOPICS.items():
        listen.listen(topic, msg_type, qos_profile_sensor_data if msg_type is Image else 1000)
    status = JsonTopic(graph, "/twin/status")
    twin = twin_node(graph, cameras="front", camera_fps=10.0)
    teleop = TeleopNode(context=graph.context, cli_args=node_args(TELEOP_PARAMS, mode="scripted"))
    up(teleop)
    spin(twin, teleop)
    status.wait(graph, lambda s: s["episode"] == 1, "twin up")
    graph.spin_until(lambda: all(len(listen.got[t]) >= 4 for t in TOPICS), 20, "messages on every topic")

    bag = tmp_path / "graph_bag"   # as `ros2 bag record -s mcap <topics>` writes it: CDR as received, log time
    typestore = get_typestore(Stores.ROS2_JAZZY)
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, (msgtype, _, _) in TOPICS.items():
            conn = writer.add_connection(topic, msgtype, typestore=typestore)
            for ns, msg in listen.got[topic]:
                writer.write(conn, ns, serialize_message(msg))
    received = {stream: list(listen.got[topic]) for topic, (_, _, stream) in TOPICS.items()}

    store = tmp_path / "imported.zarr"
    assert main(["data", "import", str(bag), str(store), "format=rosbag",
                 f"options.topics={REPO / 'configs' / 'ros' / 'bag_topics.yaml'}", "options.missing=skip",
                 "options.image_codec=png"]) == 0
    ep = EpisodeStore.open(store).episode(0)
    for stream, msgs in received.items():
        values, times = ep.read(stream)
        np.testing.assert_allclose(times, [ns * 1e-9 for ns, _ in msgs], rtol=0, atol=1e-6, err_msg=stream)
        expected = np.array([VALUE[stream](m) for _, m in msgs], dtype=float)
        np.testing.assert_allclose(values.astype(float).reshape(expected.shape), expected, atol=1e-9 if
                                   stream != "cam_front_rgb" else 0, err_msg=stream)   # png: lossless


def write_bag(path, topic: str, msgtype: str, msgs) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(topic, msgtype, typestore=get_typestore(Stores.ROS2_JAZZY))
        for ns, msg in msgs:
            writer.write(conn, ns, serialize_message(msg))


def test_gripper_joint_states_as_serialized_by_the_middleware_import(tmp_path):
    from rosbags.serde import SerdeError
    from rosbags.typesys import Stores, get_typestore

    from robot_rl.cli import main
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl_ros.convert import to_msg
    from robot_rl_ros.graph import GRIPPER_JOINT
    from robot_rl_ros.stamps import StampMapping
    from robot_rl.runtime.transport import Sample

    stamps = StampMapping(0.0)
    msgs = [to_msg("joint_state", Sample(100.0 + 0.02 * i, {"position": np.array([0.04 - 0.001 * i])},
                                         names=(GRIPPER_JOINT,)), stamps) for i in range(5)]
    assert list(msgs[0].velocity) == [] and list(msgs[0].effort) == []
    with pytest.raises(SerdeError, match="size mismatch"):  # what the converter has to tolerate
        get_typestore(Stores.ROS2_JAZZY).deserialize_cdr(serialize_message(msgs[0]), "sensor_msgs/msg/JointState")
    write_bag(tmp_path / "bag", "/gripper/joint_states", "sensor_msgs/msg/JointState",
              [(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, m) for m in msgs])
    assert main(["data", "import", str(tmp_path / "bag"), str(tmp_path / "s.zarr"), "format=rosbag",
                 f"options.topics={REPO / 'configs' / 'ros' / 'bag_topics.yaml'}", "options.missing=skip",
                 "options.index_stream=gripper_pos"]) == 0   # the mapping's index (joint_pos) is not in this bag
    values, times = EpisodeStore.open(tmp_path / "s.zarr").episode(0).read("gripper_pos")
    np.testing.assert_array_equal(values[:, 0], [m.position[0] for m in msgs])  # float64 on the wire: exact
    np.testing.assert_allclose(times, [100.0 + 0.02 * i for i in range(5)], rtol=0, atol=1e-6)
