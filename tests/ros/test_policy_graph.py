"""policy_node, installed by colcon and run as a process, drives twin_node (in-process) to success with a
checkpoint trained here; killing the policy process leaves the twin holding its pose (target watchdog)."""

import json

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS2 wheels not installed: pip install -e '.[ros]'", exc_type=ImportError)
pytestmark = pytest.mark.ros

from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from tests.ros.conftest import REACH_PARAMS, REPO, Listener  # noqa: E402
from tests.ros.test_twin_graph import JsonTopic, twin_node  # noqa: E402

POLICY_PARAMS = REPO / "configs" / "ros" / "policy.yaml"


def test_trained_policy_drives_the_twin_to_success_and_the_twin_holds_when_it_dies(
        graph, spin, node_process, reach_checkpoint):
    task_params = {f"task_params.{k}": json.dumps(v) for k, v in REACH_PARAMS.items()}
    twin = spin(twin_node(graph, seed=3, **task_params))
    status = JsonTopic(graph, "/twin/status")
    diag = JsonTopic(graph, "/arm/diagnostics", QoSProfile(depth=10))
    diags = []
    graph.node.create_subscription(String, "/arm/diagnostics", lambda m: diags.append(json.loads(m.data)), 100)
    policy_status = JsonTopic(graph, "/policy/status")
    listen = Listener(graph)
    listen.listen("/arm/ee_pose", PoseStamped)
    status.wait(graph, lambda s: s["episode"] == 1, "twin up")

    policy = node_process("policy_node", ["--params-file", str(POLICY_PARAMS), "-p", f"checkpoint:={reach_checkpoint}",
                                          "-p", "autostart:=true"])
    try:
        s = status.wait(graph, lambda s: s["success"], "the policy reaches the goal", timeout_s=60)
    except AssertionError as e:
        raise AssertionError(f"{e}\npolicy status {policy_status.value}\npolicy log:\n{policy.log()[-3000:]}") from None
    assert s["episode"] == 1 and s["time_to_success_s"] > 0
    p = policy_status.wait(graph, lambda p: p["targets_sent"] > 0, "policy status")
    assert p["cycles"] > 0 and p["last_error"] == "", p
    diag.wait(graph, lambda d: d["mode"] == "tracking", "the arm follows the policy's targets")

    policy.proc.kill()          # SIGKILL: no goodbye, targets simply stop
    policy.proc.wait(10)
    timeout = twin.sim.rig.safety.target_timeout
    d = diag.wait(graph, lambda d: d["mode"] == "hold" and d["faults"].get("target_timeout", 0) >= 1,
                  "target watchdog holds", timeout_s=5 + timeout)
    # the reference ramps to rest within hold_ramp_time; the arm settles on the impedance law's time scale
    # (slower in host time when the twin runs below real time): then it holds
    held_from = d["t"] + 1.0

    def stamp(m):
        return m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 - twin.stamps.offset_s

    graph.spin_until(lambda: stamp(listen.latest("/arm/ee_pose")) > held_from + 0.5, 15, "holding for a while")
    held = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z] for _, m in listen.got["/arm/ee_pose"]
                     if stamp(m) > held_from])
    refs = np.array([r["ref_pos"] for r in diags if r["t"] > held_from])
    assert len(held) > 10 and len(refs) > 5
    assert np.abs(refs - refs[0]).max() < 5e-4                          # the reference is frozen
    assert np.abs(held - refs[-1]).max() < 0.003                         # and the arm holds it (mm)
    assert diag.value["mode"] == "hold" and diag.value["targets"] == d["targets"]   # nothing arrived since
