"""launch/*.launch.py against a stand-in of launch/launch_ros (tests/ros/launch_standin.py): every
node names an installed executable of robot_rl_ros, every argument used is declared, parameter files
exist and configure the node, and the collect graph started as `ros2 launch` would start it works."""

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy", reason="ROS2 wheels not installed: pip install -e '.[ros]'", exc_type=ImportError)
pytestmark = pytest.mark.ros

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from robot_rl.runtime.recording import routes_from_config  # noqa: E402
from tests.ros.conftest import REPO  # noqa: E402
from tests.ros.launch_standin import LaunchPlan, load  # noqa: E402

LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
REQUIRED = {"collect.launch.py": {"store_path": "/tmp/demos.zarr"}}  # arguments without defaults


def installed_executables(install: Path) -> set[str]:
    return {p.name for p in (install / "robot_rl_ros" / "lib" / "robot_rl_ros").iterdir()}


def test_the_collect_launch_file_exists():
    assert "collect.launch.py" in {p.name for p in LAUNCH_FILES}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_starts_installed_executables_with_valid_parameters(path, monkeypatch, ros_install):
    plan = LaunchPlan(load(path, monkeypatch), REQUIRED.get(path.name, {}))
    assert plan.nodes, f"{path.name} launches no node"
    executables = installed_executables(ros_install)
    for node in plan.nodes:
        assert node.package == "robot_rl_ros", f"{path.name}: node {node.name} is in package {node.package}"
        assert node.executable in executables, f"{path.name}: {node.executable} is not a console script ({executables})"
        files, values = plan.parameters(node)
        for f in files:
            assert f.is_file(), f"{path.name}: parameter file {f} of {node.name} does not exist"
            doc = yaml.safe_load(f.read_text())
            assert "ros__parameters" in doc.get(node.name, doc.get("/**", {})), \
                f"{path.name}: {f} has no `{node.name}: ros__parameters:` section"
        for a, b in plan.remappings(node):
            assert a.startswith("/") and b.startswith("/"), f"{path.name}: remapping {a} -> {b} of {node.name}"
        if node.executable == "recorder_node":
            params = yaml.safe_load(files[0].read_text())[node.name]["ros__parameters"] | values
            routes = routes_from_config(params["streams"])
            assert {a for a, _ in plan.remappings(node)} <= {r.topic for r in routes}
            assert params["store_path"] == REQUIRED[path.name]["store_path"] and node.lifecycle


def test_collect_graph_runs_as_launched_with_remapped_camera(monkeypatch, ros_install, graph, node_process, tmp_path):
    store = tmp_path / "demos.zarr"
    plan = LaunchPlan(load(REPO / "launch" / "collect.launch.py", monkeypatch),
                      {"store_path": str(store), "task": "123", "front_camera": "/camera/camera/color/image_raw"})
    (recorder,) = plan.nodes
    process = node_process(recorder.executable, plan.ros_args(recorder, tmp_path))

    statuses = []
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    graph.node.create_subscription(String, "/recorder/status", lambda m: statuses.append(json.loads(m.data)), qos)
    camera = graph.node.create_publisher(Image, "/camera/camera/color/image_raw", 5)
    try:
        graph.spin_until(lambda: statuses and statuses[-1]["state"] == "idle", 20, "recorder self-activated")
        graph.spin_until(lambda: camera.get_subscription_count() > 0, 10, "recorder subscribed to the remapped camera")
    except AssertionError as e:
        raise AssertionError(f"{e}; node log:\n{process.log()[-3000:]}") from None
    assert statuses[-1]["store"] == str(store)
    assert process.stop() == 0, process.log()
    from robot_rl.data.store import EpisodeStore

    assert "cam_front_rgb" in EpisodeStore.open(store).streams
