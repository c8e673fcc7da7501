"""A teleop device as the corrector of policy execution (HIL interventions, ChunkEnv's `corrector`).

Each env step reads the device once. While its intervention toggle is on, the device's action replaces
the policy's and the step counts as taken over (ChunkEnv flags it; recorders store `intervention`=1): the
deadman still gates motion, so a human who took over but lets go of the deadman holds the arm still.
Taking over keeps the policy's gripper state (a grasped object is not dropped at the hand-over) until the
operator presses the gripper toggle. Every episode starts with the policy in control.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from robot_rl.core.clock import now
from robot_rl.hardware.teleop.actions import ActionScale
from robot_rl.hardware.teleop.events import EventKind, TeleopCommand

GRIPPER_TOGGLES = (EventKind.GRIPPER_CLOSE, EventKind.GRIPPER_OPEN)


class DeviceCorrector:
    """`corrector(obs, action) -> action | None` for ChunkEnv from a connected device with `read(t) -> TeleopCommand`.

    scale: the env's delta-action scale (`ActionScale.of_env(env)`, or `DeviceCorrector.for_env`).
    Counters: `interventions` (take-overs), `steps_taken_over`; `last` is the latest TeleopCommand.
    """

    def __init__(self, device, scale: ActionScale, clock: Callable[[], float] = now) -> None:
        self.device, self.scale, self.clock = device, scale, clock
        self.interventions = 0
        self.steps_taken_over = 0
        self.last: TeleopCommand | None = None
        self._active = False
        self._gripper_closed = False

    @classmethod
    def for_env(cls, device, env, clock: Callable[[], float] = now) -> "DeviceCorrector":
        return cls(device, ActionScale.of_env(env), clock)

    def reset(self) -> None:
        """Episode start: input made between episodes is dropped and control goes back to the policy."""
        self.device.read(self.clock())
        state = getattr(self.device, "state", None)   # BoundInputs devices: their TeleopState
        if state is not None:
            state.intervention = False
        self._active = False

    def __call__(self, obs: dict, action: np.ndarray) -> np.ndarray | None:
        cmd = self.device.read(self.clock())
        self.last = cmd
        if not cmd.intervention:
            self._active = False
            return None
        if not self._active:   # take-over: start from the policy's gripper
            self._active = True
            self.interventions += 1
            self._gripper_closed = bool(np.asarray(action)[6] > 0)
        toggles = sum(e.kind in GRIPPER_TOGGLES for e in cmd.events)
        self._gripper_closed ^= bool(toggles % 2)
        self.steps_taken_over += 1
        return self.scale.action(cmd, self._gripper_closed)
