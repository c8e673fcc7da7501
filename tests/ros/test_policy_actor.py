"""policy_node in actor mode: online RL over the graph. A residual learner (robot_rl.runtime.learner, localhost,
token) receives full twin_node episodes from policy_node's GraphEnv and its weights reach the node's actor;
and GraphEnv refuses to step on stale observations, naming the topic."""

import json
import threading

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS2 wheels not installed: pip install -e '.[ros]'", exc_type=ImportError)
pytestmark = pytest.mark.ros

from robot_rl.core.clock import now  # noqa: E402
from robot_rl.core.errors import StaleDataError  # noqa: E402
from robot_rl.runtime.transport import LocalTransport, Reply, Sample  # noqa: E402
from tests.ros.conftest import REACH_PARAMS, REPO  # noqa: E402
from tests.ros.test_twin_graph import JsonTopic, twin_node, up  # noqa: E402

CONFIGS = REPO / "configs" / "ros"
TINY = {"warmup_env_steps": 8, "batch_size": 8, "critic_heads": 2, "critic_hidden": [16, 16],
        "actor_hidden": [16, 16], "utd": 1.0}   # the learner's residual config, and the node's overrides of it
TOKEN = "s3cret"
REACH_GOAL = [REACH_PARAMS[k][0] for k in ("goal_x", "goal_y", "goal_z")]   # the reach task_state


