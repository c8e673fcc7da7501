"""RosTransport: the Transport interface on real rclpy nodes, and the message conversions."""

import threading

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS2 wheels not installed: pip install -e '.[ros]'", exc_type=ImportError)
pytestmark = pytest.mark.ros

from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from robot_rl.runtime.transport import SENSOR_DATA, STATE, STATUS, Reply, Sample, Topic, TransportError  # noqa: E402
from robot_rl_ros.convert import image_to_array, to_msg, to_sample  # noqa: E402
from robot_rl_ros.stamps import StampMapping  # noqa: E402
from robot_rl_ros.transport import RosTransport  # noqa: E402
from tests.ros.conftest import wait_for  # noqa: E402

STAMPS = StampMapping(1.7e9)

SAMPLES = {
    "joint_state": Sample(12.5, {"position": np.arange(7.0), "velocity": np.ones(7), "effort": -np.ones(7)}, "joint",
                          tuple(f"j{i}" for i in range(7))),
    "pose": Sample(12.5, {"position": [0.4, -0.1, 0.3], "quat": [0.5, 0.5, -0.5, 0.5]}, "base"),
    "wrench": Sample(12.5, {"force": [1.0, 2.0, 3.0], "torque": [0.1, 0.2, 0.3]}, "ee"),
    "image": Sample(12.5, {"image": np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)}, "cam"),
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_conversion_round_trip_keeps_time_frame_and_fields(kind):
    sample = SAMPLES[kind]
    back = to_sample(kind, to_msg(kind, sample, STAMPS), STAMPS)
    assert back.t == pytest.approx(sample.t, abs=1e-6) and back.frame == sample.frame and back.names == sample.names
    assert sorted(back.fields) == sorted(sample.fields)
    for name, value in sample.fields.items():
        np.testing.assert_array_equal(back.fields[name], value)


def test_image_encodings_with_padding_and_byte_order():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    bgr = Image(height=2, width=3, encoding="bgr8", step=12,
                data=np.pad(rgb[:, :, ::-1].reshape(2, 9), ((0, 0), (0, 3))).tobytes())
    np.testing.assert_array_equal(image_to_array(bgr), rgb)
    depth = np.array([[1, 2], [300, 65535]], dtype=np.uint16)
    big = Image(height=2, width=2, encoding="16UC1", step=4, is_bigendian=1, data=depth.astype(">u2").tobytes())
    np.testing.assert_array_equal(image_to_array(big), depth)
    with pytest.raises(TransportError, match="topic /cam: image encoding 'yuv422' not supported"):
        image_to_array(Image(height=1, width=1, encoding="yuv422", step=2, data=b"00"), "/cam")


def test_joint_state_with_mismatched_velocity_is_rejected_naming_the_topic():
    msg = to_msg("joint_state", Sample(0.0, {"position": np.zeros(7)}), STAMPS)
    msg.velocity = [0.0] * 6
    with pytest.raises(TransportError, match="/arm/joint_states: JointState.velocity has 6 entries for 7"):
        to_sample("joint_state", msg, STAMPS, "/arm/joint_states")


@pytest.fixture
def spun_nodes(graph):
    """Two nodes in one context, spun by a background executor (RosTransport.call blocks)."""
    other = graph.node.__class__("robot_rl_test_b", context=graph.context)
    executor = MultiThreadedExecutor(context=graph.context)
    executor.add_node(graph.node)
    executor.add_node(other)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield graph.node, other
    executor.shutdown()
    thread.join(5)
    other.destroy_node()


def test_samples_and_status_cross_nodes_and_services_answer(spun_nodes):
    a, b = spun_nodes
    stamps = StampMapping.for_node(a)
    with RosTransport(a, stamps) as ta, RosTransport(b, stamps) as tb:
        got, statuses, done = [], [], threading.Event()

        def on_joint(msg):
            got.append(msg)
            if len(got) == 10:
                done.set()

        tb.subscribe(Topic("/arm/joint_states", "joint_state", STATE), on_joint)
        tb.subscribe(Topic("/recorder/status", "status", STATUS), statuses.append)
        pub = ta.publisher(Topic("/arm/joint_states", "joint_state", STATE))
        ta.publisher(Topic("/recorder/status", "status", STATUS)).publish({"state": "idle"})  # latched
        ta.serve("/arm/hold", "set_bool", lambda on: Reply(True, f"hold={on}"))
        ta.serve("/arm/reset", "trigger", lambda _: 1 / 0)

        # services are only callable once discovered, which also means the nodes matched
        assert tb.call("/arm/hold", "set_bool", True, timeout_s=10) == Reply(True, "hold=True")
        reply = tb.call("/arm/reset", "trigger", timeout_s=10)
        assert not reply.success and "ZeroDivisionError" in reply.message
        wait_for(lambda: pub.handle.get_subscription_count() > 0, 10, "/arm/joint_states matched")
        for i in range(10):
            pub.publish(Sample(100.0 + i * 0.01, {"position": np.full(7, float(i))}))
        assert done.wait(10), f"received {len(got)} of 10 joint states"
        assert [s.t for s in got] == pytest.approx([100.0 + i * 0.01 for i in range(10)], abs=1e-6)
        assert statuses == [{"state": "idle"}]
        with pytest.raises(TransportError, match="/nobody: not available after 0.2 s"):
            tb.call("/nobody", "trigger", timeout_s=0.2)
