"""Teleop devices: HID report decoding and device logic driven by synthetic input events."""

import struct

import numpy as np
import pytest

from robot_rl.hardware.device_errors import HardwareError
from robot_rl.hardware.teleop.events import Action, EventKind
from robot_rl.hardware.teleop.gamepad import GamepadTeleop
from robot_rl.hardware.teleop.keyboard import KeyboardTeleop
from robot_rl.hardware.teleop.spacemouse import SpaceMouse, decode_report
from robot_rl.hardware.teleop.teleop_state import TeleopConfig, apply_deadband

CFG = TeleopConfig(max_linear_mps=0.1, max_angular_radps=0.5, deadband=0.0)
# The SpaceMouse's default: its spring-return cap and report watchdog stand in for a deadman button.
FREE = TeleopConfig(max_linear_mps=0.1, max_angular_radps=0.5, deadband=0.0, require_deadman=False)


def kinds(cmd):
    return [e.kind for e in cmd.events]


# --- SpaceMouse HID decoding ---------------------------------------------------------------------------

def report(rid, *values):
    return bytes([rid]) + struct.pack(f"<{len(values)}h", *values)


def test_translation_report_decodes_signed_little_endian_axes():
    assert decode_report(report(1, 350, -350, 12)).translation == (350, -350, 12)


def test_combined_six_axis_report_of_newer_devices_carries_rotation():
    r = decode_report(report(1, 1, 2, 3, -4, -5, -6))
    assert r.translation == (1, 2, 3) and r.rotation == (-4, -5, -6)


def test_rotation_report_of_older_devices():
    assert decode_report(report(2, 100, 0, -100)).rotation == (100, 0, -100)


def test_button_report_is_a_bitmask():
    assert decode_report(bytes([3, 0b10, 0])).buttons == 2


def test_unknown_report_is_ignored():
    assert decode_report(bytes([0x17, 1, 2])) is None and decode_report(b"") is None


class FakeHid:
    """Stands in for hidapi's `hid` module: one device that returns recorded reports, then nothing."""

    def __init__(self, reports, devices=((0x256F, 0xC635),)):
        self.reports = list(reports)
        self.devices = [{"vendor_id": v, "product_id": p, "path": b"/dev/hidraw7"} for v, p in devices]
        self.opened = None
        self.closed = False

    def enumerate(self):
        return self.devices

    def device(self):
        return self

    def open_path(self, path):
        self.opened = path

    def set_nonblocking(self, flag):
        pass

    def read(self, size):
        return list(self.reports.pop(0)) if self.reports else []

    def close(self):
        self.closed = True


def test_spacemouse_pushed_away_moves_forward_and_pressed_down_moves_down():
    # Device y towards the user; pushing the cap away is -y_dev. Pressing the cap down is +z_dev.
    hid = FakeHid([report(1, 0, -350, 175, 0, 0, 0)])
    mouse = SpaceMouse(config=FREE, hid_module=hid)
    mouse.connect()
    assert hid.opened == b"/dev/hidraw7" and mouse.product == "SpaceMouse Compact"
    mouse.read(t=0.0)
    cmd = mouse.read(t=0.05)
    assert cmd.enabled and cmd.velocity[:3] == pytest.approx([0.1, 0.0, -0.05])
    assert cmd.delta[:3] == pytest.approx([0.005, 0.0, -0.0025])
    mouse.disconnect()
    assert hid.closed


def test_spacemouse_left_button_toggles_the_gripper_once_per_press():
    hid = FakeHid([bytes([3, 1, 0]), bytes([3, 0, 0]), bytes([3, 1, 0])])
    mouse = SpaceMouse(config=FREE, hid_module=hid)
    mouse.connect()
    cmd = mouse.read(t=0.0)
    assert kinds(cmd) == [EventKind.GRIPPER_CLOSE, EventKind.GRIPPER_OPEN] and not cmd.gripper_closed


def test_spacemouse_stale_reports_stop_motion():
    hid = FakeHid([report(1, 0, -350, 0, 0, 0, 0)])
    mouse = SpaceMouse(config=FREE, hid_module=hid, stale_after_s=0.2)
    mouse.connect()
    mouse.feed(report(1, 0, -350, 0, 0, 0, 0), t=10.0)
    hid.reports.clear()
    assert mouse.read(t=10.1).velocity[0] > 0
    assert not mouse.read(t=10.5).velocity.any()  # no report for 0.4 s: treated as released


def test_spacemouse_deadman_button_gates_motion():
    mouse = SpaceMouse(deadman_button=1, config=TeleopConfig(deadband=0.0), hid_module=FakeHid([]))
    mouse.connect()
    mouse.feed(report(1, 0, -350, 0, 0, 0, 0), t=0.0)
    assert not mouse.read(t=0.01).enabled
    mouse.feed(bytes([3, 0b10, 0]), t=0.02)
    assert mouse.read(t=0.03).velocity[0] > 0


