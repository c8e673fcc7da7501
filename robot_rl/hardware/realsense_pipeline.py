"""The USB (or recorded-file) side of a RealSense: `rs.pipeline` plus a thread that waits on it.

A source is what `RealSenseCamera` streams from: `start(on_frameset, on_end)`, `stop()`,
`options_device()` (the rs.device whose sensors carry the options) and `depth_scale` (metres per z16 unit).
`SyntheticRealSense` (realsense_synthetic.py) is the other implementation.
"""

from __future__ import annotations

import threading

from robot_rl.hardware.device_errors import CameraError, require


class PipelineSource:
    """A USB camera by serial number, or a recorded file (`.bag`/`.db3`), through `rs.pipeline`."""

    def __init__(self, serial: str | None, width: int, height: int, fps: int, color: bool, depth: bool,
                 playback_file: str | None = None, realtime: bool = True) -> None:
        self.rs = require("pyrealsense2")
        self.serial, self.width, self.height, self.fps = serial, width, height, fps
        self.color, self.depth, self.playback_file, self.realtime = color, depth, playback_file, realtime
        self._pipeline = None
        self._profile = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()

    def _config(self):
        rs = self.rs
        cfg = rs.config()
        if self.playback_file:
            cfg.enable_device_from_file(self.playback_file, repeat_playback=False)
        elif self.serial:
            cfg.enable_device(self.serial)
        if self.playback_file:  # a file plays what it recorded
            return cfg
        if self.color:
            cfg.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        if self.depth:
            cfg.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, self.fps)
        return cfg

    def start(self, on_frameset, on_end=None) -> None:
        rs = self.rs
        what = self.playback_file or f"serial {self.serial}"
        if not self.playback_file and self.serial:
            found = [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]
            if self.serial not in found:
                raise CameraError(f"RealSense {self.serial}: device not found (connected: {found or 'none'})")
        self._pipeline = rs.pipeline()
        try:
            self._profile = self._pipeline.start(self._config())
        except RuntimeError as e:
            self._pipeline = None
            raise CameraError(
                f"RealSense {what}: cannot start {self.width}x{self.height}@{self.fps} color={self.color} "
                f"depth={self.depth}: {e}"
            ) from e
        if self.playback_file:
            self._profile.get_device().as_playback().set_real_time(self.realtime)
        # Our own thread waits on the pipeline: it wakes as a frameset arrives (receive time stamped at once),
        # and, unlike a pipeline callback, lets non-real-time playback be paced by the reader.
        self._running.set()
        self._thread = threading.Thread(target=self._poll, args=(self._pipeline, on_frameset, on_end), daemon=True,
                                        name=f"RealSense {what}")
        self._thread.start()

    def _poll(self, pipeline, on_frameset, on_end) -> None:
        rs = self.rs
        playback = self._profile.get_device().as_playback() if self.playback_file else None
        while self._running.is_set():
            try:
                ok, frames = pipeline.try_wait_for_frames(100)
            except RuntimeError:  # pipeline stopped or device gone: the camera's watchdog restarts it
                return
            if ok:
                on_frameset(frames)
            elif playback is not None and playback.current_status() == rs.playback_status.stopped:
                if on_end is not None:
                    on_end()
                return

    def stop(self) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._pipeline is not None:
            try:
                self._pipeline.stop()
            except RuntimeError:  # device already gone
                pass
            self._pipeline = None

    def options_device(self):
        return self._profile.get_device() if self._profile is not None else None

    @property
    def depth_scale(self) -> float:
        dev = self.options_device()
        if dev is None:
            return 0.001
        for sensor in dev.query_sensors():
            if sensor.supports(self.rs.option.depth_units):
                return float(sensor.get_option(self.rs.option.depth_units))
        return 0.001
