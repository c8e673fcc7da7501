"""ROS2 bag export/import with the real rosbags writer and reader (MCAP and sqlite3)."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from robot_rl.cli import main
from robot_rl.core.errors import ConfigError, StoreError
from robot_rl.data.convert import rosbag as rb
from robot_rl.data.convert.demo import demo_store
from robot_rl.data.episode_store import EpisodeStore

ARRAY_TYPE = "std_msgs/msg/Float64MultiArray"
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "data" / "rosbag_topics.yaml"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_store(tmp_path_factory.getbasetemp())  # read-only, shared by the converter tests


@pytest.fixture(scope="module")
def exported(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("rb_out") / "bags"
    return out, rb.export_store(demo, out, topics=str(CONFIG))


def _bag_messages(bag: Path, topic: str):
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(t, ts.deserialize_cdr(raw, c.msgtype)) for c, t, raw in reader.messages(connections=conns)]


def test_export_writes_standard_messages(demo, exported):
    out, summary = exported
    assert summary["episodes"] == demo.n_episodes and summary["storage"] == "mcap"
    bag = out / "episode_000000"
    assert (bag / "metadata.yaml").is_file() and list(bag.glob("*.mcap"))
    topics = {t["topic_metadata"]["name"]: t["topic_metadata"]["type"] for t in yaml.safe_load(
        (bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["topics_with_message_count"]}
    assert topics["/arm/joint_states"] == "sensor_msgs/msg/JointState"
    assert topics["/cameras/front/color/image_raw"] == "sensor_msgs/msg/Image"
    assert topics["/arm/ee_pose"] == "geometry_msgs/msg/PoseStamped"
    joints = _bag_messages(bag, "/arm/joint_states")
    values, times = demo.read("joint_pos", 0)
    assert len(joints) == len(values)
    assert joints[0][1].name[0] == "panda_joint1"
    np.testing.assert_array_equal(joints[3][1].position, values[3])
    stamp = joints[3][1].header.stamp
    assert abs(stamp.sec + stamp.nanosec * 1e-9 - times[3]) < 1e-9  # header stamps are the sample times
    frames = _bag_messages(bag, "/cameras/front/color/image_raw")
    img, _ = demo.read("cam_front_rgb", 0)
    msg = frames[5][1]
    assert msg.encoding == "rgb8" and (msg.height, msg.width) == (32, 32)
    np.testing.assert_array_equal(np.asarray(msg.data).reshape(32, 32, 3), img[5])  # raw frames, lossless
    pose = _bag_messages(bag, "/arm/ee_pose")[2][1].pose.orientation
    q, _ = demo.read("ee_quat", 0)
    np.testing.assert_allclose([pose.w, pose.x, pose.y, pose.z], q[2])  # ROS x y z w <-> store w x y z


def test_shipped_mapping_exports_a_store_made_by_collect(tmp_path):
    store_path, bags = tmp_path / "collected.zarr", tmp_path / "bags"
    assert main(["collect", "task=reach", "episodes=1", f"store={store_path}", "progress=false", "noise=0.0",
                 "task.params.time_limit=0.5", "policy_hz=10", f"out={tmp_path / 'run'}"]) == 0
    assert main(["data", "export", str(store_path), str(bags), "format=rosbag", f"options.topics={CONFIG}"]) == 0
    store = EpisodeStore.open(store_path)
    topics = {t["topic_metadata"]["name"]: t["topic_metadata"]["type"] for t in yaml.safe_load(
        (bags / "episode_000000" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["topics_with_message_count"]}
    assert topics["/gripper/joint_states"] == "sensor_msgs/msg/JointState"
    assert topics["/arm/ee_wrench"] == "geometry_msgs/msg/WrenchStamped"
    assert "/cameras/front/color/image_raw" not in topics  # collect records no camera by default
    width, t = store.read("gripper_pos", 0)
    msgs = _bag_messages(bags / "episode_000000", "/gripper/joint_states")
    assert [list(m.name) for _, m in msgs[:1]] == [["panda_finger_width"]] and len(msgs) == len(width)
    np.testing.assert_array_equal([m.position[0] for _, m in msgs], width[:, 0])
    summary = rb.export_store(store, tmp_path / "again", topics=str(CONFIG))
    assert summary["unused_topics"] == {"cam_front_rgb": "/cameras/front/color/image_raw",
                                        "cam_wrist_rgb": "/cameras/wrist/color/image_raw"}
    back = rb.import_store(bags, tmp_path / "back.zarr")
    assert sorted(back.streams) == sorted(store.streams)
    np.testing.assert_array_equal(back.read("gripper_pos", 0)[0], width)


def test_round_trip(demo, exported, tmp_path):
    out, _ = exported
    back = rb.import_store(out, tmp_path / "back.zarr")
    assert back.n_episodes == demo.n_episodes and back.index_stream == demo.index_stream
    assert {n: s.to_dict() for n, s in back.streams.items()} == {n: s.to_dict() for n, s in demo.streams.items()}
    for e in range(demo.n_episodes):
        m0, m1 = demo.episode_meta(e), back.episode_meta(e)
        for field in ("task", "rig", "source", "success", "reward_labels", "notes", "start_time"):
            assert m1[field] == m0[field], field
        for name in demo.streams:
            v0, t0 = demo.read(name, e)
            v1, t1 = back.read(name, e)
            np.testing.assert_allclose(t1, t0, atol=1e-9, rtol=0)  # nanosecond stamps
            if name == "cam_front_rgb":
                assert np.abs(v1.astype(int) - v0.astype(int)).mean() < 2.0  # re-encoded as JPEG in the store
            else:
                np.testing.assert_array_equal(v1, v0)


def test_sqlite3_and_default_mapping(demo, tmp_path):
    out = tmp_path / "bags_db3"
    summary = rb.export_store(demo, out, storage="sqlite3", episodes=[1], streams="action,cam_front_rgb")
    assert summary["topics"]["action"]["type"] == "std_msgs/msg/Float64MultiArray"
    assert summary["topics"]["cam_front_rgb"]["type"] == "sensor_msgs/msg/Image"
    assert list((out / "episode_000001").glob("*.db3"))
    back = rb.import_store(out / "episode_000001", tmp_path / "back.zarr")
    assert back.n_episodes == 1 and sorted(back.streams) == ["action", "cam_front_rgb"]
    np.testing.assert_array_equal(back.read("action", 0)[0], demo.read("action", 1)[0])


def _write_robot_bag(path: Path, base_s: float = 0.0) -> None:
    """A bag as `ros2 bag record` on a robot leaves it: no custom data, joints in driver order,
    BGR camera frames with padded rows, one out-of-order stamp, two takes separated by 3 s, stamps
    from base_s + 1000 s (a sim clock; a Unix time with base_s ~ 1.7e9)."""
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.writer import StoragePlugin
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    T = ts.types

    def header(t):
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=int(t), nanosec=int(round(
            (t % 1) * 1e9))), frame_id="panda_link0")

    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        cj = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
        cp = w.add_connection("/franka/ee_pose", "geometry_msgs/msg/PoseStamped", typestore=ts)
        cw = w.add_connection("/ft/wrench", "geometry_msgs/msg/WrenchStamped", typestore=ts)
        ci = w.add_connection("/camera/color/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        w.add_connection("/rosout", "rcl_interfaces/msg/Log", typestore=ts)  # unsupported: ignored
        events = []
        for take, t0 in enumerate((base_s + 1000.0, base_s + 1003.5)):
            for k in range(20):
                events.append((t0 + k * 0.05, "j", k))
            for k in range(5):
                events.append((t0 + k * 0.2 + 0.01, "i", k))
        for t, kind, k in sorted(events):
            ns = int(round(t * 1e9))
            if kind == "j":
                joints = T["sensor_msgs/msg/JointState"](header=header(t), name=["j2", "j1", "j3"],
                                                         position=np.array([2.0, 1.0, 3.0]) + k,
                                                         velocity=np.zeros(3), effort=np.zeros(3))
                w.write(cj, ns, ts.serialize_cdr(joints, cj.msgtype))
                pose = T["geometry_msgs/msg/PoseStamped"](header=header(t), pose=T["geometry_msgs/msg/Pose"](
                    position=T["geometry_msgs/msg/Point"](x=0.1 * k, y=0.2, z=0.3),
                    orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)))
                w.write(cp, ns, ts.serialize_cdr(pose, cp.msgtype))
                stamp_t = t - 0.2 if k == 7 else t  # a late sensor message: stamp older than the previous
                V = T["geometry_msgs/msg/Vector3"]
                wrench = T["geometry_msgs/msg/WrenchStamped"](header=header(stamp_t), wrench=T[
                    "geometry_msgs/msg/Wrench"](force=V(x=1.0, y=2.0, z=float(k)), torque=V(x=0.0, y=0.0, z=0.5)))
                w.write(cw, ns, ts.serialize_cdr(wrench, cw.msgtype))
            else:
                rgb = np.zeros((4, 6, 3), np.uint8)
                rgb[..., 0] = 200  # red
                rgb[..., 2] = k
                padded = np.zeros((4, 6 * 3 + 2), np.uint8)
                padded[:, :18] = rgb[..., ::-1].reshape(4, 18)  # BGR, 2 bytes of padding per row
                img = T["sensor_msgs/msg/Image"](header=header(t), height=4, width=6, encoding="bgr8",
                                                 is_bigendian=0, step=20, data=padded.reshape(-1))
                w.write(ci, ns, ts.serialize_cdr(img, ci.msgtype))


def test_import_robot_bag_with_mapping_and_gap_split(tmp_path):
    bag = tmp_path / "rosbag2_2026_01_01-12_00_00"
    _write_robot_bag(bag)
    mapping = {"index_stream": "joint_pos", "episode_split": "gap", "split_gap_s": 1.0, "topics": [
        {"topic": "/joint_states", "type": "sensor_msgs/msg/JointState", "stream": "joint_pos",
         "field": "position", "names": ["j1", "j2", "j3"], "units": "rad"},
        {"topic": "/franka/ee_pose", "type": "geometry_msgs/msg/PoseStamped", "stream": "ee_pose", "field": "pose"},
        {"topic": "/ft/wrench", "type": "geometry_msgs/msg/WrenchStamped", "stream": "wrench", "field": "wrench"},
        {"topic": "/camera/color/image_raw", "type": "sensor_msgs/msg/Image", "stream": "cam"},
    ]}
    cfg = tmp_path / "topics.yaml"
    cfg.write_text(yaml.safe_dump(mapping))
    store = rb.import_store(bag, tmp_path / "robot.zarr", topics=str(cfg), task="pick")
    assert store.n_episodes == 2 and store.index_stream == "joint_pos"
    spec = store.streams["joint_pos"]
    assert spec.units == "rad" and spec.frame == "panda_link0" and abs(spec.rate_hz - 20) < 3
    assert store.streams["cam"].shape == (4, 6, 3) and store.streams["cam"].interp == "hold"
    j, t = store.read("joint_pos", 1)
    np.testing.assert_array_equal(j[0], [1.0, 2.0, 3.0])  # reordered by name
    np.testing.assert_allclose(t[0], 1003.5)
    pose, _ = store.read("ee_pose", 0)
    np.testing.assert_allclose(pose[3], [0.3, 0.2, 0.3, 1.0, 0.0, 0.0, 0.0])
    img, _ = store.read("cam", 0)
    assert abs(int(img[2, 0, 0, 0]) - 200) < 8 and int(img[2, 0, 0, 2]) < 10  # BGR -> RGB, padding dropped
    meta = store.episode_meta(0)
    assert meta["source"] == "imported" and meta["task"] == "pick"
    assert meta["start_time"] == "unknown"  # stamps from a sim clock date nothing; never the import time
    # the late wrench message of each take (stamp older than its predecessor) is skipped and counted
    assert meta["extra"]["import_skipped"] == {"wrench": 1}
    assert "skipped" in meta["notes"]
    w, _ = store.read("wrench", 0)
    assert len(w) == 19


def test_import_without_mapping_uses_supported_topics(tmp_path):
    bag = tmp_path / "robot_bag"
    _write_robot_bag(bag, base_s=1767268800.0)  # 2026-01-01T12:00:00Z
    store = rb.import_store(bag, tmp_path / "auto.zarr")
    assert store.episode_meta(0)["start_time"] == "2026-01-01T12:16:40.000+00:00"  # the first header stamp
    assert sorted(store.streams) == ["camera_color_image_raw", "franka_ee_pose", "ft_wrench", "joint_states"]
    assert store.streams["franka_ee_pose"].shape == (7,) and store.streams["ft_wrench"].shape == (6,)
    assert store.n_episodes == 1


def test_bad_input_errors(demo, exported, tmp_path):
    out, _ = exported
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="empty: not a rosbag2 bag"):
        rb.import_store(tmp_path / "empty", tmp_path / "x.zarr")
    with pytest.raises(StoreError, match="missing: does not exist"):
        rb.import_store(tmp_path / "missing", tmp_path / "x.zarr")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"topics": [{"topic": "/a", "type": "sensor_msgs/msg/Imu", "stream": "imu"}]}))
    with pytest.raises(ConfigError, match="sensor_msgs/msg/Imu.*not supported"):
        rb.import_store(out, tmp_path / "x.zarr", topics=str(bad))
    bad.write_text(yaml.safe_dump({"topics": [{"topic": "/ee_pose", "type": "geometry_msgs/msg/PoseStamped",
                                               "stream": "ee", "field": "twist"}]}))
    with pytest.raises(ConfigError, match="field 'twist'"):
        rb.import_store(out, tmp_path / "x.zarr", topics=str(bad))
    bad.write_text(yaml.safe_dump({"topics": [{"topic": "/nope", "type": "sensor_msgs/msg/JointState",
                                               "stream": "j"}]}))
    with pytest.raises(StoreError, match=r"\['/nope'\] have no messages"):
        rb.import_store(out, tmp_path / "x.zarr", topics=str(bad))
    assert not (tmp_path / "x.zarr").exists()
    with pytest.raises(ConfigError, match="unknown option"):
        rb.export_store(demo, tmp_path / "y", storage_plugin="mcap")
    with pytest.raises(ConfigError, match=r"none of the mapping's streams \['imu'\] is in"):
        rb.export_store(demo, tmp_path / "y", topics=[{"topic": "/imu", "type": ARRAY_TYPE, "stream": "imu"}])
    with pytest.raises(StoreError, match="already exists"):
        rb.export_store(demo, out)
    with pytest.raises(StoreError, match="negative"):
        rb.export_store(demo, tmp_path / "neg", time_offset_s=-1000.0, episodes=[0])
    assert not (tmp_path / "neg").exists() and not (tmp_path / "neg.partial").exists()


def test_export_never_replaces_recorded_data(demo, tmp_path):
    with pytest.raises(StoreError, match="source store"):
        rb.export_store(demo, demo.path, overwrite=True)
    with pytest.raises(StoreError, match="source store"):
        rb.export_store(demo, Path(demo.path) / "inside", overwrite=True)
    other = tmp_path / "other.zarr"
    from robot_rl.data.convert.demo import write_demo_store

    write_demo_store(other, episodes=1, seconds=0.3)
    with pytest.raises(StoreError, match="is an episode store"):
        rb.export_store(demo, other, overwrite=True, episodes=[0])
    assert (other / "zarr.json").is_file()
