"""A synthetic RealSense: `rs.software_device` with a depth and a color sensor, fed with numpy frames.

It plugs into `RealSenseCamera(source=SyntheticRealSense(...))` in place of the USB pipeline, so frames
travel through librealsense's own syncer and align blocks and the camera's real processing path. Used by
the tests, and by demos that need a RealSense-shaped stream without a camera.

    src = SyntheticRealSense(serial="000000000001")
    cam = RealSenseCamera(source=src, align_to_color=True); cam.connect()
    src.push(color_rgb, depth_m, frame_number=1, device_t=0.0)
    frame = cam.read()

Feed it like a camera: device_t starting near 0 when the stream starts and advancing by one frame period
per capture. librealsense's syncer (2.59) pairs software frames reliably only then: with device timestamps
far from 0 or off the frame grid it hands over color frames alone and drops their depth partners.
"""

from __future__ import annotations

import threading

import numpy as np

from robot_rl.hardware.device_errors import CameraError, require

# Writable options a D4xx exposes (option, min, max, step, default): the camera's fixed-exposure setup sets them.
COLOR_OPTIONS = (
    ("enable_auto_exposure", 0, 1, 1, 1), ("exposure", 1, 10000, 1, 156), ("gain", 0, 128, 1, 64),
    ("enable_auto_white_balance", 0, 1, 1, 1), ("white_balance", 2800, 6500, 10, 4600),
    ("global_time_enabled", 0, 1, 1, 1),
)
DEPTH_OPTIONS = (
    ("enable_auto_exposure", 0, 1, 1, 1), ("exposure", 1, 165000, 1, 8500), ("global_time_enabled", 0, 1, 1, 1),
)


def _option_range(rs, lo, hi, step, default):
    # Set by attribute: pyrealsense2 2.59's 4-argument constructor stores step and default swapped.
    r = rs.option_range()
    r.min, r.max, r.step, r.default = float(lo), float(hi), float(step), float(default)
    return r


def _intrinsics(rs, width: int, height: int, fx: float, fy: float):
    i = rs.intrinsics()
    i.width, i.height, i.ppx, i.ppy, i.fx, i.fy = width, height, width / 2, height / 2, fx, fy
    i.model, i.coeffs = rs.distortion.none, [0.0] * 5
    return i


