"""Observation assembly from the latest sensor samples, with latency compensation and staleness.

Each sensor sample arrives with its receive time on the host monotonic clock; subtracting the
sensor's calibrated latency gives the time the sample describes. A policy observation is taken at
`t_obs`, the newest time every sensor has covered, with `n_obs_steps` history frames spaced at the
policy period, as the training windows are: each frame is the sensor's value at exactly that time,
aligned like the store aligns at read time (robot_rl.data.align.sample_at with the sensor's interp:
`hold` for frames, `linear`/`slerp` for continuous signals). If any sensor's sample is older than its
`max_staleness_s` the assembler raises StaleDataError: the runner then holds instead of acting on old
data.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from robot_rl.core.errors import StaleDataError
from robot_rl.data.align import hold_indices, sample_at


@dataclass(frozen=True)
class SensorSpec:
    """key: observation key; latency_s: receive time - capture time (from calibration);
    max_staleness_s: the oldest sample (relative to now) the policy may act on; interp: how history
    frames between samples are read (hold | linear | slerp, as the stream's StreamSpec.interp)."""

    key: str
    latency_s: float = 0.0
    max_staleness_s: float = 0.1
    history: int = 64
    interp: str = "hold"

    def __post_init__(self) -> None:
        if self.interp not in ("hold", "linear", "slerp"):
            raise ValueError(f"sensor {self.key}: interp {self.interp!r}, expected hold, linear or slerp")


class ObservationAssembler:
    def __init__(self, sensors: list[SensorSpec], n_obs_steps: int, rate_hz: float) -> None:
        self.sensors = {s.key: s for s in sensors}
        self.n_obs_steps = n_obs_steps
        self.period = 1.0 / rate_hz
        self._buf = {s.key: collections.deque(maxlen=s.history) for s in sensors}

    def push(self, key: str, value, t_receive: float) -> None:
        """Store one sample received at `t_receive` (host monotonic seconds)."""
        spec = self.sensors.get(key)
        if spec is None:
            raise KeyError(f"observation key {key!r} is not configured; keys are {sorted(self.sensors)}")
        t = float(t_receive) - spec.latency_s
        buf = self._buf[key]
        if buf and t <= buf[-1][0]:
            return  # duplicate or out-of-order sample: the newer one is already there
        buf.append((t, np.asarray(value)))

    def latest_time(self, key: str) -> float | None:
        buf = self._buf[key]
        return buf[-1][0] if buf else None

    def assemble(self, t_now: float) -> dict:
        """Observation dict {key: (n_obs_steps, ...) array, "t": t_obs}; raises StaleDataError."""
        latest = {}
        for key, spec in self.sensors.items():
            t_last = self.latest_time(key)
            if t_last is None:
                raise StaleDataError(f"observation {key}: no sample received yet")
            age = t_now - t_last
            if age > spec.max_staleness_s:
                raise StaleDataError(
                    f"observation {key}: newest sample is {age * 1e3:.1f} ms old "
                    f"(max {spec.max_staleness_s * 1e3:.1f} ms)"
                )
            latest[key] = t_last
        t_obs = min(latest.values())
        query = t_obs - self.period * np.arange(self.n_obs_steps - 1, -1, -1)
        obs = {"t": t_obs}
        for key, buf in self._buf.items():
            times = np.fromiter((t for t, _ in buf), dtype=np.float64, count=len(buf))
            # history older than the buffer: repeat the oldest sample (1 ns: float rounding)
            q = np.clip(query + 1e-9, times[0], None)
            if self.sensors[key].interp == "hold":
                obs[key] = np.stack([buf[i][1] for i in hold_indices(times, q, name=key)])
            else:
                values = np.stack([v for _, v in buf])
                obs[key] = sample_at(values, times, q, self.sensors[key].interp, name=key)
        return obs
