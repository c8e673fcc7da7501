"""The unchanged RobotiqGripper driver against the register-map emulator on a socat pty pair: timing,
retries, faults and errors. The emulator shares the driver's register module, so the register map itself
is checked against an independent Modbus slave in test_robotiq_pymodbus.py."""

import pytest

from robot_rl.hardware.emulators.robotiq_emulator import RobotiqEmulator
from robot_rl.hardware.device_errors import (
    DeviceNotConnectedError, GripperFaultError, ModbusCRCError, ModbusError, ModbusTimeoutError,
)
from robot_rl.hardware.robotiq import RobotiqGripper
from robot_rl.hardware.robotiq_registers import ObjectStatus

pytest.importorskip("serial", reason="pyserial not installed (pip install robot_rl[hardware])")

FAST = dict(activation_time_s=0.02, time_scale=20.0)  # 2F-85 full stroke in ~30 ms instead of 0.6 s
T = 0.5  # response timeout: generous, so a loaded CI machine scheduling socat late is not a failure


@pytest.fixture
def emulator(pty_pair):
    with RobotiqEmulator(pty_pair[0], **FAST) as emu:
        yield emu


@pytest.fixture
def gripper(emulator, pty_pair):
    g = RobotiqGripper(pty_pair[1], timeout_s=T)
    g.connect()
    yield g
    g.disconnect()


def test_connect_activates_the_gripper(gripper, emulator):
    assert gripper.read().is_ready
    assert [c["activate"] for c in emulator.commands[:2]] == [False, True]  # reset, then activate


def test_close_without_object_reaches_the_requested_position(gripper):
    gripper.close()
    status = gripper.wait_until_stopped(timeout_s=2.0)
    assert status.object == ObjectStatus.AT_REQUEST and not status.has_object
    assert status.position == 255 and gripper.width_m(status.position) == 0.0


def test_object_between_fingers_is_detected_while_closing(pty_pair):
    with RobotiqEmulator(pty_pair[0], object_position=120, **FAST), RobotiqGripper(pty_pair[1], timeout_s=T) as gripper:
        gripper.close(speed=128, force=100)
        status = gripper.wait_until_stopped(timeout_s=2.0)
    assert status.object == ObjectStatus.CONTACT_CLOSING and status.has_object
    assert status.position == 120 and status.current_a > 0


def test_move_width_converts_metres_speed_and_force_to_bits(gripper, emulator):
    gripper.move_width(0.085 / 2, speed_mps=0.150, force_n=20.0)
    assert emulator.commands[-1] == {
        "activate": True, "go_to": True, "auto_release": False, "position": 128, "speed": 255, "force": 0,
    }
    status = gripper.wait_until_stopped(timeout_s=2.0)
    assert gripper.width_m(status.position) == pytest.approx(0.0425, abs=0.0004)


def test_a_major_fault_is_raised_with_the_manuals_explanation(gripper, emulator, pty_pair):
    emulator.inject_fault(0x0E)
    gripper.close()
    with pytest.raises(GripperFaultError, match=rf"{pty_pair[1]}: gripper \(slave 9\) fault gFLT=0x0e: overcurrent"):
        gripper.wait_until_stopped(timeout_s=1.0)
    gripper.activate()  # the reset clears it
    assert gripper.read().fault == 0


def test_an_action_before_activation_is_delayed_until_activation_completes(pty_pair):
    slow = dict(FAST, activation_time_s=0.4)  # long enough to read the status while activation is running
    with RobotiqEmulator(pty_pair[0], **slow), RobotiqGripper(pty_pair[1], timeout_s=T, auto_activate=False) as gripper:
        gripper.move(60)
        assert gripper.read().fault == 0x05  # "action delayed"
        status = gripper.wait_until_stopped(timeout_s=2.0)
    assert status.is_ready and status.position == 60


def test_metric_command_out_of_range_names_value_and_model(gripper):
    with pytest.raises(ValueError, match=r"speed 0.3 m/s outside 0.02..0.15 m/s for the Robotiq 2F-85"):
        gripper.move_width(0.01, speed_mps=0.3)
    with pytest.raises(ValueError, match=r"width 0.1 m outside"):
        gripper.move_width(0.1)


def test_disconnect_leaves_the_gripper_stopped(gripper, emulator):
    gripper.move(200)
    gripper.disconnect()
    assert not gripper.is_connected
    last = emulator.commands[-1]
    assert last["activate"] and not last["go_to"] and last["position"] == 200


def test_disconnect_can_open_the_fingers_instead(emulator, pty_pair):
    gripper = RobotiqGripper(pty_pair[1], timeout_s=T, safe_state="open")
    gripper.connect()
    gripper.close()
    gripper.disconnect()
    assert emulator.commands[-1]["go_to"] and emulator.commands[-1]["position"] == 0


def test_disconnect_never_starts_an_activation(emulator, pty_pair):
    gripper = RobotiqGripper(pty_pair[1], timeout_s=T, auto_activate=False)
    gripper.connect()
    gripper.disconnect()
    assert emulator.commands == []


def test_commands_before_connect_are_refused_naming_the_port(pty_pair):
    with pytest.raises(DeviceNotConnectedError, match=pty_pair[1]):
        RobotiqGripper(pty_pair[1]).move(10)


def test_silent_gripper_times_out_naming_port_and_register(pty_pair):
    with RobotiqEmulator(pty_pair[0], silent=True):
        gripper = RobotiqGripper(pty_pair[1], timeout_s=0.05, retries=1)
        message = rf"{pty_pair[1]}: no response .* register 0x07d0.*after 2 attempts"
        with pytest.raises(ModbusTimeoutError, match=message):
            gripper.connect()
    assert not gripper.is_connected


def test_corrupted_responses_are_reported_as_crc_errors_after_retries(pty_pair):
    with RobotiqEmulator(pty_pair[0], corrupt_crc=True) as emu:
        gripper = RobotiqGripper(pty_pair[1], timeout_s=T, retries=2)
        with pytest.raises(ModbusCRCError, match=rf"{pty_pair[1]}: response CRC mismatch .* in frame 09 04 06"):
            gripper.connect()
    assert emu.requests == 3


def test_a_transient_crc_error_is_retried_transparently(pty_pair):
    with RobotiqEmulator(pty_pair[0], corrupt_first=1, **FAST), \
            RobotiqGripper(pty_pair[1], timeout_s=T, retries=1) as gripper:
        assert gripper.read().is_ready
        assert gripper.bus.stats["crc_errors"] == 1 and gripper.bus.stats["retries"] == 1


def test_missing_port_is_a_clear_error():
    with pytest.raises(ModbusError, match="/dev/does-not-exist: cannot open serial port"):
        RobotiqGripper("/dev/does-not-exist").connect()


def test_a_second_driver_on_the_same_port_is_refused(gripper, pty_pair):
    with pytest.raises(ModbusError, match=rf"{pty_pair[1]}: cannot open serial port .*no other process holds it"):
        RobotiqGripper(pty_pair[1]).connect()


def test_driver_accepts_a_pyserial_url(emulator, pty_pair, tmp_path):
    log = tmp_path / "spy.log"
    with RobotiqGripper(f"spy://{pty_pair[1]}?file={log}", timeout_s=T) as gripper:
        assert gripper.read().is_ready
    assert "09 04 07 D0 00 03" in log.read_text().upper()  # the spy URL logged the status request
