"""Keyboard teleop: held keys drive the axes at full speed; any backend (pynput, pygame, a GUI) feeds
`press(key)` / `release(key)` with lowercase key names."""

from __future__ import annotations

from robot_rl.hardware.teleop.bindings import AxisBinding, BoundInputs
from robot_rl.hardware.teleop.events import Action
from robot_rl.hardware.teleop.teleop_state import TeleopConfig

DEFAULT_KEYS = {
    "w": AxisBinding("x", 1), "s": AxisBinding("x", -1),
    "a": AxisBinding("y", 1), "d": AxisBinding("y", -1),
    "r": AxisBinding("z", 1), "f": AxisBinding("z", -1),
    "u": AxisBinding("rx", 1), "o": AxisBinding("rx", -1),
    "i": AxisBinding("ry", 1), "k": AxisBinding("ry", -1),
    "j": AxisBinding("rz", 1), "l": AxisBinding("rz", -1),
    "space": Action.DEADMAN,
    "g": Action.GRIPPER_TOGGLE,
    "t": Action.INTERVENTION_TOGGLE,
    "enter": Action.START,
    "right": Action.STOP_AND_SAVE,
    "left": Action.DISCARD,
    "y": Action.MARK_SUCCESS,
    "n": Action.MARK_FAILURE,
}


class KeyboardTeleop(BoundInputs):
    """Lifecycle: connect() is a no-op (the backend owns the keyboard), disconnect() releases every key."""

    def __init__(self, bindings=None, config: TeleopConfig | None = None) -> None:
        super().__init__(DEFAULT_KEYS if bindings is None else bindings, config, name="keyboard")

    def press(self, key: str, t: float | None = None) -> None:
        super().press(key.lower(), t)

    def release(self, key: str, t: float | None = None) -> None:
        super().release(key.lower(), t)
