"""Turning action chunks with absolute target times into one smooth stream of timed actions.

A new chunk overlaps the not-yet-executed tail of the previous one. Actions whose time has already
passed when inference returns are dropped (and counted), unless they are less than `late_s` late: a
delta action's target is reached one action period after its time, so the action at the observation
time can still start a few milliseconds late and arrive on time (deploy sets `late_s` to one period).
A new chunk that overlaps pending actions is moved onto their time grid (by under half a period), so
replanning keeps one action grid and a replaced action keeps its time. Over the overlap the chunks are blended so
chunk boundaries do not jerk: `crossfade` ramps linearly from the old to the new chunk over the first
min(overlap, `blend_steps`) overlapping actions (weights 1/(b+1) .. b/(b+1) on the new one); `ensemble`
averages every chunk's prediction for a time with weights exp(-k * age_in_chunks) (ACT-style temporal
ensembling); `replace` switches at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.core.types import ActionChunk

MODES = ("crossfade", "ensemble", "replace")


@dataclass
class ScheduledAction:
    t: float
    action: np.ndarray


class ActionScheduler:
    def __init__(self, mode: str = "crossfade", blend_steps: int = 3, ensemble_k: float = 0.5,
                 min_lead_s: float = 0.0, late_s: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"ActionScheduler mode {mode!r}: expected one of {MODES}")
        self.mode = mode
        self.blend_steps = max(1, int(blend_steps))
        self.ensemble_k = ensemble_k
        self.min_lead_s = min_lead_s
        self.late_s = float(late_s)
        self._times = np.zeros(0)
        self._actions = np.zeros((0, 0))
        self._weights = np.zeros(0)  # ensemble: accumulated weight per pending action
        self.dropped = 0

    def __len__(self) -> int:
        return int(self._times.size)

    def reset(self) -> None:
        self._times = np.zeros(0)
        self._actions = np.zeros((0, 0))
        self._weights = np.zeros(0)

    def add(self, chunk: ActionChunk, t_now: float) -> int:
        """Merge `chunk`; returns how many of its actions were dropped as already past."""
        keep = chunk.t >= t_now + self.min_lead_s - self.late_s
        dropped = int(np.count_nonzero(~keep))
        self.dropped += dropped
        t_new, a_new = chunk.t[keep], chunk.actions[keep].astype(np.float64)
        pending = self._times >= t_now - self.late_s
        t_old = self._times[pending]
        a_old = self._actions[pending] if t_old.size else np.zeros((0,) + a_new.shape[1:])
        w_old = self._weights[pending]
        if t_new.size == 0:
            self._times, self._actions, self._weights = t_old, a_old, w_old
            return dropped
        if t_old.size == 0:
            self._times, self._actions, self._weights = t_new, a_new, np.ones(t_new.size)
            return dropped
        # match each new action with the pending old action at (nearly) the same time
        period = np.median(np.diff(chunk.t)) if chunk.t.size > 1 else 1.0
        j = np.clip(np.searchsorted(t_old, t_new), 0, t_old.size - 1)
        j_prev = np.clip(j - 1, 0, t_old.size - 1)
        j = np.where(np.abs(t_old[j_prev] - t_new) < np.abs(t_old[j] - t_new), j_prev, j)
        overlap = np.abs(t_old[j] - t_new) < 0.5 * period
        if overlap.any():   # the new chunk moves onto the old action grid (by under half a period)
            k = int(np.argmax(overlap))
            t_new = t_new + (t_old[j[k]] - t_new[k])
        blended = a_new.copy()
        weights = np.ones(t_new.size)
        if self.mode == "crossfade":
            b = min(int(overlap.sum()), self.blend_steps)
            ramp = np.clip(np.cumsum(overlap) / (b + 1), 0.0, 1.0)
            alpha = np.where(overlap, ramp, 1.0)[:, None]
            blended = alpha * a_new + (1 - alpha) * np.where(overlap[:, None], a_old[j], a_new)
        elif self.mode == "ensemble":   # older predictions keep weight 1 (discounted), the new one gets exp(-k)
            w_new = np.exp(-self.ensemble_k)
            w_prev = np.where(overlap, w_old[j], 0.0)
            prev = np.where(overlap[:, None], a_old[j], 0.0)
            weights = w_prev + w_new
            blended = (w_prev[:, None] * prev + w_new * a_new) / weights[:, None]
        self._times, self._actions, self._weights = t_new, blended, weights
        return dropped

    def pending(self, t_now: float) -> list[ScheduledAction]:
        """Actions with time >= t_now - late_s, in time order."""
        keep = self._times >= t_now - self.late_s
        return [ScheduledAction(float(t), a) for t, a in zip(self._times[keep], self._actions[keep])]

    def pop_due(self, t_now: float) -> list[ScheduledAction]:
        """Remove and return the actions whose time is <= t_now."""
        due = self._times <= t_now
        out = [ScheduledAction(float(t), a) for t, a in zip(self._times[due], self._actions[due])]
        self._times, self._actions, self._weights = self._times[~due], self._actions[~due], self._weights[~due]
        return out
