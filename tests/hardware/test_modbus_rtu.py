"""Modbus RTU frames: pure encoding/decoding, checked against frames computed by hand from the spec."""

import pytest

from robot_rl.hardware import modbus_rtu as rtu
from robot_rl.hardware.device_errors import ModbusCRCError, ModbusExceptionError, ModbusFrameError


def test_crc16_matches_the_modbus_check_value():
    assert rtu.crc16(b"123456789") == 0x4B37  # CRC-16/MODBUS catalogue check value


def test_read_request_for_robotiq_status_is_the_documented_frame():
    # Robotiq manual example: read 3 input registers from 0x07D0 of slave 9.
    assert rtu.encode_read(9, rtu.READ_INPUT_REGISTERS, 0x07D0, 3) == bytes.fromhex("09 04 07 d0 00 03 b1 ce")


def test_write_request_for_robotiq_activation_is_the_documented_frame():
    # Robotiq manual example: activation request (rACT = 1) written with FC16.
    frame = rtu.encode_write_multiple(9, 0x03E8, [0x0100, 0x0000, 0x0000])
    assert frame == bytes.fromhex("09 10 03 e8 00 03 06 01 00 00 00 00 00 72 e1")


def test_read_response_decodes_register_values():
    request = rtu.encode_read(9, 4, 0x07D0, 3)
    response = rtu.encode_read_response(9, 4, [0x3100, 0x0000, 0x0000])
    assert rtu.decode_read_response(request, response) == (0x3100, 0, 0)


def test_write_response_must_echo_address_and_count():
    request = rtu.encode_write_multiple(9, 0x03E8, [1, 2, 3])
    rtu.decode_write_response(request, rtu.encode_write_response(9, 0x03E8, 3))
    with pytest.raises(ModbusFrameError, match="does not echo"):
        rtu.decode_write_response(request, rtu.encode_write_response(9, 0x03E9, 3))


def test_corrupted_crc_is_reported_with_the_frame():
    request = rtu.encode_read(9, 4, 0x07D0, 3)
    bad = bytearray(rtu.encode_read_response(9, 4, [1, 2, 3]))
    bad[-1] ^= 0x55
    with pytest.raises(ModbusCRCError, match=bytes(bad).hex(" ")):
        rtu.decode_read_response(request, bytes(bad))


def test_exception_response_names_function_register_and_reason():
    request = rtu.encode_read(9, 4, 0x1234, 1)
    with pytest.raises(ModbusExceptionError, match=r"0x1234.*illegal data address") as info:
        rtu.decode_read_response(request, rtu.encode_exception(9, 4, 0x02))
    assert info.value.code == 2


def test_response_from_another_slave_is_rejected():
    request = rtu.encode_read(9, 4, 0x07D0, 1)
    with pytest.raises(ModbusFrameError, match="slave 8"):
        rtu.decode_read_response(request, rtu.encode_read_response(8, 4, [0]))


def test_response_length_is_known_from_the_first_three_bytes():
    assert rtu.response_length(bytes([9, 4, 6])) == 11
    assert rtu.response_length(bytes([9, 0x10, 3])) == 8
    assert rtu.response_length(bytes([9, 0x84, 2])) == 5
    assert rtu.response_length(bytes([9, 4])) is None


def test_request_round_trips_through_the_emulator_side_decoder():
    frame = rtu.encode_write_multiple(9, 0x03E8, [0x0900, 0x00FF, 0xFF80])
    request = rtu.decode_request(frame)
    assert (request.slave, request.function, request.address) == (9, 0x10, 0x03E8)
    assert request.values == (0x0900, 0xFF, 0xFF80)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: rtu.encode_read(300, 4, 0, 1), "slave id"),
        (lambda: rtu.encode_read(9, 5, 0, 1), "0x03 or 0x04"),
        (lambda: rtu.encode_read(9, 4, 0, 200), "count"),
        (lambda: rtu.encode_write_multiple(9, 0x03E8, [70000]), "0x03e8: value 70000"),
    ],
)
def test_invalid_requests_are_refused_with_the_offending_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()
