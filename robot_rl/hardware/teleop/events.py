"""Typed teleop outputs. Units: metres, radians, seconds on the host monotonic clock."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class Action(enum.Enum):
    """What a button or key means."""

    DEADMAN = "deadman"  # hold: motion is only commanded while held
    GRIPPER_TOGGLE = "gripper_toggle"
    INTERVENTION_TOGGLE = "intervention_toggle"  # human takes over from / hands back to the policy
    START = "start"  # start recording an episode
    STOP_AND_SAVE = "stop_and_save"
    DISCARD = "discard"
    MARK_SUCCESS = "mark_success"
    MARK_FAILURE = "mark_failure"


class EventKind(enum.Enum):
    START = "start"
    STOP_AND_SAVE = "stop_and_save"
    DISCARD = "discard"
    MARK_SUCCESS = "mark_success"
    MARK_FAILURE = "mark_failure"
    GRIPPER_CLOSE = "gripper_close"
    GRIPPER_OPEN = "gripper_open"
    INTERVENTION_START = "intervention_start"
    INTERVENTION_END = "intervention_end"


@dataclass(frozen=True)
class TeleopEvent:
    kind: EventKind
    t: float  # host monotonic seconds when the input arrived


@dataclass(frozen=True)
class TeleopCommand:
    """One teleop step.

    delta: (6,) [dx, dy, dz] metres and [drx, dry, drz] radians (rotation vector) to add to the current
    end-effector pose over this step, expressed in `frame` ("base": axes of the robot base frame, applied at
    the end effector; "ee": axes of the end-effector frame). velocity: the same per second.
    enabled: the deadman is held (delta is zero otherwise). gripper_closed / intervention: toggled states.
    """

    t: float
    delta: np.ndarray
    velocity: np.ndarray
    frame: str
    enabled: bool
    gripper_closed: bool
    intervention: bool
    events: tuple[TeleopEvent, ...] = ()
