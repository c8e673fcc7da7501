"""CDR decoding of the rosbag converter: the unwritten bytes rmw_fastrtps leaves after empty float64
sequences are accepted, no other extra, missing or garbled bytes (no ROS needed)."""

import struct

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags not installed (robot_rl's rosbag converter needs it)")

from robot_rl.core.errors import StoreError  # noqa: E402
from robot_rl.data.convert import rosbag as rb  # noqa: E402

JOINT_STATE = "sensor_msgs/msg/JointState"
# rclpy.serialization.serialize_message (rmw_fastrtps) of JointState(header.stamp.sec=100, name=
# ["panda_finger_width"], position=[0.04], velocity=[], effort=[]): 68 bytes of content, 76 bytes long.
FASTDDS_JOINT_STATE = bytes.fromhex(
    "00010000"                                    # CDR little-endian encapsulation
    "64000000" "00000000"                         # stamp sec=100, nanosec=0
    "01000000" "00" "2713c9"                      # frame_id "" (+3 alignment bytes, not zeroed)
    "01000000" "13000000" + b"panda_finger_width\0".hex() + "00"   # name: 1 string of 19 bytes, pad
    "01000000" "7b14ae47e17aa43f"                 # position: [0.04] (already 8-aligned)
    "00000000" "00000000"                         # velocity: [], effort: []
    "837f00008047f5cb")                           # Fast DDS size estimate - content: unwritten bytes
CONTENT = FASTDDS_JOINT_STATE[:68]


@pytest.fixture(scope="module")
def ts():
    return rb._typestore("ROS2_JAZZY")


def with_sec(raw: bytes, sec: int) -> bytes:
    out = bytearray(raw)
    struct.pack_into("<i", out, 4, sec)
    return bytes(out)


def test_fastdds_length_decodes_where_rosbags_alone_rejects_it(ts):
    from rosbags.serde import SerdeError

    with pytest.raises(SerdeError, match="size mismatch"):
        ts.deserialize_cdr(FASTDDS_JOINT_STATE, JOINT_STATE)
    msg = rb.decode_cdr(ts, FASTDDS_JOINT_STATE, JOINT_STATE, "here")
    assert msg.header.stamp.sec == 100 and list(msg.name) == ["panda_finger_width"]
    assert list(msg.position) == [0.04] and len(msg.velocity) == 0 and len(msg.effort) == 0
    assert len(ts.serialize_cdr(msg, JOINT_STATE)) == 68            # rosbags writes the content only
    assert 4 + rb.fastdds_cdr_size(ts, JOINT_STATE, msg) == 76       # Fast DDS counts 4 + 4 more
    assert rb.decode_cdr(ts, CONTENT, JOINT_STATE, "here").position[0] == 0.04   # exact length: strict path


@pytest.mark.parametrize("raw, error", [
    (CONTENT + bytes(4), "is 72 bytes, but its content ends at byte 68 and Fast DDS would size it 76"),
    (FASTDDS_JOINT_STATE + bytes(8), "is 84 bytes, but its content ends at byte 68"),
    (FASTDDS_JOINT_STATE[:60], "60 bytes is truncated or corrupt"),
    (CONTENT[:12] + b"\x40\x00\x00\x00" + CONTENT[16:], "truncated or corrupt"),  # frame_id length 64
    (CONTENT[:20] + b"\x00\x00\x00\x10" + CONTENT[24:], "truncated or corrupt"),  # 2**28 names
    (b"\x00\x03" + FASTDDS_JOINT_STATE[2:], "truncated or corrupt .*encapsulation"),
], ids=["4 extra", "16 extra", "truncated", "bad string length", "bad sequence length", "bad header"])
def test_other_lengths_or_garbled_bytes_are_errors_naming_the_message(ts, raw, error):
    with pytest.raises(StoreError, match=error) as info:
        rb.decode_cdr(ts, raw, JOINT_STATE, "bag.mcap /gripper/joint_states message 3")
    assert str(info.value).startswith("bag.mcap /gripper/joint_states message 3: sensor_msgs/msg/JointState")


def test_extra_bytes_fastdds_would_not_write_are_errors(ts):
    msg = rb.decode_cdr(ts, FASTDDS_JOINT_STATE, JOINT_STATE, "here")
    msg.velocity, msg.effort = np.array([0.1]), np.array([0.2])     # nothing empty: estimate == content
    raw = bytes(ts.serialize_cdr(msg, JOINT_STATE))
    assert 4 + rb.fastdds_cdr_size(ts, JOINT_STATE, msg) == len(raw) == 92
    with pytest.raises(StoreError, match="is 100 bytes, but its content ends at byte 92 and Fast DDS would size it 92"):
        rb.decode_cdr(ts, raw + FASTDDS_JOINT_STATE[-8:], JOINT_STATE, "here")


def _bag(path, raws):
    from rosbags.rosbag2 import StoragePlugin, Writer

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/gripper/joint_states", JOINT_STATE, typestore=rb._typestore("ROS2_JAZZY"))
        for i, raw in enumerate(raws):
            writer.write(conn, (100 + i) * 10**9, with_sec(raw, 100 + i))
    return path


TOPICS = [{"topic": "/gripper/joint_states", "type": JOINT_STATE, "stream": "gripper_pos", "field": "position"}]


def test_import_of_a_bag_of_fastdds_messages_and_the_error_for_a_corrupt_one(tmp_path):
    bag = _bag(tmp_path / "good", [FASTDDS_JOINT_STATE] * 3)
    values, times = rb.import_store(bag, tmp_path / "good.zarr", topics=TOPICS).episode(0).read("gripper_pos")
    np.testing.assert_array_equal(values[:, 0], [0.04] * 3)
    np.testing.assert_array_equal(times, [100.0, 101.0, 102.0])

    bag = _bag(tmp_path / "bad", [FASTDDS_JOINT_STATE, FASTDDS_JOINT_STATE, CONTENT + bytes(4)])
    with pytest.raises(StoreError, match=r"/gripper/joint_states message 2 \(log time 102000000000 ns\): "
                                         r"sensor_msgs/msg/JointState CDR message is 72 bytes") as info, \
            pytest.warns(UserWarning, match="closing with episode open"):   # kept for `data recover`, not committed
        rb.import_store(bag, tmp_path / "bad.zarr", topics=TOPICS)
    assert str(bag) in str(info.value)
