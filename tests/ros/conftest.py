"""Fixtures of the ROS tier: isolated ROS contexts, a colcon-built workspace, node processes.

Isolation: every test gets its own ROS_DOMAIN_ID and localhost-only discovery, so parallel runs on
one machine never see each other's graphs. Waiting: `Graph.spin_until` spins the test's executor
until a condition holds (matched endpoints, a status value, a service reply), never a blind sleep.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from robot_rl.data.writer import EpisodeWriter

REPO = Path(__file__).resolve().parents[2]
WS_SRC = REPO / "ros2_ws" / "src"
PKG_SRC = WS_SRC / "robot_rl_ros"
RECORDER_PARAMS = REPO / "configs" / "ros" / "recorder.yaml"

try:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
except ImportError:  # the test modules skip themselves with a reason
    rclpy = None
else:
    import warnings

    with warnings.catch_warnings():  # the wheels' lark-parser 0.12 imports deprecated sre_* modules
        warnings.simplefilter("ignore", DeprecationWarning)
        import rosidl_generator_py  # noqa: F401

if rclpy is not None and str(PKG_SRC) not in sys.path:
    sys.path.insert(0, str(PKG_SRC))  # in-process tests import robot_rl_ros from the source tree

_domains = itertools.count()


def _domain_id() -> int:
    # 1..200 (Fast DDS maps domains to ports up to ~232); spread by pid so concurrent runs differ
    return 1 + (os.getpid() * 31 + next(_domains) * 7) % 200


@pytest.fixture
def ros_domain(monkeypatch, tmp_path) -> int:
    """A fresh domain id, localhost-only discovery, and ROS logs under the test's tmp dir (not ~/.ros)."""
    domain = _domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "ros_log"))
    return domain


