"""The simulated UR behind the fake rtde_control / rtde_receive modules (test code, never shipped).

One robot per hostname, shared by both interfaces like the real controller box. The TCP follows the
last servoL set-point with a first-order lag (time constant lookahead_time / 2) integrated in 2 ms
steps of `clock()` (host monotonic by default; tests may replace it with a simulated clock). servoStop
or stopL freezes the set-point where the TCP is. With a watchdog set, no command for longer than
1 / min_frequency stops the robot and ends the control script, as ur_rtde's script does.
Test hooks: `protective_stop`, `emergency_stop`, `connected`, `force`, `calls` (name, args) log.
"""

from __future__ import annotations

import math
import time

import numpy as np

from robot_rl.core.rotations import quat_to_rotvec, rotvec_to_quat
from robot_rl.control.trajectory import slerp

PERIOD = 0.002
HOME_POSE = (0.40, -0.10, 0.30, math.pi, 0.0, 0.0)      # TCP pointing down
HOME_Q = (0.0, -1.57, 1.57, -1.57, -1.57, 0.0)

clock = time.monotonic
ROBOTS: dict[str, "FakeURRobot"] = {}


def robot(host: str) -> "FakeURRobot":
    if host not in ROBOTS:
        ROBOTS[host] = FakeURRobot()
    return ROBOTS[host]


class FakeURRobot:
    def __init__(self) -> None:
        self.pos = np.array(HOME_POSE[:3])
        self.quat = rotvec_to_quat(np.array(HOME_POSE[3:]))
        self.target: tuple[np.ndarray, np.ndarray] | None = None
        self.tau = 0.05
        self.q = np.array(HOME_Q)
        self.dq = np.zeros(6)
        self.force = np.zeros(6)
        self.t = 0.0                      # the robot's timestamp (s since start)
        self._t0 = clock()
        self.connected = True
        self.program_running = True
        self.protective_stop = False
        self.emergency_stop = False
        self.watchdog_period: float | None = None
        self._last_input = 0.0
        self.calls: list[tuple[str, tuple]] = []

    def update(self) -> None:
        """Advance robot time to clock() in 2 ms steps (the controller's own cycle)."""
        while self.t + PERIOD <= clock() - self._t0 + 1e-12:
            self.t += PERIOD
            stopped = self.protective_stop or self.emergency_stop or not self.program_running
            if self.watchdog_period and self.t - self._last_input > self.watchdog_period and self.program_running:
                self.program_running, self.target = False, None
            if self.target is None or stopped:
                self.dq[:] = 0.0
                continue
            a = 1.0 - math.exp(-PERIOD / self.tau)
            old = self.pos.copy()
            self.pos += a * (self.target[0] - self.pos)
            self.quat = np.array(slerp(tuple(self.quat), tuple(self.target[1]), a))
            self.dq[:3] = (self.pos - old) / PERIOD      # stand-in joint speeds (only their finiteness matters)

    def tcp_pose(self) -> list[float]:
        return self.pos.tolist() + quat_to_rotvec(self.quat).tolist()

    def command(self, name: str, *args) -> None:
        self.update()
        self.calls.append((name, args))
        self._last_input = self.t
