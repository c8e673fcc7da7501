"""Keyboard teleop read straight from a Linux input device (/dev/input/event*), standard library only.

A terminal cannot report key releases, so a held deadman needs the kernel's input events: each
`struct input_event` (64-bit: timeval sec, usec as two longs, then u16 type, u16 code, s32 value)
with type EV_KEY carries a press (1), an auto-repeat (2) or a release (0). The reader decodes them,
maps Linux key codes to KeyboardTeleop's key names and feeds press/release, so the deadman, toggles
and session keys behave exactly as with any other backend. The device is read globally (no window
focus needed); `grab=True` keeps the keys from also reaching other programs.

Find the device: `ls -l /dev/input/by-id/*-event-kbd` (permissions: the `input` group, docs/hardware.md).
"""

from __future__ import annotations

import errno
import os
import struct

from robot_rl.core import clock
from robot_rl.hardware.device_errors import DeviceNotConnectedError, HardwareError
from robot_rl.hardware.teleop.events import TeleopCommand
from robot_rl.hardware.teleop.keyboard import KeyboardTeleop
from robot_rl.hardware.teleop.teleop_state import TeleopConfig

EVENT = struct.Struct("llHHi")        # struct input_event on 64-bit Linux
EV_KEY = 0x01
KEY_RELEASE, KEY_PRESS, KEY_REPEAT = 0, 1, 2
EVIOCGRAB = 0x40044590                # _IOW('E', 0x90, int)

# Linux input-event-codes.h -> the key names of robot_rl.hardware.teleop.keyboard
KEY_NAMES = {
    16: "q", 17: "w", 18: "e", 19: "r", 20: "t", 21: "y", 22: "u", 23: "i", 24: "o", 25: "p",
    30: "a", 31: "s", 32: "d", 33: "f", 34: "g", 35: "h", 36: "j", 37: "k", 38: "l",
    44: "z", 45: "x", 46: "c", 47: "v", 48: "b", 49: "n", 50: "m",
    28: "enter", 96: "enter", 57: "space", 1: "esc", 15: "tab", 14: "backspace",
    103: "up", 105: "left", 106: "right", 108: "down",
}


def decode_events(buf: bytes) -> tuple[list[tuple[float, int, int, int]], bytes]:
    """Whole input_event records of `buf` as (kernel time s, type, code, value), and the leftover bytes."""
    n = len(buf) // EVENT.size
    events = [(sec + usec * 1e-6, typ, code, value)
              for sec, usec, typ, code, value in EVENT.iter_unpack(buf[:n * EVENT.size])]
    return events, buf[n * EVENT.size:]


class EvdevInput:
    """Reading a /dev/input/event* device for a BoundInputs subclass: open (and grab), drain pending
    events into `feed()` on every `read()`, release everything on unplug or disconnect.

    Event times are host receive times (`clock.now()`): the kernel stamps events with CLOCK_REALTIME
    unless told otherwise, which is not the monotonic clock every other robot_rl stream uses.
    """

    def _init_evdev(self, path: str, grab: bool, kind: str) -> None:
        self.name = f"{kind} {path}"
        self.path, self.grab = path, grab
        self._fd: int | None = None
        self._pending = b""

    @property
    def is_connected(self) -> bool:
        return self._fd is not None

    def connect(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            raise HardwareError(f"{self.name}: cannot open ({e}); check the path (ls /dev/input/by-id/) and "
                                f"that this user is in the `input` group") from e
        if self.grab:
            import fcntl

            try:
                fcntl.ioctl(fd, EVIOCGRAB, 1)
            except OSError as e:
                os.close(fd)
                raise HardwareError(f"{self.name}: cannot grab the device ({e}); another program holds it") from e
        self._fd = fd

    def disconnect(self) -> None:
        self.release_all()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def feed(self, data: bytes, t: float | None = None) -> None:
        """Apply raw input_event bytes (from the device, a pipe or a recording)."""
        t = clock.now() if t is None else t
        events, self._pending = decode_events(self._pending + data)
        for _, typ, code, value in events:
            self.on_event(typ, code, value, t)

    def on_event(self, typ: int, code: int, value: int, t: float) -> None:
        raise NotImplementedError

    def read(self, t: float | None = None) -> TeleopCommand:
        if self._fd is None:
            raise DeviceNotConnectedError(f"{self.name} is not connected; call connect() first")
        while True:
            try:
                data = os.read(self._fd, EVENT.size * 64)
            except BlockingIOError:
                break
            except OSError as e:
                self.release_all()            # unplugged: nothing may stay pressed
                if e.errno == errno.ENODEV:
                    raise HardwareError(f"{self.name}: the device was unplugged") from e
                raise HardwareError(f"{self.name}: read failed ({e})") from e
            if not data:
                break
            self.feed(data)
        return super().read(t)


class EvdevKeyboard(EvdevInput, KeyboardTeleop):
    """KeyboardTeleop fed by an evdev keyboard at `path`. `read()` drains pending events first."""

    def __init__(self, path: str, grab: bool = False, bindings=None, config: TeleopConfig | None = None) -> None:
        KeyboardTeleop.__init__(self, bindings, config)
        self._init_evdev(path, grab, "keyboard")

    def on_event(self, typ: int, code: int, value: int, t: float) -> None:
        name = KEY_NAMES.get(code)
        if typ != EV_KEY or name is None or value == KEY_REPEAT:
            return
        if value == KEY_PRESS:
            self.press(name, t)
        elif value == KEY_RELEASE:
            self.release(name, t)
