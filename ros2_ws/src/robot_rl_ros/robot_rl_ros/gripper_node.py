"""gripper_node: a serial gripper (Robotiq 2F over Modbus RTU by default) on the node graph.

Parameters (configs/ros/gripper.yaml): driver (robot_rl.hardware registry name: robotiq, plug-ins),
device_args.* (constructor arguments: port, model, slave_id, baudrate, open_position,
closed_position, ...), rate_hz (status polls per second), speed_mps, force_n, deadband (closure
change that triggers a new move), status_period_s.

Configure connects (and activates) the gripper; activate polls it at rate_hz and publishes
/gripper/joint_states (finger opening, metres; header stamp = the status read time), takes
/gripper/command (closure 0 open .. 1 closed: the same command the twin's gripper obeys) and moves
the fingers to the matching opening, and publishes ~/status (latched JSON: object detected, fault,
current). Cleanup disconnects, leaving the gripper in its safe state.
"""

from __future__ import annotations

import numpy as np

from robot_rl.core.clock import RateLoop, now
from robot_rl.runtime.transport import STATUS, Sample, Topic
from robot_rl_ros import graph
from robot_rl_ros.shell import ShellNode, main_for


class GripperNode(ShellNode):
    DEFAULTS = {"driver": "robotiq", "rate_hz": 50.0, "speed_mps": 0.1, "force_n": 60.0, "deadband": 0.01,
                "status_period_s": 0.5}

    def __init__(self, name: str = "gripper", **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.commanded: float | None = None
        self._wanted: float | None = None
        self.last_error = ""

    def setup(self) -> None:
        from robot_rl.hardware.registry import create

        self.device = create("grippers", str(self.param("driver")), **self.params("device_args", required=False))
        self.device.connect()
        self.stroke = float(self.device.model.stroke_m)
        self.get_logger().info(f"gripper {self.device.model.name} on {self.device.port} connected")

    def attach(self, transport) -> None:
        self.pub = transport.publisher(graph.GRIPPER_JOINT_STATES)
        self.status_pub = transport.publisher(Topic("~/status", "status", STATUS))
        transport.subscribe(graph.GRIPPER_COMMAND, self.on_command)
        self.start_worker(self._run, "gripper")

    def on_command(self, sample: Sample) -> None:
        self._wanted = graph.gripper_closure(sample)

    def _run(self) -> None:
        """One thread owns the serial line: commands and status polls never interleave mid-frame."""
        rate = RateLoop(float(self.param("rate_hz")))
        deadband = float(self.param("deadband"))
        period = float(self.param("status_period_s"))
        next_status = now()
        while not self.stopping:
            try:
                wanted = self._wanted
                if wanted is not None and (self.commanded is None or abs(wanted - self.commanded) > deadband):
                    self.device.move_width((1.0 - wanted) * self.stroke, float(self.param("speed_mps")),
                                           float(self.param("force_n")))
                    self.commanded = wanted
                s = self.device.read()
                self.pub.publish(Sample(s.t, {"position": np.array([self.device.width_m(s.position)])},
                                        names=(graph.GRIPPER_JOINT,)))
                if now() >= next_status:
                    next_status = now() + period
                    self.status_pub.publish({"position_bits": s.position, "object": s.object.name.lower(),
                                             "fault": s.fault, "current_a": s.current_a, "commanded": self.commanded,
                                             "last_error": self.last_error})
            except Exception as e:   # a serial hiccup: reported, retried on the next cycle
                self.last_error = f"{type(e).__name__}: {e}"
                self.get_logger().error(self.last_error, throttle_duration_sec=2.0)
            rate.wait()


main = main_for(GripperNode)

if __name__ == "__main__":
    main()
