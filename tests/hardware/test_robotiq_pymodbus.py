"""The RobotiqGripper driver against an independent Modbus RTU slave: pymodbus's serial server on a
socat pty pair, holding a 2F-85 register map written here from the Robotiq 2F-85/2F-140 instruction
manual ("Control", Modbus RTU), not from robot_rl's register module or framing.

Manual layout (slave 9; registers two bytes, high byte first):
    robot output, holding registers written with FC16 from 0x03E8:
        0x03E8 [ACTION REQUEST: rACT bit 0, rGTO bit 3, rATR bit 4, rARD bit 5] [reserved]
        0x03E9 [reserved] [rPR position request]
        0x03EA [rSP speed] [rFR force]
    robot input, input registers read with FC04 from 0x07D0:
        0x07D0 [GRIPPER STATUS: gACT bit 0, gGTO bit 3, gSTA bits 4-5, gOBJ bits 6-7] [reserved]
        0x07D1 [FAULT STATUS: gFLT bits 0-3, kFLT bits 4-7] [gPR position request echo]
        0x07D2 [gPO position] [gCU current, 10 mA per count]
Any other address, or these with another function code, is answered with ILLEGAL ADDRESS.

The simulated fingers advance one step per status read, not per wall-clock second, so a test reads
the same sequence of states however loaded the machine is.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from robot_rl.hardware import robotiq_registers
from robot_rl.hardware.device_errors import GripperFaultError, ModbusError
from robot_rl.hardware.robotiq import RobotiqGripper

pytest.importorskip("serial", reason="pyserial not installed (pip install robot_rl[hardware])")
pytest.importorskip("pymodbus", reason="pymodbus not installed (pip install robot_rl[dev])")

from pymodbus.server import ModbusSerialServer  # noqa: E402
from pymodbus.simulator import DataType, SimData, SimDevice  # noqa: E402

SLAVE, OUTPUT, INPUT = 9, 0x03E8, 0x07D0
T = 0.5  # response timeout: generous, so a loaded machine scheduling socat late is not a failure

# Frames printed in the manual's Modbus RTU example (slave 9), CRC included.
READ_STATUS = bytes.fromhex("09 04 07 D0 00 03 B1 CE")  # read the 3 status registers
OPEN_FULL = bytes.fromhex("09 10 03 E8 00 03 06 09 00 00 00 FF FF 72 19")  # open at full speed and force
CLOSE_FULL = bytes.fromhex("09 10 03 E8 00 03 06 09 00 00 FF FF FF 42 29")  # close at full speed and force
WRITE_ACK = bytes.fromhex("09 10 03 E8 00 03 01 30")  # response to either
GRASPED = bytes.fromhex("09 04 06 B9 00 00 FF BD 00 5C 9A")  # stopped on an object while closing, at 189/255


class ManualGripper:
    """2F-85 behaviour as the manual describes it. rACT 0 -> 1 starts an activation (gSTA 1, then 3);
    rGTO 1 moves gPO towards rPR at a rate set by rSP, and gOBJ reports 0 (moving), 2 (stopped by an
    object while closing) or 3 (at the request); gPR echoes rPR; an action before activation completes
    reports gFLT 0x05."""

    def __init__(self, object_at: int | None = None, activation_reads: int = 3) -> None:
        self.object_at = object_at
        self.activation_reads = activation_reads
        self.output = [0, 0, 0]
        self.writes: list[dict] = []  # each FC16 write, decoded by the manual's layout
        self.gACT = self.gGTO = self.gSTA = self.gOBJ = self.gFLT = self.gPR = self.gCU = 0
        self.gPO = 3  # an open 2F-85 reads a few counts above 0
        self._activating = 0

    def on_write(self, address: int, values: list[int]) -> None:
        self.output[address - OUTPUT: address - OUTPUT + len(values)] = values
        action = self.output[0] >> 8
        cmd = {"rACT": action & 1, "rGTO": action >> 3 & 1, "rATR": action >> 4 & 1, "rARD": action >> 5 & 1,
               "rPR": self.output[1] & 0xFF, "rSP": self.output[2] >> 8, "rFR": self.output[2] & 0xFF}
        self.writes.append(cmd)
        if not cmd["rACT"]:  # reset: clears the activation and any fault
            self.gACT = self.gSTA = self.gOBJ = self.gFLT = 0
            self._activating = 0
        elif not self.gACT:
            self.gACT, self.gSTA, self._activating = 1, 1, self.activation_reads
        self.gGTO = cmd["rGTO"]
        if cmd["rGTO"]:
            self.gPR = cmd["rPR"]
            self.gOBJ = 0
            if self.gSTA != 3:
                self.gFLT = 0x05  # action delayed: activation must complete first

    def step(self) -> None:
        """One status read's worth of time."""
        if self._activating:
            self._activating -= 1
            if not self._activating:
                self.gSTA = 3
                self.gFLT = 0 if self.gFLT == 0x05 else self.gFLT
            return
        if self.gSTA != 3 or not self.gGTO or self.gOBJ != 0:
            self.gCU = 0
            return
        target, rate = self.gPR, 1 + (self.output[2] >> 8) // 8
        nxt = min(target, self.gPO + rate) if target > self.gPO else max(target, self.gPO - rate)
        if self.object_at is not None and self.gPO < self.object_at <= nxt:
            self.gPO, self.gOBJ, self.gCU = self.object_at, 2, 0  # contact: stopped, holding
        elif nxt == target:
            self.gPO, self.gOBJ, self.gCU = target, 3, 0
        else:
            self.gPO, self.gCU = nxt, 16

    def input_registers(self) -> list[int]:
        status = self.gACT | self.gGTO << 3 | self.gSTA << 4 | self.gOBJ << 6
        return [status << 8, self.gFLT << 8 | self.gPR, self.gPO << 8 | self.gCU]

    async def action(self, function_code, start_address, address, count, registers, set_values):
        """pymodbus SimDevice hook, called for every valid request before it is served."""
        if function_code == 16:
            self.on_write(address, list(set_values))
        elif function_code == 4:
            self.step()
            registers[:] = self.input_registers()
        return None


