"""Robotiq 2F gripper emulator: the Modbus RTU register map with simulated finger motion.

Serves one serial port (a pty end, or any pyserial URL) from a background thread, so the unchanged
`RobotiqGripper` driver can talk to it through a real serial line:

    socat pty,raw,echo=0,link=/tmp/grip_emu pty,raw,echo=0,link=/tmp/grip &
    python -m robot_rl.hardware.emulators.robotiq_emulator /tmp/grip_emu     # driver opens /tmp/grip

Fault injection for tests: `corrupt_crc=True` answers every request with a bad CRC, `corrupt_first=n`
only the first n; `silent=True` never answers (timeout path).

It encodes registers with the driver's own `robotiq_registers` and `modbus_rtu`, so it cannot catch a
wrong register in them: tests/hardware/test_robotiq_pymodbus.py checks the driver against pymodbus's
RTU server holding the manual's register map.
"""

from __future__ import annotations

import threading

from robot_rl.core import clock
from robot_rl.hardware import modbus_rtu as rtu
from robot_rl.hardware import robotiq_registers as reg
from robot_rl.hardware.device_errors import ModbusError, require


class RobotiqEmulator:
    """Emulated gripper behind `port`. Finger speed follows rSP over the model's speed range, scaled by
    `time_scale` (> 1 makes motion faster than real, for short tests). An object placed at `object_position`
    (bits) stops closing fingers there and reports gOBJ = 2."""

    def __init__(
        self, port: str, slave_id: int = reg.DEFAULT_SLAVE_ID, model: str = "2f85", activation_time_s: float = 0.05,
        time_scale: float = 1.0, object_position: int | None = None, corrupt_crc: bool = False,
        corrupt_first: int = 0, silent: bool = False,
    ) -> None:
        self.port = port
        self.slave_id = slave_id
        self.model = reg.MODELS[model]
        self.activation_time_s = activation_time_s
        self.time_scale = time_scale
        self.object_position = object_position
        self.corrupt_crc = corrupt_crc
        self.corrupt_first = corrupt_first
        self.silent = silent
        self.command = reg.encode_command(False, False)
        self.commands: list[dict] = []  # every command written, decoded, in order
        self.requests = 0
        self.position = 0.0  # bits, float for smooth motion
        self.obj = reg.ObjectStatus.MOVING
        self.fault = 0
        self._activation_started: float | None = None
        self._active = False
        self._last_update = clock.now()
        self._serial = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> "RobotiqEmulator":
        serial = require("serial")
        self._serial = serial.serial_for_url(self.port, baudrate=115200, timeout=0.02)
        self._thread = threading.Thread(target=self._serve, name=f"robotiq-emulator {self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._serial is not None:
            self._serial.close()

    def __enter__(self) -> "RobotiqEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def inject_fault(self, code: int) -> None:
        """Raise a gFLT fault (e.g. 0x0E overcurrent) as the real gripper would; a reset (rACT = 0) clears it."""
        with self._lock:
            self.fault = code

    # register map ------------------------------------------------------------------------------------
    def status_registers(self) -> tuple[int, int, int]:
        with self._lock:
            self._simulate(clock.now())
            cmd = reg.decode_command(self.command)
            activation = (
                reg.ActivationStatus.ACTIVE if self._active
                else reg.ActivationStatus.ACTIVATING if self._activation_started is not None
                else reg.ActivationStatus.RESET
            )
            moving = cmd["go_to"] and self.obj == reg.ObjectStatus.MOVING
            gripping = self.obj == reg.ObjectStatus.CONTACT_CLOSING
            current = (20 if moving else 0) + (cmd["force"] // 8 if gripping else 0)  # 10 mA counts
            return reg.encode_status(
                activated=self._active, go_to=cmd["go_to"], activation=activation, obj=self.obj, fault=self.fault,
                requested_position=cmd["position"], position=int(round(self.position)),
                current_counts=current,
            )

    def write_command(self, registers) -> None:
        with self._lock:
            now = clock.now()
            self._simulate(now)
            new = reg.decode_command(registers)
            old = reg.decode_command(self.command)
            self.command = tuple(registers)
            self.commands.append(new)
            if not new["activate"]:
                self._active, self._activation_started, self.fault = False, None, 0
            elif not old["activate"]:
                self._activation_started = now
            if new["go_to"] and reg.is_major_fault(self.fault):
                pass  # a major fault holds until a reset (rACT = 0)
            elif new["go_to"]:
                if not new["activate"]:
                    self.fault = 0x07
                elif not self._active:
                    self.fault = 0x05
                else:
                    self.fault = 0
                    self.obj = reg.ObjectStatus.MOVING

    def _simulate(self, now: float) -> None:
        dt = now - self._last_update
        self._last_update = now
        if self._activation_started is not None and not self._active:
            if now - self._activation_started >= self.activation_time_s:
                self._active = True
                self.fault = 0 if self.fault == 0x05 else self.fault
        cmd = reg.decode_command(self.command)
        moving = self._active and cmd["go_to"] and self.obj == reg.ObjectStatus.MOVING
        if not moving or reg.is_major_fault(self.fault):
            return
        m = self.model
        speed_mps = m.min_speed_mps + cmd["speed"] / 255 * (m.max_speed_mps - m.min_speed_mps)
        step = speed_mps / m.stroke_m * 255 * dt * self.time_scale
        target = cmd["position"]
        obstacle = self.object_position
        if target > self.position:
            limit = target if obstacle is None or obstacle >= target or obstacle < self.position else obstacle
            self.position = min(self.position + step, limit)
            if self.position >= limit:
                self.obj = reg.ObjectStatus.AT_REQUEST if limit == target else reg.ObjectStatus.CONTACT_CLOSING
        else:
            self.position = max(self.position - step, target)
            if self.position <= target:
                self.obj = reg.ObjectStatus.AT_REQUEST

    # serial side -------------------------------------------------------------------------------------
    def _serve(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                chunk = self._serial.read(max(1, self._serial.in_waiting))
            except Exception:  # port closed under us (stop) or pty gone
                return
            if not chunk:
                buf = b""  # inter-frame silence: drop any partial frame, as RTU framing does
                continue
            buf += chunk
            while buf:
                try:
                    need = rtu.request_length(buf)
                except ModbusError:
                    buf = b""
                    break
                if need is None or len(buf) < need:
                    break
                frame, buf = buf[:need], buf[need:]
                reply = self.handle(frame)
                if reply is not None:
                    self._serial.write(reply)

    def handle(self, frame: bytes) -> bytes | None:
        """The reply to one request frame (None: no reply, as a real slave ignores bad frames)."""
        try:
            request = rtu.decode_request(frame)
        except ModbusError:
            return None
        if request.slave != self.slave_id or self.silent:
            return None
        self.requests += 1
        reply = self._reply(request)
        if self.corrupt_crc or self.requests <= self.corrupt_first:
            reply = reply[:-2] + bytes([reply[-2] ^ 0xFF, reply[-1]])
        return reply

    def _reply(self, request: rtu.Request) -> bytes:
        n = reg.N_REGISTERS
        if request.function in (rtu.READ_HOLDING_REGISTERS, rtu.READ_INPUT_REGISTERS):
            if request.address == reg.STATUS_REGISTER and request.count <= n:
                values = self.status_registers()[:request.count]
                return rtu.encode_read_response(self.slave_id, request.function, values)
            if request.address == reg.COMMAND_REGISTER and request.count <= n:
                return rtu.encode_read_response(self.slave_id, request.function, self.command[:request.count])
        elif request.function == rtu.WRITE_MULTIPLE_REGISTERS:
            if request.address == reg.COMMAND_REGISTER and request.count == n:
                self.write_command(request.values)
                return rtu.encode_write_response(self.slave_id, request.address, request.count)
        return rtu.encode_exception(self.slave_id, request.function, 0x02)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Serve an emulated Robotiq 2F gripper on a serial port.")
    parser.add_argument("port", help="device path or pyserial URL (e.g. one end of a socat pty pair)")
    parser.add_argument("--model", default="2f85", choices=sorted(reg.MODELS))
    parser.add_argument("--slave-id", type=int, default=reg.DEFAULT_SLAVE_ID)
    parser.add_argument(
        "--object-position", type=int, default=None, help="bits at which closing fingers meet an object"
    )
    args = parser.parse_args(argv)
    emulator = RobotiqEmulator(args.port, args.slave_id, args.model, object_position=args.object_position).start()
    print(f"Robotiq {args.model} emulator (slave {args.slave_id}) on {args.port}; Ctrl-C to stop")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emulator.stop()


if __name__ == "__main__":
    main()