def wait_for(condition, timeout_s: float, what: str):
    """Poll `condition` (for state another thread's executor changes) until true or timeout."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.005)


class Graph:
    """A test-side rclpy node with its own context and executor, spun from the test thread."""

    def __init__(self, domain: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("robot_rl_test", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, condition, timeout_s: float = 10.0, what: str = "condition"):
        deadline = time.monotonic() + timeout_s
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    def call(self, srv_type, name: str, request=None, timeout_s: float = 10.0, resend_s: float | None = None):
        """One service call. resend_s: for an idempotent request, send it again every resend_s seconds until a
        reply arrives: a new client can see the service before the reply's route to it is matched, and then
        the first reply is lost."""
        client = self.node.create_client(srv_type, name)
        try:
            self.spin_until(lambda: client.service_is_ready(), timeout_s, f"service {name}")
            deadline = time.monotonic() + timeout_s
            while True:
                future = client.call_async(request or srv_type.Request())
                left = deadline - time.monotonic()
                try:
                    self.spin_until(future.done, left if resend_s is None else min(resend_s, left), f"reply of {name}")
                    return future.result()
                except AssertionError:
                    if resend_s is None or time.monotonic() >= deadline:
                        raise AssertionError(f"timed out after {timeout_s} s waiting for reply of {name}") from None
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def graph(ros_domain):
    g = Graph(ros_domain)
    yield g
    g.close()


@pytest.fixture(scope="session")
def ros_install(tmp_path_factory) -> Path:
    """`colcon build` of ros2_ws into a temporary build/install/log base; the install prefix."""
    if rclpy is None:
        pytest.skip("rclpy not importable: pip install -e '.[ros]'")
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent)) or shutil.which("colcon")
    if colcon is None:
        pytest.skip("colcon not installed: pip install -e '.[ros]'")
    base = tmp_path_factory.mktemp("colcon")
    cmd = [colcon, "--log-base", str(base / "log"), "build", "--base-paths", str(WS_SRC),
           "--build-base", str(base / "build"), "--install-base", str(base / "install")]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(cmd, cwd=base, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"colcon build failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return base / "install"


class NodeProcess:
    """An installed executable run as `ros2 run` would, after sourcing the install's setup.sh."""

    def __init__(self, install: Path, executable: str, ros_args: list[str], log_path: Path) -> None:
        exe = install / "robot_rl_ros" / "lib" / "robot_rl_ros" / executable
        self.log_path = log_path
        self._log = open(log_path, "w")
        script = f'. "{install}/setup.sh" && exec "{exe}" --ros-args "$@"'
        self.proc = subprocess.Popen(["bash", "-c", script, executable, *ros_args], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return f"exit status {self.proc.returncode}; " + self.log_path.read_text()

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGINT (as Ctrl-C / launch does), then wait; kill only if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def node_process(ros_install, ros_domain, tmp_path):
    """Factory: node_process("recorder_node", [ros args]) -> NodeProcess, stopped at teardown."""
    started: list[NodeProcess] = []

    def start(executable: str, ros_args: list[str]) -> NodeProcess:
        proc = NodeProcess(ros_install, executable, ros_args, tmp_path / f"{executable}-{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


# -- in-process nodes -------------------------------------------------------------------------------
def node_args(params_file: Path, **params) -> list[str]:
    """`--ros-args` for a node: its parameter file, then `-p name:=value` overrides."""
    args = ["--ros-args", "--params-file", str(params_file)]
    for key, value in params.items():
        args += ["-p", f"{key}:={value}"]
    return args


@pytest.fixture
def spin(graph):
    """spin(*nodes): run in-process nodes (created with context=graph.context), each on its own
    single-threaded executor thread, as the node executables run (robot_rl_ros.shell.main_for); at
    teardown each node is closed (ShellNode.close / RecorderNode.close_session), in the order given."""
    import threading

    from rclpy.executors import SingleThreadedExecutor

    started = []

    def start(*nodes):
        for n in nodes:
            executor = SingleThreadedExecutor(context=graph.context)
            executor.add_node(n)
            thread = threading.Thread(target=executor.spin, daemon=True)
            thread.start()
            started.append((executor, thread, n))
        return nodes[0] if len(nodes) == 1 else nodes

    yield start
    for executor, thread, n in started:
        (getattr(n, "close", None) or n.close_session)()
        executor.shutdown()
        thread.join(5)
        n.destroy_node()


class Listener:
    """Records every message of some topics on the test node: {topic: [(stamp_ns, msg), ...]}."""

    def __init__(self, graph) -> None:
        self.graph = graph
        self.got: dict[str, list] = {}

    def listen(self, topic: str, msg_type, qos=1000):
        self.got.setdefault(topic, [])

        def on_msg(msg) -> None:
            stamp = getattr(getattr(msg, "header", None), "stamp", None)
            ns = stamp.sec * 10**9 + stamp.nanosec if stamp is not None else None
            self.got[topic].append((ns, msg))

        return self.graph.node.create_subscription(msg_type, topic, on_msg, qos)

    def latest(self, topic: str):
        msgs = self.got.get(topic)
        return msgs[-1][1] if msgs else None


# -- a trained policy -------------------------------------------------------------------------------
# The reach task of the policy tests: one fixed goal, so a few demos cover it. A 500-step BC policy
# from three demos converges 2-4.5 cm from the goal (it sees the TCP, not the commanded target the
# expert steered), so success here means within 5 cm.
REACH_PARAMS = {"goal_x": [0.45, 0.45], "goal_y": [0.1, 0.1], "goal_z": [0.25, 0.25], "success_threshold": 0.05}
TINY_POLICY = ["spec.obs.state.stream=ee_pos+task_state", "spec.n_obs_steps=1", "spec.horizon=8",
               "spec.n_action_steps=4", "model.mlp_hidden_dim=64", "model.mlp_num_blocks=1", "model.state_dims=[32]",
               "model.step_embed_dim=16", "model.num_inference_steps=4", "train.val_ratio=0.0", "train.steps=500",
               "train.eval_every=0", "train.batch_size=64", "train.num_workers=0", "train.warmup_steps=50",
               "train.log_every=100", "train.checkpoint_every=500"]


@pytest.fixture(scope="session")
def reach_checkpoint(tmp_path_factory) -> Path:
    """A tiny state-observation BC diffusion policy trained on three scripted reach demos (the twin,
    the store, `robot-rl train`). Demos run on past success (terminate_on_success=False), so the
    expert also shows holding at the goal."""
    from robot_rl.cli import main
    from robot_rl.data.schema import EpisodeMeta
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.sim.env import TwinEnv
    from robot_rl.sim.experts import make_teleop, run_episode
    from robot_rl.sim.episode_recorder import EpisodeRecorder, twin_stream_specs

    root = tmp_path_factory.mktemp("reach_policy")
    env = TwinEnv(task="reach", task_params={**REACH_PARAMS, "time_limit": 2.0}, terminate_on_success=False)
    store = EpisodeStore.create(root / "demos.zarr", twin_stream_specs(env))
    teleop = make_teleop(env, 0.0, 0)
    with EpisodeWriter(store) as w:
        rec = EpisodeRecorder(env, w)
        for seed in range(3):
            rec.begin(EpisodeMeta(task="reach", source="scripted", rig="panda_twin"))
            rec.end(run_episode(env, teleop, seed=seed, on_step=rec.on_step)["success"])
    env.close()
    assert main(["train", f"store={root / 'demos.zarr'}", f"out={root / 'train'}", *TINY_POLICY]) == 0
    return root / "train" / "checkpoints" / "latest"
