"""Bad parameters fail the configure transition with the parameter named in the log; nothing half-built stays."""

import pytest

pytest.importorskip("rclpy", reason="ROS2 wheels not installed: pip install -e '.[ros]'", exc_type=ImportError)
pytestmark = pytest.mark.ros

from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402

from tests.ros.conftest import REPO, node_args  # noqa: E402

CONFIGS = REPO / "configs" / "ros"


@pytest.mark.parametrize("node_cls,params_file,params,message", [
    ("twin_node:TwinNode", "twin.yaml", {"cameras": "front,top"},
     "twin.cameras: ['top'] not calibrated for rig panda_twin"),
    ("twin_node:TwinNode", "twin.yaml", {"bridge.estop_max_s": 0.3}, "twin.bridge: unknown field(s) ['estop_max_s']"),
    ("policy_node:PolicyNode", "policy.yaml", {"checkpoint": "scripted", "mode": "actor"},
     "policy.learner_port: actor mode needs the learner's port"),
    ("policy_node:PolicyNode", "policy.yaml", {"checkpoint": "scripted", "observations.task_state.topic": "/x",
                                               "observations.task_state.kind": "odometry"},
     "policy.observations.task_state.kind: 'odometry'"),
    ("teleop_node:TeleopNode", "teleop.yaml", {"mode": "device", "device": "keyboard"},
     "teleop.device: keyboard needs a key source"),
], ids=["twin-camera", "twin-bridge", "policy-actor", "policy-observations", "teleop-keyboard"])
def test_configure_fails_naming_the_parameter(graph, capfd, node_cls, params_file, params, message):
    import importlib

    module, cls = node_cls.split(":")
    node = getattr(importlib.import_module(f"robot_rl_ros.{module}"), cls)(
        context=graph.context, cli_args=node_args(CONFIGS / params_file, **params))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert message in capfd.readouterr().err
        assert node.transport is None
    finally:
        node.close()
        node.destroy_node()


@pytest.mark.parametrize("executable,params", [
    ("policy_node", ["--params-file", str(CONFIGS / "policy.yaml"), "-p", "checkpoint:=/nonexistent/ckpt"]),
    ("recorder_node", ["--params-file", str(CONFIGS / "recorder.yaml"), "-p", "streams.x.topic:=/x",
                       "-p", "streams.x.kind:=odometry"]),
], ids=["shell-node", "recorder"])
def test_a_failed_autostart_exits_with_status_1(node_process, executable, params):
    proc = node_process(executable, [*params, "-p", "autostart:=true"])
    assert proc.proc.wait(60) == 1, proc.log()
    assert "autostart failed" in proc.log()
