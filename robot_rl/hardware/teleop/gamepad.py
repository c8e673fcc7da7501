"""Gamepad teleop (XInput-style layout). A backend (pygame, inputs, evdev) feeds `set_value(name, v)`:
sticks in [-1, 1] (up is -1, as most APIs report), triggers in [0, 1], buttons 0/1."""

from __future__ import annotations

from robot_rl.hardware.teleop.bindings import AxisBinding, BoundInputs
from robot_rl.hardware.teleop.events import Action
from robot_rl.hardware.teleop.teleop_state import TeleopConfig

DEFAULT_GAMEPAD = {
    "left_y": AxisBinding("x", -1),  # stick forward: +x
    "left_x": AxisBinding("y", -1),  # stick left: +y
    "right_trigger": AxisBinding("z", 1),
    "left_trigger": AxisBinding("z", -1),
    "dpad_left": AxisBinding("rx", -1),
    "dpad_right": AxisBinding("rx", 1),
    "right_y": AxisBinding("ry", 1),
    "right_x": AxisBinding("rz", -1),
    "left_bumper": Action.DEADMAN,
    "a": Action.GRIPPER_TOGGLE,
    "b": Action.INTERVENTION_TOGGLE,
    "start": Action.START,
    "back": Action.STOP_AND_SAVE,
    "x": Action.DISCARD,
    "dpad_up": Action.MARK_SUCCESS,
    "dpad_down": Action.MARK_FAILURE,
}


class GamepadTeleop(BoundInputs):
    def __init__(self, bindings=None, config: TeleopConfig | None = None) -> None:
        super().__init__(DEFAULT_GAMEPAD if bindings is None else bindings, config, name="gamepad")
