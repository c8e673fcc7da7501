"""Modbus RTU master over a serial port (pyserial), with timeouts and retries.

The port is a device path (`/dev/ttyUSB0`) or any pyserial URL (`spy://...`, `rfc2217://...`, `socket://...`),
opened with `serial.serial_for_url`. Errors name the port, the function, the register and the frames.
"""

from __future__ import annotations

import threading

from robot_rl.hardware import modbus_rtu as rtu
from robot_rl.hardware.device_errors import (
    DeviceNotConnectedError, ModbusCRCError, ModbusError, ModbusExceptionError, ModbusFrameError, ModbusTimeoutError,
    require,
)

SLAVE_BUSY = 0x06


class ModbusRTUClient:
    """One serial line, one transaction at a time (thread-safe).

    timeout_s bounds the wait for each response; a timed-out, CRC-corrupted or malformed response is retried
    `retries` times (after flushing the input) before the error is raised.
    """

    def __init__(self, port: str, baudrate: int = 115200, timeout_s: float = 0.1, retries: int = 2) -> None:
        if timeout_s <= 0:
            raise ValueError(f"{port}: Modbus timeout must be > 0 s, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"{port}: Modbus retries must be >= 0, got {retries}")
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.retries = retries
        self._serial = None
        self._lock = threading.Lock()
        self.stats = {"transactions": 0, "retries": 0, "timeouts": 0, "crc_errors": 0}

    @property
    def is_connected(self) -> bool:
        return self._serial is not None

    def connect(self) -> None:
        serial = require("serial")
        # 8N1 is pyserial's default framing. A device path is locked (flock) so a second process cannot
        # interleave its frames with ours on the same bus.
        extra = {} if "://" in self.port else {"exclusive": True}
        try:
            self._serial = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=self.timeout_s, **extra)
        except (serial.SerialException, ValueError, OSError) as e:
            raise ModbusError(
                f"{self.port}: cannot open serial port ({e}); check the path, that the adapter is plugged in, that "
                f"your user may open it (docs/hardware.md, udev rules) and that no other process holds it"
            ) from e
        self._serial.reset_input_buffer()

    def disconnect(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            finally:
                self._serial = None

    def read_registers(
        self, slave: int, address: int, count: int, function: int = rtu.READ_INPUT_REGISTERS
    ) -> tuple[int, ...]:
        request = rtu.encode_read(slave, function, address, count)
        return self._transact(request, rtu.decode_read_response, address)

    def write_registers(self, slave: int, address: int, values) -> None:
        request = rtu.encode_write_multiple(slave, address, list(values))
        self._transact(request, rtu.decode_write_response, address)

    def _transact(self, request: bytes, decode, address: int):
        if self._serial is None:
            raise DeviceNotConnectedError(f"{self.port}: Modbus client is not connected; call connect() first")
        with self._lock:
            self.stats["transactions"] += 1
            last: ModbusError | None = None
            for attempt in range(self.retries + 1):
                if attempt:
                    self.stats["retries"] += 1
                    self._serial.reset_input_buffer()
                try:
                    self._serial.write(request)
                    self._serial.flush()
                    return decode(request, self._read_response(request, address))
                except ModbusExceptionError as e:
                    if e.code != SLAVE_BUSY:
                        raise ModbusExceptionError(f"{self.port}: {e}", e.code) from None
                    last = ModbusExceptionError(f"{self.port}: {e}", e.code)
                except ModbusTimeoutError as e:
                    self.stats["timeouts"] += 1
                    last = e
                except ModbusCRCError as e:
                    self.stats["crc_errors"] += 1
                    last = ModbusCRCError(f"{self.port}: {e}")
                except ModbusFrameError as e:
                    last = ModbusFrameError(f"{self.port}: {e}")
            extra = [last.code] if isinstance(last, ModbusExceptionError) else []
            raise type(last)(f"{last} (after {self.retries + 1} attempts)", *extra)

    def _read_response(self, request: bytes, address: int) -> bytes:
        head = self._serial.read(3)
        try:
            total = rtu.response_length(head) if len(head) == 3 else None
        except ModbusFrameError as e:
            raise ModbusFrameError(f"{e}; answering {request.hex(' ')}") from None
        frame = head + (self._serial.read(total - 3) if total else b"")
        if total is None or len(frame) < total:
            what = f"partial response {frame.hex(' ')}" if frame else "no response"
            raise ModbusTimeoutError(
                f"{self.port}: {what} within {self.timeout_s * 1e3:.0f} ms from slave {request[0]} to function "
                f"{request[1]:#04x} at register {address:#06x} (request {request.hex(' ')}); check power, wiring, "
                f"baud rate {self.baudrate} and slave id"
            )
        return frame
