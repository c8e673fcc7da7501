"""Modbus RTU frames as pure functions: CRC-16/MODBUS, FC03/FC04 reads, FC16 writes, exceptions.

A frame is `slave id | function | payload | CRC (little-endian)`. Register values are 16-bit big-endian.
Nothing here touches a port; `ModbusRTUClient` in `modbus_client.py` does the I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from robot_rl.hardware.device_errors import ModbusCRCError, ModbusExceptionError, ModbusFrameError

READ_HOLDING_REGISTERS = 0x03
READ_INPUT_REGISTERS = 0x04
WRITE_MULTIPLE_REGISTERS = 0x10
MAX_READ_REGISTERS = 125
MAX_WRITE_REGISTERS = 123

EXCEPTION_NAMES = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "slave device failure",
    0x05: "acknowledge",
    0x06: "slave device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF). Sent low byte first."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<H", crc16(body))


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == struct.unpack("<H", frame[-2:])[0]


def _check_slave(slave: int) -> None:
    if not 0 <= slave <= 247:
        raise ValueError(f"Modbus slave id must be in 0..247, got {slave}")


def _check_address(address: int, count: int, limit: int) -> None:
    if not 0 <= address <= 0xFFFF:
        raise ValueError(f"Modbus register address must be in 0x0000..0xFFFF, got {address:#x}")
    if not 1 <= count <= limit:
        raise ValueError(f"Modbus register count at {address:#06x} must be in 1..{limit}, got {count}")


def encode_read(slave: int, function: int, address: int, count: int) -> bytes:
    """FC03 (holding) or FC04 (input) read request for `count` registers from `address`."""
    _check_slave(slave)
    if function not in (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS):
        raise ValueError(f"read function must be 0x03 or 0x04, got {function:#04x}")
    _check_address(address, count, MAX_READ_REGISTERS)
    return with_crc(struct.pack(">BBHH", slave, function, address, count))


def encode_write_multiple(slave: int, address: int, values: list[int] | tuple[int, ...]) -> bytes:
    """FC16 request writing 16-bit `values` to consecutive registers from `address`."""
    _check_slave(slave)
    _check_address(address, len(values), MAX_WRITE_REGISTERS)
    for i, v in enumerate(values):
        if not 0 <= int(v) <= 0xFFFF:
            raise ValueError(f"register {address + i:#06x}: value {v} does not fit 16 bits")
    body = struct.pack(">BBHHB", slave, WRITE_MULTIPLE_REGISTERS, address, len(values), 2 * len(values))
    return with_crc(body + struct.pack(f">{len(values)}H", *values))


def response_length(head: bytes) -> int | None:
    """Total length of a response given its first 3 bytes (None if more bytes are needed)."""
    if len(head) < 3:
        return None
    function = head[1]
    if function & 0x80:
        return 5
    if function in (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS):
        return 5 + head[2]
    if function == WRITE_MULTIPLE_REGISTERS:
        return 8
    raise ModbusFrameError(f"response has unsupported function code {function:#04x} (frame starts {head.hex(' ')})")


def request_length(head: bytes) -> int | None:
    """Total length of a request given its first bytes (for emulators/sniffers); None if more are needed."""
    if len(head) < 2:
        return None
    function = head[1]
    if function in (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS):
        return 8
    if function == WRITE_MULTIPLE_REGISTERS:
        return None if len(head) < 7 else 9 + head[6]
    raise ModbusFrameError(f"request has unsupported function code {function:#04x} (frame starts {head.hex(' ')})")


@dataclass(frozen=True)
class Request:
    slave: int
    function: int
    address: int
    count: int
    values: tuple[int, ...] = ()  # FC16 only


def decode_request(frame: bytes) -> Request:
    """Parse a complete FC03/FC04/FC16 request (emulator side). Raises ModbusCRCError/ModbusFrameError."""
    if not crc_ok(frame):
        raise ModbusCRCError(f"request CRC mismatch in frame {frame.hex(' ')}")
    slave, function, address, count = struct.unpack(">BBHH", frame[:6])
    if function == WRITE_MULTIPLE_REGISTERS:
        nbytes = frame[6]
        if nbytes != 2 * count or len(frame) != 9 + nbytes:
            raise ModbusFrameError(
                f"FC16 request byte count {nbytes} does not match {count} registers: {frame.hex(' ')}"
            )
        values = struct.unpack(f">{count}H", frame[7:7 + nbytes])
        return Request(slave, function, address, count, values)
    if function in (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS) and len(frame) == 8:
        return Request(slave, function, address, count)
    raise ModbusFrameError(f"unsupported request {frame.hex(' ')}")


def encode_read_response(slave: int, function: int, values: list[int] | tuple[int, ...]) -> bytes:
    return with_crc(struct.pack(">BBB", slave, function, 2 * len(values)) + struct.pack(f">{len(values)}H", *values))


def encode_write_response(slave: int, address: int, count: int) -> bytes:
    return with_crc(struct.pack(">BBHH", slave, WRITE_MULTIPLE_REGISTERS, address, count))


def encode_exception(slave: int, function: int, code: int) -> bytes:
    return with_crc(struct.pack(">BBB", slave, function | 0x80, code))


def _check_response(request: bytes, response: bytes) -> None:
    if not crc_ok(response):
        got = response[-2:].hex(" ") if len(response) >= 2 else "none"
        raise ModbusCRCError(
            f"response CRC mismatch (expected {struct.pack('<H', crc16(response[:-2])).hex(' ')}, got {got}) "
            f"in frame {response.hex(' ')} answering {request.hex(' ')}"
        )
    if response[0] != request[0]:
        raise ModbusFrameError(
            f"response from slave {response[0]} to a request for slave {request[0]}: {response.hex(' ')}"
        )
    if response[1] == request[1] | 0x80:
        code = response[2]
        address = struct.unpack(">H", request[2:4])[0]
        raise ModbusExceptionError(
            f"slave {request[0]} refused function {request[1]:#04x} at register {address:#06x}: "
            f"exception {code:#04x} ({EXCEPTION_NAMES.get(code, 'unknown')})",
            code,
        )
    if response[1] != request[1]:
        raise ModbusFrameError(
            f"response function {response[1]:#04x} does not match request {request[1]:#04x}: {response.hex(' ')}"
        )


def decode_read_response(request: bytes, response: bytes) -> tuple[int, ...]:
    """Register values from a FC03/FC04 response to `request`."""
    _check_response(request, response)
    count = struct.unpack(">H", request[4:6])[0]
    if response[2] != 2 * count or len(response) != 5 + 2 * count:
        raise ModbusFrameError(f"read response carries {response[2]} bytes, expected {2 * count}: {response.hex(' ')}")
    return struct.unpack(f">{count}H", response[3:3 + 2 * count])


def decode_write_response(request: bytes, response: bytes) -> None:
    """Check a FC16 response echoes the request's address and register count."""
    _check_response(request, response)
    if len(response) != 8 or response[2:6] != request[2:6]:
        raise ModbusFrameError(f"write response {response.hex(' ')} does not echo request {request[:6].hex(' ')}")
