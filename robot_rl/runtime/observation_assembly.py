"""Observation assembly from the latest sensor samples, with latency compensation and staleness.

Each sensor sample arrives with its receive time on the host monotonic clock; subtracting the
sensor's calibrated latency gives the time the sample describes. A policy observation is taken at
`t_obs`, the newest time every sensor has covered, with `n_obs_steps` history frames spaced at the
policy period, as the training windows are: each frame is the sensor's value at exactly that time,
aligned like the store aligns at read time (robot_rl.data.align.sample_at with the sensor's interp:
`hold` for frames, `linear`/`slerp` for continuous signals). If any sensor's sample is older than its
`max_staleness_s` the assembler raises StaleDataError: the runner then holds instead of acting on old
data.

Only continuous streams (`linear`/`slerp`) bound `t_obs`: they cannot be read past their newest sample.
A `hold` stream (camera frames, a goal) keeps its value until the next sample, so a 30 Hz camera does not
drag the observation of a 200 Hz pose back by up to a frame period; its own `max_staleness_s` still
applies. Image frames are resized to the shape the policy was trained on (`SensorSpec.shape`, e.g. a
640x480 camera for a 128x128 policy) when they are read, with cv2's INTER_AREA: the history buffer holds
the camera's frames as received, and only the frames an observation uses are resized.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from robot_rl.core.errors import ConfigError, StaleDataError
from robot_rl.data.align import hold_indices, sample_at


@dataclass(frozen=True)
class SensorSpec:
    """key: observation key; latency_s: receive time - capture time (from calibration);
    max_staleness_s: the oldest sample (relative to now) the policy may act on; interp: how history
    frames between samples are read (hold | linear | slerp, as the stream's StreamSpec.interp);
    shape: an image stream's frame shape (H, W) or (H, W, C) the policy expects: frames of another
    size are resized to it (None: used as received)."""

    key: str
    latency_s: float = 0.0
    max_staleness_s: float = 0.1
    history: int = 64
    interp: str = "hold"
    shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.interp not in ("hold", "linear", "slerp"):
            raise ValueError(f"sensor {self.key}: interp {self.interp!r}, expected hold, linear or slerp")
        if self.shape is not None:
            shape = tuple(int(n) for n in self.shape)
            if len(shape) not in (2, 3) or min(shape) <= 0:
                raise ConfigError(f"sensor {self.key}: image shape {list(self.shape)}, expected [H, W] or [H, W, C]")
            object.__setattr__(self, "shape", shape)


def fit_image(frame: np.ndarray, shape: tuple[int, ...], key: str = "image") -> np.ndarray:
    """`frame` (H, W[, C]) resized to `shape` (H', W'[, C]) with cv2.INTER_AREA (pixel-area averaging:
    no aliasing when shrinking), unchanged when it already has that size. The channels must agree."""
    frame = np.asarray(frame)
    if frame.shape == shape:
        return frame
    if frame.ndim != len(shape) or frame.shape[2:] != shape[2:]:
        raise ValueError(f"observation {key}: a frame of shape {frame.shape} cannot be resized to {shape} "
                         "(the channels differ)")
    import cv2

    return cv2.resize(frame, (shape[1], shape[0]), interpolation=cv2.INTER_AREA).reshape(shape)


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
        latest, continuous = {}, {}
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
            if spec.interp != "hold":
                continuous[key] = t_last
        t_obs = min((continuous or latest).values())
        query = t_obs - self.period * np.arange(self.n_obs_steps - 1, -1, -1)
        obs = {"t": t_obs}
        for key, buf in self._buf.items():
            times = np.fromiter((t for t, _ in buf), dtype=np.float64, count=len(buf))
            # history older than the buffer: repeat the oldest sample (1 ns: float rounding)
            q = np.clip(query + 1e-9, times[0], None)
            spec = self.sensors[key]
            if spec.interp == "hold":
                frames = [buf[i][1] for i in hold_indices(times, q, name=key)]
                if spec.shape is not None:
                    frames = [fit_image(f, spec.shape, key) for f in frames]
                obs[key] = np.stack(frames)
            else:
                values = np.stack([v for _, v in buf])
                obs[key] = sample_at(values, times, q, self.sensors[key].interp, name=key)
        return obs
