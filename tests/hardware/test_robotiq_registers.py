"""Robotiq register map: command encoding and status decoding as pure functions."""

import pytest

from robot_rl.hardware import robotiq_registers as reg


def test_go_to_command_packs_action_position_speed_force():
    assert reg.encode_command(True, True, position=0xFF, speed=0xFF, force=0xFF) == (0x0900, 0x00FF, 0xFFFF)


def test_activation_request_is_rACT_only():
    assert reg.encode_command(True, False) == (0x0100, 0x0000, 0xFFFF)


def test_status_after_activation_decodes_gACT_gSTA():
    status = reg.decode_status([0x3100, 0x0000, 0x0000])
    assert status.activated and status.activation == reg.ActivationStatus.ACTIVE and status.is_ready


def test_status_decodes_object_fault_positions_and_current():
    status = reg.decode_status([0xB900, 0x0EC8, 0xC30A])  # gOBJ 2, gGTO, gSTA 3, gFLT 0x0E, gPR 200, gPO 195, 100 mA
    assert status.object == reg.ObjectStatus.CONTACT_CLOSING and status.has_object and status.go_to
    assert status.fault == 0x0E and status.has_major_fault and "overcurrent" in status.fault_message
    assert (status.requested_position, status.position) == (200, 195)
    assert status.current_a == pytest.approx(0.10)


def test_minor_faults_are_not_major():
    assert not reg.decode_status([0x3100, 0x0700, 0]).has_major_fault


def test_status_encoding_round_trips():
    regs = reg.encode_status(True, True, 3, 1, 0x0B, 17, 42, 5, controller_fault=0x3)
    s = reg.decode_status(regs)
    assert (s.object, s.fault, s.controller_fault, s.requested_position, s.position) == (1, 0x0B, 0x3, 17, 42)


def test_out_of_range_command_names_the_field():
    with pytest.raises(ValueError, match="speed rSP must be in 0..255, got 300"):
        reg.encode_command(True, True, speed=300)
