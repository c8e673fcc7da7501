"""Gamepad teleop read straight from a Linux input device (/dev/input/event*), standard library only.

Xbox-style pads (xpad, hid-generic) report buttons as EV_KEY (BTN_A 304 ... BTN_THUMBR 318) and sticks,
triggers and the d-pad as EV_ABS. Axes are normalised with the ranges the kernel reports for the device
(EVIOCGABS) or given as `ranges`: sticks to [-1, 1] (up is -1, as GamepadTeleop expects), triggers to
[0, 1]; the d-pad hat becomes the dpad_* buttons. Button letters follow the kernel's BTN_X / BTN_Y codes;
remap a pad whose driver swaps them with `bindings=`.

Find the device: `ls -l /dev/input/by-id/*-event-joystick` (permissions: the `input` group, docs/hardware.md).
"""

from __future__ import annotations

import struct

from robot_rl.hardware.device_errors import HardwareError
from robot_rl.hardware.teleop.evdev import EV_KEY, KEY_REPEAT, EvdevInput
from robot_rl.hardware.teleop.gamepad import GamepadTeleop
from robot_rl.hardware.teleop.teleop_state import TeleopConfig

EV_ABS = 0x03
# linux/input-event-codes.h -> robot_rl.hardware.teleop.gamepad input names
BUTTONS = {304: "a", 305: "b", 307: "x", 308: "y", 310: "left_bumper", 311: "right_bumper", 314: "back",
           315: "start", 316: "guide", 317: "left_stick", 318: "right_stick"}
STICKS = {0: "left_x", 1: "left_y", 3: "right_x", 4: "right_y"}
TRIGGERS = {2: "left_trigger", 5: "right_trigger"}
HATS = {16: ("dpad_left", "dpad_right"), 17: ("dpad_up", "dpad_down")}
AXES = STICKS | TRIGGERS
ABSINFO = struct.Struct("6i")   # struct input_absinfo: value, minimum, maximum, fuzz, flat, resolution


def eviocgabs(code: int) -> int:
    """_IOR('E', 0x40 + code, struct input_absinfo)."""
    return (2 << 30) | (ABSINFO.size << 16) | (ord("E") << 8) | (0x40 + code)


class EvdevGamepad(EvdevInput, GamepadTeleop):
    """GamepadTeleop fed by an evdev gamepad at `path`. ranges: {axis name or code: (min, max)} for axes
    whose range should not be asked from the device (pipes and recordings have none to ask)."""

    def __init__(self, path: str, grab: bool = False, ranges: dict | None = None, bindings=None,
                 config: TeleopConfig | None = None) -> None:
        GamepadTeleop.__init__(self, bindings, config)
        self._init_evdev(path, grab, "gamepad")
        codes = {name: code for code, name in AXES.items()}
        self.ranges: dict[int, tuple[int, int]] = {}
        for axis, span in (ranges or {}).items():
            code = codes.get(axis, axis)
            if code not in AXES or len(span) != 2:
                raise ValueError(f"{self.name}: ranges[{axis!r}]={span!r}; axes are {sorted(codes)}, each (min, max)")
            self.ranges[code] = (int(span[0]), int(span[1]))

    def connect(self) -> None:
        super().connect()
        import fcntl

        for code in AXES:
            if code in self.ranges:
                continue
            buf = bytearray(ABSINFO.size)
            try:
                fcntl.ioctl(self._fd, eviocgabs(code), buf)
            except OSError as e:
                self.disconnect()
                raise HardwareError(f"{self.name}: cannot read the range of axis {AXES[code]} ({e}); is it a "
                                    f"gamepad's event device? (ls /dev/input/by-id/*-event-joystick)") from e
            _, lo, hi, *_ = ABSINFO.unpack(buf)
            self.ranges[code] = (lo, hi)   # lo == hi: the pad has no such axis; its events are ignored

    def on_event(self, typ: int, code: int, value: int, t: float) -> None:
        if typ == EV_KEY:
            name = BUTTONS.get(code)
            if name is not None and value != KEY_REPEAT:
                self.set_value(name, 1.0 if value else 0.0, t)
        elif typ == EV_ABS:
            if code in HATS:
                minus, plus = HATS[code]
                self.set_value(minus, float(value < 0), t)
                self.set_value(plus, float(value > 0), t)
            elif code in AXES:
                lo, hi = self.ranges.get(code, (0, 0))
                if hi <= lo:
                    return
                u = min(max((value - lo) / (hi - lo), 0.0), 1.0)
                self.set_value(AXES[code], 2.0 * u - 1.0 if code in STICKS else u, t)