class PymodbusSlave:
    """pymodbus's RTU serial server on `port` (a thread with its own event loop), one device: slave 9
    with exactly the manual's holding registers 0x03E8..0x03EA and input registers 0x07D0..0x07D2."""

    def __init__(self, port: str, gripper: ManualGripper) -> None:
        self.port, self.gripper = port, gripper
        self.responses: list[bytes] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pymodbus-robotiq", daemon=True)

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.responses.append(bytes(data))
        return data

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as e:  # reported by __enter__
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        bits = [SimData(0, datatype=DataType.BITS)]  # pymodbus needs a block per table; no coil is used
        device = SimDevice(SLAVE, simdata=(
            bits, list(bits),
            [SimData(OUTPUT, count=3, values=0, datatype=DataType.REGISTERS)],
            [SimData(INPUT, count=3, values=0, datatype=DataType.REGISTERS)],
        ), action=self.gripper.action)
        self._server = ModbusSerialServer([device], port=self.port, baudrate=115200, trace_packet=self._trace)
        await self._server.serve_forever(background=True)

    def __enter__(self) -> "PymodbusSlave":
        self._thread.start()
        if not self._ready.wait(10.0) or self._error is not None:
            raise RuntimeError(f"pymodbus server on {self.port} did not start: {self._error!r}")
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(timeout=5.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5.0)


def _record_requests(gripper: RobotiqGripper) -> list[bytes]:
    """The frames the driver writes on the wire (one write per request)."""
    sent: list[bytes] = []
    write = gripper.bus._serial.write

    def recording_write(data):
        sent.append(bytes(data))
        return write(data)

    gripper.bus._serial.write = recording_write
    return sent


