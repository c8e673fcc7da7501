"""OpenCV camera source (UVC webcams through V4L2, video files, stream URLs) with the Camera interface.

    cam = OpenCVCamera(0, width=640, height=480, fps=30)       # /dev/video0
    cam = OpenCVCamera("/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920-video-index0")
    cam = OpenCVCamera("episode.avi")                           # a file: every frame, in order, then EndOfStreamError

Timestamps: `device_t` is the capture's own timestamp (CAP_PROP_POS_MSEC: the V4L2 buffer timestamp for a
UVC camera, the presentation time for a file); `t` maps it onto the host monotonic clock with the same
online estimator as the RealSense source. UVC devices expose no frame counter through OpenCV, so drops are
counted from gaps in `device_t` larger than 1.5 nominal frame periods.
"""

from __future__ import annotations

import os
import threading

from robot_rl.core import clock
from robot_rl.hardware.camera import Camera, CameraFrame
from robot_rl.hardware.clock_sync import DeviceClockMapper
from robot_rl.hardware.device_errors import CameraError


def frames_elapsed(dt_s: float, fps: float) -> int:
    """How many frame periods a device-timestamp step spans (1 = consecutive frames, 3 = two lost)."""
    if fps <= 0 or dt_s <= 0:
        return 1
    return max(1, round(dt_s * fps))


class OpenCVCamera(Camera):
    """A cv2.VideoCapture source. `source`: device index, device path, file path or URL.
    color frames are RGB uint8 (converted from OpenCV's BGR); there is no depth."""

    def __init__(self, source: int | str, width: int | None = None, height: int | None = None,
                 fps: float | None = None, fourcc: str | None = None) -> None:
        self.is_file = isinstance(source, str) and os.path.isfile(source)
        super().__init__(buffer_frames=4 if self.is_file else 1, lossless=self.is_file)
        self.source, self.width, self.height, self.fps, self.fourcc = source, width, height, fps, fourcc
        self.name = f"OpenCV camera {source}"
        self.clock = DeviceClockMapper()
        self._cv2 = None
        self._cap = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()

    def _start(self) -> None:
        import cv2

        self._cv2 = cv2
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            raise CameraError(f"{self.name}: cannot open (no such device/file, busy, or no permission on /dev/video*)")
        if self.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, self.width), (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
                            (cv2.CAP_PROP_FPS, self.fps)):
            if value is not None and not self.is_file:
                cap.set(prop, value)
        self.nominal_fps = float(cap.get(cv2.CAP_PROP_FPS) or self.fps or 0.0)
        self._cap = cap
        self._running.set()
        self._thread = threading.Thread(target=self._capture, name=self.name, daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _capture(self) -> None:
        cv2, cap = self._cv2, self._cap
        count, last_device_t = 0, None
        while self._running.is_set():
            ok = cap.grab()
            receive_t = clock.now()
            if not ok:
                if self.is_file:
                    self._end_of_stream()
                else:
                    self._buffer.fail(CameraError(f"{self.name}: capture failed (device unplugged?)"))
                return
            ok, bgr = cap.retrieve()
            if not ok:
                continue
            device_t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1e3
            step = 1 if last_device_t is None else frames_elapsed(device_t - last_device_t, self.nominal_fps)
            count += step
            last_device_t = device_t
            gap = self.drops.update(count)
            # A file's clock is its presentation time: map it only for live devices.
            t = receive_t if self.is_file else self.clock.update(device_t, receive_t)
            self._publish(CameraFrame(
                color=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), depth=None, t=t, receive_t=receive_t,
                device_t=device_t, frame_number=count, dropped_before=gap, info={"source": str(self.source)},
            ))
