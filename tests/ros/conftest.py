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

    def call(self, srv_type, name: str, request=None, timeout_s: float = 10.0):
        client = self.node.create_client(srv_type, name)
        try:
            self.spin_until(lambda: client.service_is_ready(), timeout_s, f"service {name}")
            future = client.call_async(request or srv_type.Request())
            self.spin_until(future.done, timeout_s, f"reply of {name}")
            return future.result()
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
        self._log.flush()
        return self.log_path.read_text()

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
