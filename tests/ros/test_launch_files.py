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

from robot_rl.control.rig import load_rig  # noqa: E402
from robot_rl.runtime.recording_session import routes_from_config  # noqa: E402
from tests.ros.conftest import REPO  # noqa: E402
from tests.ros.launch_standin import LaunchPlan, load  # noqa: E402

LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
REQUIRED = {  # arguments without defaults
    "collect.launch.py": {"store_path": "/tmp/demos.zarr"},
    "deploy.launch.py": {"checkpoint": "/tmp/ckpt"},
    "finetune.launch.py": {"checkpoint": "/tmp/ckpt"},
}
HARDWARE = {"arm", "gripper", "camera_front", "camera_wrist"}
VARIANTS = [(path, overrides) for path in LAUNCH_FILES for overrides in (
    [{}, {"use_twin": "true"}] if path.name != "twin.launch.py" else
    [{}, {"checkpoint": "/tmp/ckpt", "store_path": "/tmp/rollouts.zarr"}])]


def installed_executables(install: Path) -> set[str]:
    return {p.name for p in (install / "robot_rl_ros" / "lib" / "robot_rl_ros").iterdir()}


def test_the_four_launch_files_exist():
    assert {"collect.launch.py", "deploy.launch.py", "finetune.launch.py", "twin.launch.py"} <= \
        {p.name for p in LAUNCH_FILES}


@pytest.mark.parametrize("path,overrides", VARIANTS, ids=lambda v: v.name if isinstance(v, Path) else
                         ",".join(f"{k}:={x}" for k, x in v.items()) or "defaults")
def test_launch_file_starts_installed_executables_with_valid_parameters(path, overrides, monkeypatch, ros_install):
    plan = LaunchPlan(load(path, monkeypatch), {**REQUIRED.get(path.name, {}), **overrides})
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
        assert node.lifecycle and values.get("autostart") is True, f"{path.name}: {node.name} does not self-activate"
        params = {}
        for f in files:   # later files override earlier ones, then the launch file's own values
            doc = yaml.safe_load(f.read_text())
            params |= (doc.get(node.name) or doc["/**"])["ros__parameters"]
        params |= values
        if node.executable == "recorder_node":
            routes = routes_from_config(params["streams"], cameras=load_rig(params["rig"]).cameras)
            assert {a for a, _ in plan.remappings(node)} <= {r.topic for r in routes}
            assert params["store_path"] == {**REQUIRED.get(path.name, {}), **overrides}["store_path"]
        if node.executable == "policy_node":
            assert params["checkpoint"] == "/tmp/ckpt"
            assert params["mode"] == ("actor" if path.name == "finetune.launch.py" else "deploy")
    names = {n.name for n in plan.nodes}
    if path.name != "twin.launch.py":   # use_twin swaps the hardware nodes for the twin, nothing else
        twin = overrides.get("use_twin") == "true"
        assert ("twin" in names) == twin and (HARDWARE & names) == (set() if twin else HARDWARE), names
        others = {n.name: plan.remappings(n) for n in plan.nodes if n.name not in HARDWARE | {"twin"}}
        flipped = LaunchPlan(load(path, monkeypatch), {**REQUIRED.get(path.name, {}),
                                                       "use_twin": "false" if twin else "true"})
        assert others == {n.name: flipped.remappings(n) for n in flipped.nodes if n.name in others}
    else:
        assert names == ({"twin", "policy", "recorder"} if overrides else {"twin", "teleop"}), names


def test_finetune_declares_the_actor_link_parameters(monkeypatch):
    plan = LaunchPlan(load(REPO / "launch" / "finetune.launch.py", monkeypatch),
                      {"checkpoint": "/tmp/ckpt", "learner_host": "10.0.0.5", "learner_port": "7000", "token": "s3"})
    (actor,) = [n for n in plan.nodes if n.executable == "policy_node"]
    _, values = plan.parameters(actor)
    expected = {"mode": "actor", "learner_host": "10.0.0.5", "learner_port": 7000, "token": "s3"}
    assert {k: values.get(k) for k in expected} == expected


def test_collect_graph_runs_as_launched_with_remapped_camera(monkeypatch, ros_install, graph, node_process, tmp_path):
    store = tmp_path / "demos.zarr"
    plan = LaunchPlan(load(REPO / "launch" / "collect.launch.py", monkeypatch),
                      {"store_path": str(store), "task": "123", "front_camera": "/camera/camera/color/image_raw",
                       "drivers": "external", "teleop": "none"})
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
    from robot_rl.data.episode_store import EpisodeStore

    assert "cam_front_rgb" in EpisodeStore.open(store).streams


@pytest.mark.parametrize("name, executable", [("collect.launch.py", "teleop_node"), ("deploy.launch.py", "policy_node"),
                                              ("finetune.launch.py", "policy_node")])
def test_the_operator_and_policy_integrate_targets_in_the_launched_rigs_box(name, executable, monkeypatch):
    # rig:= reached only arm_node: teleop and policy kept the twin's workspace box from their yaml
    plan = LaunchPlan(load(REPO / "launch" / name, monkeypatch), {**REQUIRED[name], "rig": "franka_fr3"})
    (operator,) = [n for n in plan.nodes if n.executable == executable]
    (arm,) = [n for n in plan.nodes if n.executable == "arm_node"]
    assert plan.parameters(operator)[1]["rig"] == plan.parameters(arm)[1]["rig"] == "franka_fr3"
