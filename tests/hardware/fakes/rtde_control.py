"""A stand-in for ur_rtde's rtde_control module (test code): RTDEControlInterface with the same method
names and positional signatures as ur_rtde 1.6, driving fake_ur_robot's simulated UR."""

from __future__ import annotations

import datetime

import numpy as np

import fake_ur_robot


class RTDEControlInterface:
    def __init__(self, hostname: str, frequency: float = -1.0, flags: int = 1, ur_cap_port: int = 50002,
                 rt_priority: int = 0) -> None:
        self._r = fake_ur_robot.robot(hostname)
        if not self._r.connected:
            raise RuntimeError(f"ur_rtde: Failed to connect to the robot at {hostname}")
        self._r.program_running = True
        self._r.calls.append(("connect", (hostname, frequency)))

    def servoL(self, pose, speed, acceleration, time, lookahead_time, gain) -> bool:
        r = self._r
        r.command("servoL", list(pose), speed, acceleration, time, lookahead_time, gain)
        if not r.program_running or r.protective_stop or r.emergency_stop:
            return False
        p = np.asarray(pose, dtype=np.float64)
        if p.shape != (6,) or not np.all(np.isfinite(p)):
            raise RuntimeError("servoL: pose must be 6 finite values")
        from robot_rl.core.rotations import rotvec_to_quat

        r.target = (p[:3].copy(), rotvec_to_quat(p[3:]))
        r.tau = lookahead_time / 2.0
        return True

    def servoStop(self, a: float = 10.0) -> bool:
        self._r.command("servoStop", a)
        self._r.target = None
        return True

    def stopL(self, a: float = 10.0, asynchronous: bool = False) -> None:
        self._r.command("stopL", a, asynchronous)
        self._r.target = None

    def stopScript(self) -> None:
        self._r.command("stopScript")
        self._r.program_running = False
        self._r.target = None

    def reuploadScript(self) -> bool:
        self._r.command("reuploadScript")
        self._r.program_running = True
        return True

    def isProgramRunning(self) -> bool:
        self._r.update()
        return self._r.program_running

    def isConnected(self) -> bool:
        return self._r.connected

    def disconnect(self) -> None:
        self._r.command("disconnect")

    def setWatchdog(self, min_frequency: float = 10.0) -> bool:
        self._r.command("setWatchdog", min_frequency)
        self._r.watchdog_period = 1.0 / min_frequency
        return True

    def kickWatchdog(self) -> bool:
        self._r.command("kickWatchdog")
        return True

    def setTcp(self, tcp_offset) -> bool:
        self._r.command("setTcp", list(tcp_offset))
        return True

    def initPeriod(self) -> datetime.timedelta:
        return datetime.timedelta(0)

    def waitPeriod(self, t_cycle_start) -> None:
        pass
