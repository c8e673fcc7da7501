"""Clocks and fixed-rate loops.

All robot_rl timestamps are seconds on the host monotonic clock (`time.monotonic`, CLOCK_MONOTONIC),
which is shared by every process on one machine. Wall-clock time (`time.time`) is only used for
human-readable metadata such as an episode's start time.
"""

from __future__ import annotations

import time


def now() -> float:
    """Host monotonic time in seconds."""
    return time.monotonic()


class RateLoop:
    """Sleeps to keep a loop at `hz`, counting overruns instead of drifting.

    Call `wait()` once per iteration; it returns the scheduled start time of the next tick.
    """

    def __init__(self, hz: float, clock=now, sleep=time.sleep) -> None:
        if hz <= 0:
            raise ValueError(f"RateLoop: rate must be > 0 Hz, got {hz}")
        self.period = 1.0 / hz
        self._clock = clock
        self._sleep = sleep
        self._next = clock() + self.period
        self.overruns = 0
        self.ticks = 0

    def wait(self) -> float:
        self.ticks += 1
        remaining = self._next - self._clock()
        if remaining > 0:
            self._sleep(remaining)
        else:
            self.overruns += 1
            if remaining < -self.period:  # far behind: resynchronise instead of bursting
                self._next = self._clock()
        scheduled = self._next
        self._next += self.period
        return scheduled
