"""Typed values exchanged between layers. Units: metres, radians, seconds (host monotonic clock)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class EETarget:
    """End-effector target pose in the robot base frame, to be reached at absolute time `t`.

    position: (3,) metres; quat: (4,) unit quaternion (w, x, y, z); gripper: 0 = open, 1 = closed.
    """

    t: float
    position: np.ndarray
    quat: np.ndarray
    gripper: float = 0.0

    def __post_init__(self) -> None:
        pos = np.asarray(self.position, dtype=np.float64)
        quat = np.asarray(self.quat, dtype=np.float64)
        if pos.shape != (3,):
            raise ValueError(f"EETarget.position must have shape (3,), got {pos.shape}")
        if quat.shape != (4,):
            raise ValueError(f"EETarget.quat must have shape (4,), got {quat.shape}")
        object.__setattr__(self, "position", pos)
        object.__setattr__(self, "quat", quat)

    def is_finite(self) -> bool:
        return bool(
            np.isfinite(self.t) and np.all(np.isfinite(self.position))
            and np.all(np.isfinite(self.quat)) and np.isfinite(self.gripper)
        )


@dataclass(frozen=True)
class ActionChunk:
    """A chunk of policy actions with absolute target times.

    actions: (T, action_dim) in the policy's action space (unnormalized);
    t: (T,) strictly increasing target times in seconds on the host monotonic clock, anchored at
    the observation time the chunk was computed from.
    """

    actions: np.ndarray
    t: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        actions = np.asarray(self.actions)
        t = np.asarray(self.t, dtype=np.float64)
        if actions.ndim != 2:
            raise ValueError(f"ActionChunk.actions must be (T, action_dim), got shape {actions.shape}")
        if t.shape != (actions.shape[0],):
            raise ValueError(f"ActionChunk.t must have shape ({actions.shape[0]},), got {t.shape}")
        if t.size > 1 and not np.all(np.diff(t) > 0):
            raise ValueError(f"ActionChunk.t must be strictly increasing, got {t.tolist()}")
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "t", t)

    def __len__(self) -> int:
        return int(self.actions.shape[0])
