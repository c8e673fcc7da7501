"""Map a device clock (camera hardware timestamps) onto the host monotonic clock, online.

Every frame gives a pair (device_t, receive_t). The receive time is the exposure time on the host clock
plus a transport delay that is never negative and is often close to its minimum. So the lower envelope of
`receive_t - device_t` against `device_t` is a line: offset + drift * device_t. We fit that line over a
sliding window: the least-delayed sample of each of `bins` slices of the window fixes the slope (drift), and
the line is then lowered until no sample lies below it.

The mapped time is therefore "exposure on the host clock + the minimum transport delay"; that constant
part of the latency is not observable from timestamps alone and belongs to the per-device latency
calibration (`robot-rl calibrate latency`). What this class reports as `mapping_error_s` is the RMS distance of
the per-slice minima from the fitted line: how well a straight line describes the envelope.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class ClockMapping:
    offset_s: float  # host = device_t + offset_s + drift * (device_t - origin_s)
    drift: float  # dimensionless (1e-6 = 1 ppm)
    origin_s: float
    samples: int
    mapping_error_s: float  # RMS of the envelope points around the line
    delay_p50_s: float  # receive time minus mapped time: median and 99th percentile in the window
    delay_p99_s: float

    def to_host(self, device_t: float) -> float:
        return device_t + self.offset_s + self.drift * (device_t - self.origin_s)


class DeviceClockMapper:
    """Online offset/drift estimate from (device_t, receive_t) pairs, seconds on both clocks.

    window: how many recent pairs the fit uses (10-20 s of frames tracks temperature-driven drift);
    min_samples: below this the drift is taken as 0 and only the offset is estimated.
    A device clock that jumps backwards (device reset, reconnect) restarts the estimate; a repeated device
    time (one capture delivered in two pieces) counts once, with its earliest arrival.
    """

    def __init__(self, window: int = 600, bins: int = 10, min_samples: int = 30, refit_every: int = 10) -> None:
        if window < 2 * bins:
            raise ValueError(f"DeviceClockMapper: window ({window}) must hold at least 2 samples per bin ({bins} bins)")
        self.window, self.bins, self.min_samples, self.refit_every = window, bins, min_samples, refit_every
        self._since_fit = 0
        self._device: deque[float] = deque(maxlen=window)
        self._host: deque[float] = deque(maxlen=window)
        self.mapping: ClockMapping | None = None
        self.resets = 0

    def reset(self) -> None:
        self._device.clear()
        self._host.clear()
        self.mapping = None
        self.resets += 1

    def update(self, device_t: float, receive_t: float) -> float:
        """Add a pair; returns device_t mapped to the host clock with the updated estimate."""
        if self._device and device_t <= self._device[-1]:
            if device_t == self._device[-1]:  # same capture again (e.g. a frameset split by the syncer)
                self._host[-1] = min(self._host[-1], receive_t)
                return self.mapping.to_host(device_t)
            self.reset()
        self._device.append(device_t)
        self._host.append(receive_t)
        self._since_fit += 1
        m = self.mapping
        if m is None or len(self._device) < self.min_samples or self._since_fit >= self.refit_every:
            self.mapping, self._since_fit = self._fit(), 0  # full fit: ~1 ms for 600 samples
        elif receive_t < m.to_host(device_t):  # between fits, only keep the line under every sample
            lowered = m.offset_s - (m.to_host(device_t) - receive_t)
            self.mapping = replace(m, offset_s=lowered, samples=len(self._device))
        return self.mapping.to_host(device_t)

    def to_host(self, device_t: float) -> float:
        if self.mapping is None:
            raise ValueError("DeviceClockMapper: no samples yet; call update() first")
        return self.mapping.to_host(device_t)

    def _fit(self) -> ClockMapping:
        d = np.fromiter(self._device, dtype=np.float64)
        h = np.fromiter(self._host, dtype=np.float64)
        origin = d[0]
        x = d - origin
        y = h - d  # offset series: true offset + drift * x + delay
        n = len(d)
        drift, error = 0.0, 0.0
        if n >= max(self.min_samples, 2 * self.bins):
            edges = np.linspace(0, n, self.bins + 1).astype(int)
            idx = np.array([a + int(np.argmin(y[a:b])) for a, b in zip(edges[:-1], edges[1:])])
            xs, ys = x[idx], y[idx]
            if np.ptp(xs) > 0:
                drift, intercept = np.polyfit(xs, ys, 1)
                error = float(np.sqrt(np.mean((ys - (intercept + drift * xs)) ** 2)))
        offset = float(np.min(y - drift * x))
        delay = y - (offset + drift * x)
        p50, p99 = np.percentile(delay, [50, 99])
        return ClockMapping(offset, float(drift), float(origin), n, error, float(p50), float(p99))
