"""A stand-in for ur_rtde's rtde_receive module (test code): RTDEReceiveInterface with the same method
names as ur_rtde 1.6, reading fake_ur_robot's simulated UR."""

from __future__ import annotations

import fake_ur_robot


class RTDEReceiveInterface:
    def __init__(self, hostname: str, frequency: float = -1.0, variables=(), verbose: bool = False,
                 use_upper_range_registers: bool = False, rt_priority: int = 0) -> None:
        self._r = fake_ur_robot.robot(hostname)
        if not self._r.connected:
            raise RuntimeError(f"ur_rtde: Failed to connect to the robot at {hostname}")

    def _now(self):
        self._r.update()
        return self._r

    def isConnected(self) -> bool:
        return self._r.connected

    def isProtectiveStopped(self) -> bool:
        return self._now().protective_stop

    def isEmergencyStopped(self) -> bool:
        return self._now().emergency_stop

    def getTimestamp(self) -> float:
        return self._now().t

    def getActualTCPPose(self) -> list[float]:
        return self._now().tcp_pose()

    def getActualQ(self) -> list[float]:
        return self._now().q.tolist()

    def getActualQd(self) -> list[float]:
        return self._now().dq.tolist()

    def getActualTCPForce(self) -> list[float]:
        return self._now().force.tolist()

    def disconnect(self) -> None:
        pass