def test_no_spacemouse_attached_is_reported_by_the_real_hidapi():
    pytest.importorskip("hid", reason="hidapi not installed (pip install robot_rl[hardware])")
    with pytest.raises(HardwareError, match="no SpaceMouse found over HID"):
        SpaceMouse(vendor_id=0x256F, product_id=0xFFFF).connect()


# --- keyboard and gamepad -------------------------------------------------------------------------------

def test_keyboard_moves_only_while_the_deadman_is_held():
    kb = KeyboardTeleop(config=CFG)
    kb.read(t=0.0)
    kb.press("w")
    assert not kb.read(t=0.1).delta.any()
    kb.press("space")
    cmd = kb.read(t=0.2)
    assert cmd.enabled and cmd.delta == pytest.approx([0.01, 0, 0, 0, 0, 0])
    kb.release("space")
    assert not kb.read(t=0.3).enabled


def test_keyboard_rotation_keys_drive_angular_deltas():
    kb = KeyboardTeleop(config=CFG)
    kb.press("space")
    kb.read(t=0.0)
    kb.press("J")  # case-insensitive
    assert kb.read(t=0.1).delta == pytest.approx([0, 0, 0, 0, 0, 0.05])


def test_session_keys_produce_typed_events_in_order():
    kb = KeyboardTeleop(config=CFG)
    for key in ("enter", "y", "right", "left", "n"):
        kb.press(key, t=1.0)
        kb.release(key, t=1.0)
    assert kinds(kb.read(t=1.0)) == [
        EventKind.START, EventKind.MARK_SUCCESS, EventKind.STOP_AND_SAVE, EventKind.DISCARD, EventKind.MARK_FAILURE,
    ]
    assert kb.read(t=1.1).events == ()  # each press is delivered once


def test_holding_a_toggle_key_fires_once():
    kb = KeyboardTeleop(config=CFG)
    kb.press("t")
    kb.press("t")  # auto-repeat from the OS
    cmd = kb.read(t=0.0)
    assert kinds(cmd) == [EventKind.INTERVENTION_START] and cmd.intervention
    kb.release("t")
    kb.press("t")
    assert kinds(kb.read(t=0.1)) == [EventKind.INTERVENTION_END]


def test_long_gaps_between_reads_do_not_become_jumps():
    kb = KeyboardTeleop(config=TeleopConfig(max_linear_mps=0.1, deadband=0.0, max_step_s=0.1))
    kb.press("space")
    kb.press("w")
    kb.read(t=0.0)
    assert kb.read(t=5.0).delta[0] == pytest.approx(0.01)


def test_gamepad_sticks_and_triggers_map_to_the_relative_frame():
    pad = GamepadTeleop(config=CFG)
    pad.press("left_bumper")
    pad.read(t=0.0)
    pad.set_value("left_y", -1.0)  # stick pushed forward
    pad.set_value("left_x", 0.5)  # half right
    pad.set_value("right_trigger", 0.25)
    cmd = pad.read(t=1.0 / 10)
    assert cmd.velocity[:3] == pytest.approx([0.1, -0.05, 0.025])


def test_gamepad_disconnect_releases_everything():
    pad = GamepadTeleop(config=CFG)
    pad.press("left_bumper")
    pad.set_value("left_y", -1.0)
    pad.disconnect()
    assert not pad.read(t=0.0).enabled and not pad.axes().any()


def test_deadband_is_continuous_and_reaches_full_scale():
    out = apply_deadband(np.array([0.04, 0.05, 0.525, 1.0, -2.0, -0.5]), 0.05)
    assert out == pytest.approx([0.0, 0.0, 0.5, 1.0, -1.0, -0.45 / 0.95])


def test_invalid_binding_is_refused_naming_the_input():
    with pytest.raises(ValueError, match="binding for input 'q'"):
        KeyboardTeleop(bindings={"q": "jump"})


def test_deadman_is_not_needed_when_configured_off():
    kb = KeyboardTeleop(config=TeleopConfig(require_deadman=False, deadband=0.0, max_linear_mps=0.1))
    kb.press("r")
    kb.read(t=0.0)
    assert kb.read(t=0.1).delta[2] == pytest.approx(0.01)


def test_spacemouse_without_deadman_button_needs_no_deadman_by_default():
    assert not SpaceMouse(hid_module=FakeHid([])).state.config.require_deadman
    assert SpaceMouse(deadman_button=0, hid_module=FakeHid([])).bindings["button_0"] == Action.DEADMAN