def test_actor_mode_feeds_a_learner_twin_episodes_and_swaps_in_its_weights(graph, spin, reach_checkpoint, tmp_path):
    from robot_rl.learning.rl.episode_record import read_record
    from robot_rl.learning.rl.residual import ResidualAgent, ResidualConfig
    from robot_rl.policies.io import load_policy
    from robot_rl.runtime.learner import Learner, LearnerConfig
    from robot_rl_ros.policy_node import PolicyNode

    base = load_policy(reach_checkpoint, device="cpu")
    learner = Learner(ResidualAgent(base, ResidualConfig(**TINY)), base.spec, tmp_path / "online.zarr",
                      LearnerConfig(token=TOKEN, publish_every=1))
    try:
        task_params = {f"task_params.{k}": json.dumps(v) for k, v in REACH_PARAMS.items()}
        twin = twin_node(graph, seed=3, **task_params)
        twin_status = JsonTopic(graph, "/twin/status")
        overrides = " ".join(f"residual.{k}={json.dumps(v).replace(' ', '')}" for k, v in TINY.items())
        params = {"checkpoint": reach_checkpoint, "learner_port": learner.address[1], "token": TOKEN,
                  "spool_dir": tmp_path / "spool", "episode_time_s": 1.0, "algo_overrides": overrides,
                  "runtime.max_staleness_s": 0.5}          # a loaded 2-core CI machine; staleness: the next test
        args = ["--ros-args", "--params-file", str(CONFIGS / "policy.yaml"), "--params-file",
                str(CONFIGS / "finetune.yaml")] + [a for k, v in params.items() for a in ("-p", f"{k}:={v}")]
        policy = PolicyNode(context=graph.context, cli_args=args)
        up(policy)
        spin(policy, twin)                                # torn down in this order: the actor stops first

        learner.run(env_steps=1, timeout_s=30)            # the first episode, committed to the learner's store
        record = read_record(learner.store, 0)
        T = record.env_steps
        assert record.meta["actor_id"] == "policy" and record.meta["seq"] == 0, (record.meta, policy.last_error)
        assert 1 <= T <= 20                               # 1 s at 20 Hz, or fewer when it reached the goal
        assert record.success == record.terminated and (record.success or T == 20)   # else truncated at 1 s
        assert record.obs["state"].shape == (T + 1, 6) and record.actions.shape == (T, 7)   # ee_pos + reach goal
        np.testing.assert_allclose(record.obs["state"][:, 3:], np.tile(REACH_GOAL, (T + 1, 1)), atol=1e-6)
        assert np.isfinite(record.actions).all() and record.rewards.shape == (T,)
        assert record.rewards.sum() == float(record.success) and record.extras["base_action"].shape[1:] == (4, 7)
        t = record.transitions(base.spec, 0.99)
        assert len(t) == -(-T // 4) and learner.n_transitions >= len(t)   # a chunk transition per 4 actions
        assert t.obs["state"].shape == (len(t), 1, 6) and t.actions.shape == (len(t), 4, 7)

        deadline = now() + 30
        while policy.actor.weights_version < 1:           # updates -> a published version -> the next episode
            assert now() < deadline, (learner.updates, learner.version, policy.actor_status())
            learner.step(timeout=0.05)
        assert learner.updates > 0 and learner.version >= policy.actor.weights_version >= 1
        assert policy.last_error == ""
        twin_status.wait(graph, lambda s: s["episode"] >= 2, "the actor's second episode on the twin")
    finally:
        learner.close()


def test_graph_env_raises_on_stale_observations_naming_the_topic():
    from robot_rl.runtime.loop_link import DeltaActionParams, DeltaTargetConverter
    from robot_rl_ros import graph
    from robot_rl_ros.graph_env import GraphEnv, GraphEnvConfig
    from robot_rl_ros.policy_link import observation_routes

    T = LocalTransport()
    pose, gripper = T.publisher(graph.EE_POSE), T.publisher(graph.GRIPPER_JOINT_STATES)
    diag, status = T.publisher(graph.ARM_DIAGNOSTICS), T.publisher(graph.TWIN_STATUS)
    sent = []
    T.subscribe(graph.TARGET_POSE, sent.append)
    episode, gripper_on, stop = [0], threading.Event(), threading.Event()
    gripper_on.set()

    def robot() -> None:   # a 100 Hz arm whose gripper stream can die
        p = np.array([0.4, 0.0, 0.3])
        while not stop.wait(0.01):
            t = now()
            pose.publish(Sample(t, {"position": p, "quat": np.array([0.0, 1.0, 0.0, 0.0])}))
            diag.publish({"t": t, "mode_id": 0, "ref_pos": p.tolist(), "ref_quat": [0.0, 1.0, 0.0, 0.0]})
            status.publish({"episode": episode[0], "success": False})
            if gripper_on.is_set():
                gripper.publish(Sample(t, {"position": np.array([0.08])}, names=(graph.GRIPPER_JOINT,)))

    def reset(_) -> Reply:
        episode[0] += 1
        return Reply(True, "new episode")

    T.serve(graph.RESET_EPISODE, "trigger", reset)
    thread = threading.Thread(target=robot, daemon=True)
    thread.start()
    entries = {"ee_pos": {"topic": "/arm/ee_pose", "kind": "pose", "field": "position", "shape": [3]},
               "gripper_pos": {"topic": "/gripper/joint_states", "kind": "joint_state", "field": "position",
                               "shape": [1]}}
    routes, unchecked = observation_routes(entries, ["ee_pos", "gripper_pos"], "test")
    env = GraphEnv(T, routes, unchecked, DeltaTargetConverter(DeltaActionParams(20.0), [0.2, -0.4, 0.05],
                                                              [0.7, 0.4, 0.6]),
                   GraphEnvConfig(20.0, 1.0, max_staleness_s=0.1, fresh_timeout_s=0.3))
    try:
        obs, info = env.reset(seed=0)
        assert obs["ee_pos"].shape == (3,) and obs["gripper_pos"].shape == (1,) and info["episode"] == 1
        obs, reward, terminated, truncated, info = env.step(np.zeros(7))
        assert reward == 0.0 and not terminated and not truncated and len(sent) == 1
        gripper_on.clear()
        with pytest.raises(StaleDataError, match=r"topic /gripper/joint_states \(stream gripper_pos\): newest "
                                                 r"sample is \d+ ms old"):
            env.step(np.zeros(7))
        assert len(sent) == 2                              # the action's one target, nothing while it waited
    finally:
        stop.set()
        thread.join(2)
        env.close()
        T.close()