def drive_activation_move_and_grasp(port: str, gripper: ManualGripper) -> None:
    """Activation, a move with chosen speed and force, and a grasp, checked on both sides of the line."""
    with RobotiqGripper(port, timeout_s=T, poll_period_s=0.001) as driver:
        assert [(w["rACT"], w["rGTO"]) for w in gripper.writes] == [(0, 0), (1, 0)]  # reset, then activate
        status = driver.read()
        assert status.is_ready and gripper.gSTA == 3 and status.fault == 0

        driver.move(100, speed=200, force=50)
        w = gripper.writes[-1]
        assert (w["rACT"], w["rGTO"], w["rATR"], w["rPR"], w["rSP"], w["rFR"]) == (1, 1, 0, 100, 200, 50)
        status = driver.wait_until_stopped(timeout_s=5.0)
        assert status.position == gripper.gPO == 100 and status.requested_position == 100
        assert int(status.object) == gripper.gOBJ == 3 and not status.has_object  # at the request

        driver.close(speed=255, force=150)
        assert (gripper.writes[-1]["rPR"], gripper.writes[-1]["rFR"]) == (255, 150)
        status = driver.wait_until_stopped(timeout_s=5.0)
        assert status.has_object and int(status.object) == gripper.gOBJ == 2  # stopped on an object, closing
        assert status.position == gripper.gPO == gripper.object_at
        assert driver.width_m(status.position) == pytest.approx(0.085 * (255 - gripper.object_at) / 255)


def test_activation_move_and_object_detection_against_the_manuals_register_map(pty_pair):
    gripper = ManualGripper(object_at=189)
    with PymodbusSlave(pty_pair[0], gripper):
        drive_activation_move_and_grasp(pty_pair[1], gripper)


def test_the_driver_sends_the_manuals_frames_and_decodes_its_example_response(pty_pair):
    gripper = ManualGripper(object_at=0xBD)
    with PymodbusSlave(pty_pair[0], gripper) as slave, RobotiqGripper(pty_pair[1], timeout_s=T) as driver:
        sent = _record_requests(driver)
        driver.open()
        driver.wait_until_stopped(timeout_s=5.0)
        assert sent[0] == OPEN_FULL and set(sent[1:]) == {READ_STATUS}
        sent.clear()
        driver.close()
        status = driver.wait_until_stopped(timeout_s=5.0)
        assert sent[0] == CLOSE_FULL and set(sent[1:]) == {READ_STATUS}
        assert WRITE_ACK in slave.responses and slave.responses[-1] == GRASPED
        assert status.has_object and status.position == 189 and status.requested_position == 255
        assert status.current_a == 0.0 and status.fault == 0


def _wrong_status_register(monkeypatch):
    monkeypatch.setattr(robotiq_registers, "STATUS_REGISTER", INPUT + 1)


def _wrong_command_register(monkeypatch):
    monkeypatch.setattr(robotiq_registers, "COMMAND_REGISTER", OUTPUT + 1)


def _mutate_command(monkeypatch, mutate):
    encode = robotiq_registers.encode_command
    monkeypatch.setattr(robotiq_registers, "encode_command", lambda *a, **k: mutate(encode(*a, **k)))


def _speed_and_force_swapped(monkeypatch):
    _mutate_command(monkeypatch, lambda r: (r[0], r[1], (r[2] & 0xFF) << 8 | r[2] >> 8))


def _go_to_on_bit_2(monkeypatch):
    _mutate_command(monkeypatch, lambda r: ((r[0] & ~0x0800) | (r[0] & 0x0800) >> 1, r[1], r[2]))


def _position_in_the_high_byte(monkeypatch):
    _mutate_command(monkeypatch, lambda r: (r[0], (r[1] & 0xFF) << 8, r[2]))


def _position_and_current_swapped_on_read(monkeypatch):
    decode = robotiq_registers.decode_status
    monkeypatch.setattr(robotiq_registers, "decode_status",
                        lambda regs, t=0.0: decode([regs[0], regs[1], (regs[2] & 0xFF) << 8 | regs[2] >> 8], t))


@pytest.mark.parametrize("wrong", [
    _wrong_status_register, _wrong_command_register, _speed_and_force_swapped, _go_to_on_bit_2,
    _position_in_the_high_byte, _position_and_current_swapped_on_read,
], ids=lambda f: f.__name__.strip("_"))
def test_a_wrong_register_or_field_in_the_driver_fails_against_the_manual(pty_pair, monkeypatch, wrong):
    wrong(monkeypatch)
    gripper = ManualGripper(object_at=189)
    with PymodbusSlave(pty_pair[0], gripper):
        with pytest.raises((ModbusError, GripperFaultError, AssertionError)):
            drive_activation_move_and_grasp(pty_pair[1], gripper)
