"""EvdevGamepad: an Xbox-style pad's input_event records (EV_KEY buttons, EV_ABS sticks, triggers and hat)
through a FIFO standing in for /dev/input/eventN, driving the unchanged gamepad teleop logic."""

from __future__ import annotations

import os

import numpy as np
import pytest

from robot_rl.hardware.device_errors import HardwareError
from robot_rl.hardware.teleop.events import EventKind
from robot_rl.hardware.teleop.evdev import EVENT
from robot_rl.hardware.teleop.evdev_gamepad import EV_ABS, EvdevGamepad
from robot_rl.hardware.teleop.teleop_state import TeleopConfig

EV_SYN, EV_KEY = 0, 1
BTN = {"a": 304, "start": 315, "left_bumper": 310}
ABS = {"left_x": 0, "left_y": 1, "left_trigger": 2, "right_x": 3, "right_y": 4, "right_trigger": 5, "hat_y": 17}
XPAD = {"left_x": (-32768, 32767), "left_y": (-32768, 32767), "right_x": (-32768, 32767),
        "right_y": (-32768, 32767), "left_trigger": (0, 1023), "right_trigger": (0, 1023)}
CFG = TeleopConfig(max_linear_mps=0.1, max_angular_radps=0.5, deadband=0.0)


def event(typ: int, code: int, value: int) -> bytes:
    return EVENT.pack(0, 0, typ, code, value) + EVENT.pack(0, 0, EV_SYN, 0, 0)


@pytest.fixture
def pad(tmp_path):
    path = str(tmp_path / "event12")
    os.mkfifo(path)
    gp = EvdevGamepad(path, ranges=XPAD, config=CFG)
    gp.connect()
    writer = os.open(path, os.O_WRONLY)
    yield gp, lambda data: os.write(writer, data)
    os.close(writer)
    gp.disconnect()


def test_stick_forward_with_the_bumper_held_moves_forward_and_the_trigger_lifts(pad):
    gp, write = pad
    gp.read(t=0.0)
    write(event(EV_ABS, ABS["left_y"], -32768) + event(EV_ABS, ABS["right_trigger"], 1023))
    assert not gp.read(t=0.1).velocity.any()                          # no deadman: no motion
    write(event(EV_KEY, BTN["left_bumper"], 1))
    np.testing.assert_allclose(gp.read(t=0.2).velocity, [0.1, 0, 0.1, 0, 0, 0], atol=1e-4)
    write(event(EV_ABS, ABS["left_y"], 0) + event(EV_ABS, ABS["right_trigger"], 0))
    np.testing.assert_allclose(gp.read(t=0.3).velocity, 0, atol=1e-4)  # centred stick: stops


def test_buttons_and_the_hat_give_toggles_and_session_events(pad):
    gp, write = pad
    write(event(EV_KEY, BTN["start"], 1) + event(EV_KEY, BTN["start"], 0) + event(EV_KEY, BTN["a"], 1)
          + event(EV_KEY, BTN["a"], 2) + event(EV_ABS, ABS["hat_y"], -1) + event(EV_ABS, ABS["hat_y"], 0))
    cmd = gp.read(t=0.0)
    assert [e.kind for e in cmd.events] == [EventKind.START, EventKind.GRIPPER_CLOSE, EventKind.MARK_SUCCESS]
    assert cmd.gripper_closed                                         # auto-repeat did not toggle it back


def test_axis_ranges_are_asked_from_the_device_and_a_pipe_has_none(tmp_path):
    path = str(tmp_path / "event13")
    os.mkfifo(path)
    writer = os.open(path, os.O_RDWR)   # keeps the FIFO open so the pad's open does not fail
    try:
        with pytest.raises(HardwareError, match=r"gamepad .*event13: cannot read the range of axis left_x"):
            EvdevGamepad(path).connect()
    finally:
        os.close(writer)
    with pytest.raises(ValueError, match="ranges\\['left_z'\\]"):
        EvdevGamepad(path, ranges={"left_z": (0, 1)})
