"""ShellNode: the lifecycle pattern every robot_rl_ros node follows, and the executables' `main`.

    configure  -> `setup()`: read parameters, build the robot_rl component (open devices, start the
                  loop process, load the checkpoint); a bad parameter or a missing device fails the
                  transition with the error in the log, naming the parameter
    activate   -> `attach(transport)`: a fresh RosTransport; publishers, subscriptions, services, workers
    deactivate -> `detach()`, then the transport is closed (every topic and service disappears)
    cleanup    -> `release()`: close devices, stop processes
Shutdown (Ctrl-C, launch) runs whatever of deactivate/cleanup the current state needs.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from robot_rl.core.errors import RobotRLError
from robot_rl_ros.params import declare_defaults, nested
from robot_rl_ros.stamps import StampMapping
from robot_rl_ros.transport import RosTransport

# errors that mean "bad parameters or device", reported as a failed transition (others are bugs: raised)
SETUP_ERRORS = (RobotRLError, ValueError, KeyError, OSError, ImportError)


class ShellNode(LifecycleNode):
    """Base class: subclasses set DEFAULTS (parameter -> default) and implement the four hooks."""

    DEFAULTS: dict[str, Any] = {}

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, automatically_declare_parameters_from_overrides=True,
                         allow_undeclared_parameters=True, **kwargs)
        declare_defaults(self, {"autostart": False, **self.DEFAULTS})
        self.stamps: StampMapping | None = None
        self.transport: RosTransport | None = None
        self.device = None                 # a robot_rl.hardware device, disconnected by the default release()
        self._configured = False
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    # -- parameters ---------------------------------------------------------------------------
    def param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def params(self, prefix: str, required: bool = True) -> dict:
        """Nested parameters under `prefix.` ({} when absent and not required)."""
        if not required and not self.get_parameters_by_prefix(prefix):
            return {}
        return nested(self, prefix)

    def where(self, name: str) -> str:
        return f"{self.get_name()}.{name}"

    # -- hooks ----------------------------------------------------------------------------------
    def setup(self) -> None:
        """Build the component from parameters (configure)."""

    def attach(self, transport: RosTransport) -> None:
        """Publish, subscribe, serve, start workers (activate)."""

    def detach(self) -> None:
        """Stop workers (deactivate; the transport is closed afterwards)."""
        self.stop_workers()

    def release(self) -> None:
        """Close devices and processes (cleanup): by default disconnect `self.device`."""
        if self.device is not None:
            self.device.disconnect()
            self.device = None

    # -- worker threads (started in attach, stopped by detach) -------------------------------------------
    def start_worker(self, target: Callable[[], None], name: str) -> None:
        self._stop.clear()
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._workers.append(thread)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop_workers(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout_s)
        self._workers = []

    # -- lifecycle -----------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stamps = StampMapping.for_node(self)
        try:
            self.setup()
        except SETUP_ERRORS as e:
            self.get_logger().error(f"configure failed: {type(e).__name__}: {e}")
            self._safe_release()
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        self.get_logger().info("configured")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.transport = RosTransport(self, self.stamps)
        try:
            self.attach(self.transport)
        except SETUP_ERRORS as e:
            self.get_logger().error(f"activate failed: {type(e).__name__}: {e}")
            self._close_transport()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.detach()
        self._close_transport()
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._safe_release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Everything down, whatever the state (also after Ctrl-C, with the ROS context gone)."""
        if self.transport is not None:
            self.detach()
            self._close_transport()
        self._safe_release()

    def _close_transport(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def _safe_release(self) -> None:
        self.release()  # idempotent: also after a configure that failed half-way
        self._configured = False


def autostart(node: LifecycleNode) -> None:
    """configure + activate at start-up (parameter `autostart`: launching without a lifecycle manager)."""
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS or \
            node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        raise SystemExit(f"{node.get_name()}: autostart failed (see the log above)")


def run_until_shutdown(node: LifecycleNode, executor) -> int:
    """Autostart if the node's `autostart` parameter says so, then spin until Ctrl-C or shutdown.
    Returns the exit status: 1 for a failed autostart, else 0. A shutdown is clean wherever it lands:
    before spinning, during the autostart (the transitions then fail because the context is gone), or
    between two executor waits, where rclpy raises RCLError ("the given context is not valid") instead
    of ExternalShutdownException. Any other error while the context is still valid is raised."""
    try:
        if node.get_parameter("autostart").value:
            autostart(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SystemExit as e:
        if rclpy.ok():
            node.get_logger().error(str(e))
            return 1
    except Exception:
        if rclpy.ok():
            raise
    return 0


def main_for(node_cls, hard_exit: bool = False):
    """The console-script entry point of a ShellNode class, spun by a SingleThreadedExecutor.
    Every callback of a node is in its default, mutually exclusive callback group, so a
    MultiThreadedExecutor adds no parallelism, only its per-wait overhead (ros2/rclpy#1223, #1452: a
    policy node under MultiThreadedExecutor(2) took 122 of 1,204 poses at 100 Hz, under a single thread
    1,990 of 2,005 at 200 Hz). Callbacks only convert and store a sample; the slow work (inference,
    the loop process, service calls that wait for an answer) runs on the nodes' worker threads.
    hard_exit: leave with os._exit after a clean shutdown (see camera_node: librealsense + rclpy crash
    in C++ teardown at interpreter exit)."""

    def main(args=None) -> None:
        rclpy.init(args=args)
        node = node_cls()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        code = 0
        try:
            code = run_until_shutdown(node, executor)
        finally:
            node.close()
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown()
        if hard_exit:
            os._exit(code)
        if code:
            raise SystemExit(code)

    return main
