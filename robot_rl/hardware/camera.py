"""The camera interface shared by every source (RealSense, OpenCV/UVC, third-party plug-ins).

Lifecycle (LeRobot style): `connect()`, then `read()` as often as needed, then `disconnect()`.
Each frame carries two clocks: `t` (seconds on the host monotonic clock, `robot_rl.core.clock.now`,
estimated time of exposure when the source can map its device clock, else receive time) and
`device_t` (seconds on the camera's own clock, as reported by the device), plus the device frame number
from which dropped frames are counted.
"""

from __future__ import annotations

import abc
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from robot_rl.hardware.device_errors import CameraTimeoutError, DeviceNotConnectedError, EndOfStreamError


@dataclass(frozen=True)
class CameraFrame:
    """One capture. color: (H, W, 3) uint8 RGB; depth: (H, W) float32 metres (0 = no data) or None.

    t: host monotonic seconds (exposure time estimate); receive_t: host monotonic seconds when the frame
    reached this process; device_t: seconds on the device clock; frame_number: device counter.
    """

    color: np.ndarray | None
    depth: np.ndarray | None
    t: float
    receive_t: float
    device_t: float
    frame_number: int
    dropped_before: int = 0  # frames lost between the previous frame and this one
    info: dict = field(default_factory=dict)


class FrameDropCounter:
    """Counts frames missing from a device's increasing frame counter.

    A counter that goes backwards (device reset, reconnect, file loop) restarts counting without
    charging drops.
    """

    def __init__(self) -> None:
        self.last: int | None = None
        self.dropped = 0
        self.received = 0
        self.restarts = 0

    def update(self, frame_number: int) -> int:
        """Register a frame; returns how many frames were lost just before it."""
        self.received += 1
        gap = 0
        if self.last is not None:
            if frame_number > self.last:
                gap = frame_number - self.last - 1
            else:
                self.restarts += 1
        self.last = frame_number
        self.dropped += gap
        return gap

    @property
    def drop_rate(self) -> float:
        total = self.received + self.dropped
        return self.dropped / total if total else 0.0


class FrameBuffer:
    """Thread-safe hand-over from the capture thread to `read()`.

    Live cameras use capacity 1: `read()` gets the newest frame it has not returned yet and unread older frames
    are replaced (counted in `overwritten`). File playback uses `lossless=True`: the capture thread waits for
    room, so every recorded frame is read in order.
    """

    def __init__(self, capacity: int = 1, lossless: bool = False) -> None:
        if capacity < 1:
            raise ValueError(f"FrameBuffer capacity must be >= 1, got {capacity}")
        self._cond = threading.Condition()
        self._frames: deque[CameraFrame] = deque()
        self.capacity, self.lossless = capacity, lossless
        self.overwritten = 0
        self._error: BaseException | None = None
        self._closed = False

    def put(self, frame: CameraFrame) -> None:
        with self._cond:
            if self.lossless:
                self._cond.wait_for(lambda: len(self._frames) < self.capacity or self._closed)
            if self._closed:
                return
            if len(self._frames) >= self.capacity:
                self._frames.popleft()
                self.overwritten += 1
            self._frames.append(frame)
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """Wake readers with an error raised by the capture thread."""
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def close(self) -> None:
        """Release a capture thread blocked in a lossless put()."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout_s: float, name: str) -> CameraFrame:
        with self._cond:
            if not self._cond.wait_for(lambda: self._frames or self._error is not None, timeout_s):
                raise CameraTimeoutError(f"{name}: no new frame within {timeout_s} s")
            if not self._frames:  # an error is raised after the frames that came before it
                error, self._error = self._error, None
                raise error
            frame = self._frames.popleft()
            self._cond.notify_all()
            return frame


class Camera(abc.ABC):
    """Base class: subclasses implement `_start()` / `_stop()` and call `self._publish(frame)` per capture."""

    name: str = "camera"

    def __init__(self, buffer_frames: int = 1, lossless: bool = False) -> None:
        self._buffer_args = (buffer_frames, lossless)
        self._buffer = FrameBuffer(*self._buffer_args)
        self._connected = False
        self.drops = FrameDropCounter()

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        if self._connected:
            return
        self._buffer = FrameBuffer(*self._buffer_args)
        self._start()
        self._connected = True

    def read(self, timeout_s: float = 1.0) -> CameraFrame:
        """The next frame newer than the one returned last (waits up to `timeout_s`)."""
        if not self._connected:
            raise DeviceNotConnectedError(f"{self.name}: camera is not connected; call connect() first")
        return self._buffer.get(timeout_s, self.name)

    def disconnect(self) -> None:
        if not self._connected:
            return
        self._connected = False
        self._buffer.close()
        self._stop()

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    @property
    def stats(self) -> dict:
        return {"received": self.drops.received, "dropped": self.drops.dropped, "restarts": self.drops.restarts}

    @abc.abstractmethod
    def _start(self) -> None: ...

    @abc.abstractmethod
    def _stop(self) -> None: ...

    def _publish(self, frame: CameraFrame) -> None:
        self._buffer.put(frame)

    def _end_of_stream(self) -> None:
        """Called by a file source at its end: read() raises EndOfStreamError once the frames are consumed."""
        self._buffer.fail(EndOfStreamError(f"{self.name}: end of recording"))
