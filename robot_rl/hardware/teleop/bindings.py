"""Named device inputs bound to relative-frame axes or actions, for any device.

A device reports its inputs by name ("w", "left_y", "button_0", "hid_x") with a value: keys and buttons
0/1, analog inputs in device units. An `AxisBinding` adds value * scale to one of the six relative-frame
axes (x, y, z, rx, ry, rz); an `Action` binding fires on press (or, for DEADMAN, counts while held).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from robot_rl.core import clock
from robot_rl.hardware.teleop.events import Action, TeleopCommand
from robot_rl.hardware.teleop.teleop_state import TeleopConfig, TeleopState

AXES = ("x", "y", "z", "rx", "ry", "rz")


@dataclass(frozen=True)
class AxisBinding:
    axis: str  # one of AXES
    scale: float = 1.0  # device value * scale = normalized deflection (1 = full speed)

    def __post_init__(self) -> None:
        if self.axis not in AXES:
            raise ValueError(f"AxisBinding.axis must be one of {AXES}, got {self.axis!r}")


class BoundInputs:
    """Thread-safe input state: event callbacks write from the device thread, `read()` from the control loop."""

    def __init__(self, bindings: dict[str, AxisBinding | Action], config: TeleopConfig | None = None,
                 name: str = "teleop") -> None:
        for key, b in bindings.items():
            if not isinstance(b, (AxisBinding, Action)):
                raise ValueError(f"{name}: binding for input {key!r} must be an AxisBinding or an Action, got {b!r}")
        self.name = name
        self.bindings = dict(bindings)
        self.state = TeleopState(config)
        self._values: dict[str, float] = {}
        self._pressed: list[tuple[Action, float]] = []
        self._lock = threading.Lock()

    def set_value(self, name: str, value: float, t: float | None = None) -> None:
        """Set an input's current value; a bound action fires when a value rises from 0 to non-zero."""
        binding = self.bindings.get(name)
        if binding is None:
            return  # unbound inputs are ignored
        t = clock.now() if t is None else t
        with self._lock:
            before = self._values.get(name, 0.0)
            self._values[name] = float(value)
            if isinstance(binding, Action) and not before and value and binding != Action.DEADMAN:
                self._pressed.append((binding, t))

    def press(self, name: str, t: float | None = None) -> None:
        self.set_value(name, 1.0, t)

    def release(self, name: str, t: float | None = None) -> None:
        self.set_value(name, 0.0, t)

    def connect(self) -> None:
        """Nothing to open: the backend that owns the device (pynput, pygame, evdev) feeds the events."""

    def disconnect(self) -> None:
        self.release_all()

    def release_all(self) -> None:
        """Zero every input (focus lost, device unplugged, stale reports): nothing keeps moving."""
        with self._lock:
            self._values.clear()

    def axes(self) -> np.ndarray:
        with self._lock:
            return self._axes_locked()

    def _axes_locked(self) -> np.ndarray:
        axes = np.zeros(6)
        for name, value in self._values.items():
            b = self.bindings[name]
            if isinstance(b, AxisBinding):
                axes[AXES.index(b.axis)] += value * b.scale
        return axes

    def read(self, t: float | None = None) -> TeleopCommand:
        """The command for the time since the previous read."""
        with self._lock:
            axes = self._axes_locked()
            held = {b for n, b in self.bindings.items() if isinstance(b, Action) and self._values.get(n)}
            pressed, self._pressed = self._pressed, []
        return self.state.step(axes, held, pressed, t)