class SyntheticRealSense:
    """Source of synchronized color (rgb8) + depth (z16) frames pushed from numpy arrays.

    depth_to_color_m: translation of the color camera seen from the depth camera (metres), as a D435's
    ~15 mm baseline. `unplug()` / `replug()` simulate a USB drop: while unplugged `start()` fails like a
    missing device and pushed frames go nowhere.
    """

    def __init__(
        self, serial: str = "000000000001", color_size=(64, 48), depth_size=(64, 48), fps: int = 30,
        color_fx: float = 60.0, depth_fx: float = 60.0, depth_units_m: float = 0.001,
        depth_to_color_m=(0.015, 0.0, 0.0),
    ) -> None:
        rs = self.rs = require("pyrealsense2")
        self.serial, self.fps, self.depth_units_m = serial, fps, depth_units_m
        self.color_size, self.depth_size = tuple(color_size), tuple(depth_size)
        dev = self.device = rs.software_device()
        dev.register_info(rs.camera_info.serial_number, serial)
        dev.register_info(rs.camera_info.name, "Intel RealSense D435 (synthetic)")
        self.depth_sensor = dev.add_sensor("Stereo Module")
        self.color_sensor = dev.add_sensor("RGB Camera")
        self.depth_profile = self._add_stream(
            self.depth_sensor, rs.stream.depth, rs.format.z16, 2, depth_size, depth_fx, 0
        )
        self.color_profile = self._add_stream(
            self.color_sensor, rs.stream.color, rs.format.rgb8, 3, color_size, color_fx, 1
        )
        self.depth_sensor.add_read_only_option(rs.option.depth_units, depth_units_m)
        for sensor, options in ((self.color_sensor, COLOR_OPTIONS), (self.depth_sensor, DEPTH_OPTIONS)):
            for name, lo, hi, step, default in options:
                sensor.add_option(getattr(rs.option, name), _option_range(rs, lo, hi, step, default), True)
        ex = rs.extrinsics()
        ex.rotation, ex.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], list(map(float, depth_to_color_m))
        self.depth_profile.register_extrinsics_to(self.color_profile, ex)
        self.plugged = True
        self.started = threading.Event()  # set while streaming; tests await it after a replug
        self.stopped = threading.Event()  # set once stop() ran; tests await the watchdog noticing a drop
        self.start_count = 0
        self._syncer = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()

    def _add_stream(self, sensor, stream, fmt, bpp, size, fx, uid):
        rs = self.rs
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid, vs.fmt, vs.bpp, vs.fps = stream, 0, uid, fmt, bpp, self.fps
        vs.width, vs.height = size
        vs.intrinsics = _intrinsics(rs, size[0], size[1], fx, fx)
        return sensor.add_video_stream(vs)

    # the source interface used by RealSenseCamera -----------------------------------------------------
    def start(self, on_frameset, on_end=None) -> None:
        if not self.plugged:
            raise CameraError(f"RealSense {self.serial}: device not found (unplugged)")
        rs = self.rs
        self._syncer = rs.syncer()
        self.depth_sensor.open(self.depth_profile)
        self.color_sensor.open(self.color_profile)
        self.depth_sensor.start(self._syncer)
        self.color_sensor.start(self._syncer)
        self._running.set()
        self._thread = threading.Thread(
            target=self._pump, args=(on_frameset,), name=f"rs-synthetic {self.serial}", daemon=True
        )
        self._thread.start()
        self.start_count += 1
        self.stopped.clear()
        self.started.set()

    def stop(self) -> None:
        self.started.clear()
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        for sensor in (self.depth_sensor, self.color_sensor):
            try:
                sensor.stop()
                sensor.close()
            except RuntimeError:  # already stopped (e.g. after a simulated unplug)
                pass
        self.stopped.set()

    def options_device(self):
        return self.device

    @property
    def depth_scale(self) -> float:
        return self.depth_units_m

    def _pump(self, on_frameset) -> None:
        while self._running.is_set():
            ok, frames = self._syncer.try_wait_for_frames(50)
            if ok:
                on_frameset(frames)

    # feeding frames ------------------------------------------------------------------------------------
    def push(self, color: np.ndarray | None, depth_m: np.ndarray | None, frame_number: int, device_t: float) -> None:
        """Inject one capture: color (H, W, 3) uint8 RGB, depth (H, W) metres; device_t seconds on the device clock."""
        if not self.plugged:
            return
        rs = self.rs
        if depth_m is not None:
            z16 = np.clip(np.round(np.asarray(depth_m) / self.depth_units_m), 0, 65535).astype(np.uint16)
            self._inject(self.depth_sensor, self.depth_profile, z16, 2, frame_number, device_t, depth_units=True)
        if color is not None:
            rgb = np.ascontiguousarray(color, np.uint8)
            self._inject(self.color_sensor, self.color_profile, rgb, 3, frame_number, device_t)

    def _inject(self, sensor, profile, pixels, bpp, frame_number, device_t, depth_units=False):
        rs = self.rs
        f = rs.software_video_frame()
        f.pixels, f.bpp, f.stride = pixels, bpp, pixels.shape[1] * bpp
        f.timestamp, f.domain, f.frame_number = device_t * 1e3, rs.timestamp_domain.hardware_clock, int(frame_number)
        f.profile = profile.as_video_stream_profile()
        if depth_units:
            f.depth_units = self.depth_units_m
        sensor.on_video_frame(f)

    def unplug(self) -> None:
        self.plugged = False

    def replug(self) -> None:
        self.plugged = True
