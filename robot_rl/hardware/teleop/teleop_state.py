"""The device-independent teleop logic: deadband, deadman, speed limits, toggles and session events."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.core import clock
from robot_rl.hardware.teleop.events import Action, EventKind, TeleopCommand, TeleopEvent

SESSION_EVENTS = {
    Action.START: EventKind.START, Action.STOP_AND_SAVE: EventKind.STOP_AND_SAVE, Action.DISCARD: EventKind.DISCARD,
    Action.MARK_SUCCESS: EventKind.MARK_SUCCESS, Action.MARK_FAILURE: EventKind.MARK_FAILURE,
}


@dataclass(frozen=True)
class TeleopConfig:
    """max_linear_mps / max_angular_radps: speed at full deflection; deadband: fraction of full scale
    ignored around zero; max_step_s: longest step integrated into one delta (a stalled reader does not turn
    into a jump); frame: "base" or "ee" (see TeleopCommand)."""

    max_linear_mps: float = 0.15
    max_angular_radps: float = 0.6
    deadband: float = 0.05
    require_deadman: bool = True
    max_step_s: float = 0.1
    frame: str = "base"

    def __post_init__(self) -> None:
        if self.frame not in ("base", "ee"):
            raise ValueError(f"TeleopConfig.frame must be 'base' or 'ee', got {self.frame!r}")
        if not 0 <= self.deadband < 1:
            raise ValueError(f"TeleopConfig.deadband must be in [0, 1), got {self.deadband}")
        if self.max_linear_mps <= 0 or self.max_angular_radps <= 0:
            raise ValueError(
                f"TeleopConfig speeds must be > 0, got {self.max_linear_mps} m/s, {self.max_angular_radps} rad/s"
            )


def apply_deadband(axes: np.ndarray, deadband: float) -> np.ndarray:
    """Zero inside the deadband, rescaled so the output still spans [-1, 1] continuously."""
    a = np.clip(axes, -1.0, 1.0)
    mag = np.maximum(np.abs(a) - deadband, 0.0) / (1.0 - deadband)
    return np.sign(a) * mag


class TeleopState:
    """Turns normalized axes (6,) in [-1, 1] plus held/pressed actions into TeleopCommands."""

    def __init__(self, config: TeleopConfig | None = None) -> None:
        self.config = config or TeleopConfig()
        self.gripper_closed = False
        self.intervention = False
        self._last_t: float | None = None
        c = self.config
        self._scale = np.array([c.max_linear_mps] * 3 + [c.max_angular_radps] * 3)

    def step(self, axes, held: set[Action], pressed, t: float | None = None) -> TeleopCommand:
        t = clock.now() if t is None else t
        dt = 0.0 if self._last_t is None else min(max(t - self._last_t, 0.0), self.config.max_step_s)
        self._last_t = t
        enabled = Action.DEADMAN in held or not self.config.require_deadman
        axes = np.asarray(axes, dtype=np.float64)
        if axes.shape != (6,) or not np.all(np.isfinite(axes)):
            raise ValueError(f"teleop axes must be 6 finite values, got {axes!r}")
        velocity = apply_deadband(axes, self.config.deadband) * self._scale if enabled else np.zeros(6)
        events = []
        for action, at in pressed:
            if action == Action.GRIPPER_TOGGLE:
                self.gripper_closed = not self.gripper_closed
                kind = EventKind.GRIPPER_CLOSE if self.gripper_closed else EventKind.GRIPPER_OPEN
                events.append(TeleopEvent(kind, at))
            elif action == Action.INTERVENTION_TOGGLE:
                self.intervention = not self.intervention
                kind = EventKind.INTERVENTION_START if self.intervention else EventKind.INTERVENTION_END
                events.append(TeleopEvent(kind, at))
            elif action in SESSION_EVENTS:
                events.append(TeleopEvent(SESSION_EVENTS[action], at))
        return TeleopCommand(
            t=t, delta=velocity * dt, velocity=velocity, frame=self.config.frame, enabled=enabled,
            gripper_closed=self.gripper_closed, intervention=self.intervention, events=tuple(events),
        )
