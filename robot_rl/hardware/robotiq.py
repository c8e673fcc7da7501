"""Robotiq 2F-85 / 2F-140 gripper over Modbus RTU (RS-485 through a USB adapter).

    gripper = RobotiqGripper("/dev/robotiq")        # or any pyserial URL
    gripper.connect()                               # opens the port, checks it answers, activates
    gripper.move_width(0.04, speed_mps=0.05, force_n=40)
    status = gripper.wait_until_stopped()           # status.has_object tells whether it grasped something
    gripper.disconnect()                            # leaves the gripper in the safe state, closes the port

Positions are Robotiq bits (0 = open, 255 = closed); the metric helpers map them linearly onto the model's
stroke between `open_position` and `closed_position` (calibrate those per unit: a 2F-85 usually stops
fully closed near 227-230 rather than 255).
"""

from __future__ import annotations

import time

from robot_rl.core import clock
from robot_rl.hardware import robotiq_registers as reg
from robot_rl.hardware.device_errors import DeviceNotConnectedError, GripperFaultError
from robot_rl.hardware.modbus_client import ModbusRTUClient

SAFE_STATES = ("stop", "open", "none")


class RobotiqGripper:
    """Driver for one Robotiq 2F gripper.

    safe_state: what `disconnect()` commands before closing the port. "stop" clears rGTO so the fingers
    stop where they are (a held object stays held if force was applied); "open" opens the fingers
    (drops what they hold); "none" leaves the last command running.
    """

    def __init__(
        self, port: str, model: str = "2f85", slave_id: int = reg.DEFAULT_SLAVE_ID, baudrate: int = 115200,
        timeout_s: float = 0.1, retries: int = 2, auto_activate: bool = True, safe_state: str = "stop",
        open_position: int = 0, closed_position: int = 255, poll_period_s: float = 0.01,
    ) -> None:
        if model not in reg.MODELS:
            raise ValueError(f"{port}: unknown Robotiq model {model!r}; expected one of {sorted(reg.MODELS)}")
        if safe_state not in SAFE_STATES:
            raise ValueError(f"{port}: safe_state must be one of {SAFE_STATES}, got {safe_state!r}")
        if not 0 <= open_position < closed_position <= 255:
            raise ValueError(
                f"{port}: need 0 <= open_position < closed_position <= 255, got {open_position}, {closed_position}"
            )
        self.port = port
        self.model = reg.MODELS[model]
        self.slave_id = slave_id
        self.auto_activate = auto_activate
        self.safe_state = safe_state
        self.open_position = open_position
        self.closed_position = closed_position
        self.poll_period_s = poll_period_s
        self.bus = ModbusRTUClient(port, baudrate=baudrate, timeout_s=timeout_s, retries=retries)
        self._last_command = reg.encode_command(False, False)

    # lifecycle ---------------------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self.bus.is_connected

    def connect(self) -> None:
        self.bus.connect()
        try:
            status = self.read()  # fails fast with a timeout naming the port if nothing answers
            if self.auto_activate and not status.is_ready:
                self.activate()
        except Exception:
            self.bus.disconnect()
            raise

    def disconnect(self) -> None:
        if not self.is_connected:
            return
        try:
            if not reg.decode_command(self._last_command)["activate"]:
                pass  # never activated by us: writing rACT = 1 now would start an activation (fingers move)
            elif self.safe_state == "stop":
                self.stop()
            elif self.safe_state == "open":
                self._write(reg.encode_command(True, True, self.open_position, *self._last_command_fields()[1:]))
        finally:
            self.bus.disconnect()

    def __enter__(self) -> "RobotiqGripper":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    # status ------------------------------------------------------------------------------------------
    def read(self) -> reg.GripperStatus:
        """Current status (one FC04 read of 0x07D0..0x07D2), stamped with host monotonic time."""
        registers = self.bus.read_registers(self.slave_id, reg.STATUS_REGISTER, reg.N_REGISTERS)
        return reg.decode_status(registers, t=clock.now())

    def width_m(self, position: int) -> float:
        """Opening between the fingers (m) for a position in bits, linear between the calibrated ends."""
        frac = (self.closed_position - position) / (self.closed_position - self.open_position)
        return self.model.stroke_m * min(max(frac, 0.0), 1.0)

    # commands ----------------------------------------------------------------------------------------
    def activate(self, timeout_s: float = 5.0) -> reg.GripperStatus:
        """Reset (rACT = 0) then activate (rACT = 1) and wait for gSTA = 3. The fingers move during this."""
        self._write(reg.encode_command(False, False))
        self._write(reg.encode_command(True, False))
        return self._wait(lambda s: s.is_ready, timeout_s, "activation (gSTA = 3)")

    def move(self, position: int, speed: int = 255, force: int = 255) -> None:
        """Start moving to `position` (0 = open .. 255 = closed) with speed/force in 0..255. Returns at once."""
        self._require_connected()
        self._write(reg.encode_command(True, True, position, speed, force))

    def move_width(self, width_m: float, speed_mps: float | None = None, force_n: float | None = None) -> None:
        """Start moving to an opening of `width_m` metres, at `speed_mps` (m/s) with grip force `force_n` (N)."""
        m = self.model
        if not 0.0 <= width_m <= m.stroke_m:
            raise ValueError(f"{self.port}: width {width_m} m outside 0..{m.stroke_m} m for the {m.name}")
        position = round(self.closed_position - width_m / m.stroke_m * (self.closed_position - self.open_position))
        speed = force = 255
        if speed_mps is not None:
            speed = _scale("speed", speed_mps, m.min_speed_mps, m.max_speed_mps, "m/s", m.name)
        if force_n is not None:
            force = _scale("force", force_n, m.min_force_n, m.max_force_n, "N", m.name)
        self.move(position, speed, force)

    def open(self, speed: int = 255, force: int = 255) -> None:
        self.move(self.open_position, speed, force)

    def close(self, speed: int = 255, force: int = 255) -> None:
        self.move(self.closed_position, speed, force)

    def stop(self) -> None:
        """Clear rGTO: the fingers stop where they are."""
        self._write(reg.encode_command(True, False, *self._last_command_fields()))

    def wait_until_stopped(self, timeout_s: float = 5.0) -> reg.GripperStatus:
        """Poll until the fingers stop (at the request or on an object); raises GripperFaultError on timeout."""
        target = self._last_command_fields()[0]
        # gPR must echo our request first: right after a write the status may still describe the previous move.
        return self._wait(
            lambda s: s.go_to and s.requested_position == target and s.object != reg.ObjectStatus.MOVING,
            timeout_s, "the end of motion",
        )

    # internals ---------------------------------------------------------------------------------------
    def _require_connected(self) -> None:
        if not self.is_connected:
            raise DeviceNotConnectedError(f"{self.port}: Robotiq gripper is not connected; call connect() first")

    def _last_command_fields(self) -> tuple[int, int, int]:
        fields = reg.decode_command(self._last_command)
        return fields["position"], fields["speed"], fields["force"]

    def _write(self, registers: tuple[int, int, int]) -> None:
        self._require_connected()
        self.bus.write_registers(self.slave_id, reg.COMMAND_REGISTER, registers)
        self._last_command = registers

    def _wait(self, done, timeout_s: float, what: str) -> reg.GripperStatus:
        deadline = clock.now() + timeout_s
        while True:
            status = self.read()
            if status.has_major_fault:
                raise GripperFaultError(
                    f"{self.port}: gripper (slave {self.slave_id}) fault gFLT={status.fault:#04x}: "
                    f"{status.fault_message}; a reset (activate()) is needed"
                )
            if done(status):
                return status
            if clock.now() > deadline:
                raise GripperFaultError(
                    f"{self.port}: gripper (slave {self.slave_id}) did not reach {what} within {timeout_s} s; last "
                    f"status gSTA={int(status.activation)} gOBJ={int(status.object)} gFLT={status.fault:#04x} "
                    f"({status.fault_message}) position={status.position}"
                )
            time.sleep(self.poll_period_s)  # a Modbus slave only answers polls: there is no event to await


def _scale(name: str, value: float, lo: float, hi: float, unit: str, model: str) -> int:
    if not lo <= value <= hi:
        raise ValueError(f"{name} {value} {unit} outside {lo}..{hi} {unit} for the {model}")
    return round((value - lo) / (hi - lo) * 255)
