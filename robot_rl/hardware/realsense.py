"""Intel RealSense D4xx camera (pyrealsense2): color + depth by serial number, optionally aligned to color.

    cam = RealSenseCamera("123622270811", width=640, height=480, fps=30, align_to_color=True,
                          color_exposure=156, white_balance_k=4600)
    cam.connect()
    frame = cam.read()        # CameraFrame: color RGB uint8, depth float32 metres, t on the host clock
    cam.disconnect()

Timestamps: librealsense's global-time option is switched off so frames carry the raw device hardware
clock; `DeviceClockMapper` maps it onto the host monotonic clock online (see `clock_mapping`).
Drops: counted per stream from the device frame counters. USB drop: when no frame arrives for
`stale_after_s`, a watchdog stops the pipeline and restarts it (finding the device by serial) every
`reconnect_period_s` until it is back.
"""

from __future__ import annotations

import threading

import numpy as np

from robot_rl.core import clock
from robot_rl.hardware.camera import Camera, CameraFrame, FrameDropCounter
from robot_rl.hardware.clock_sync import ClockMapping, DeviceClockMapper
from robot_rl.hardware.errors import CameraError, require


class PipelineSource:
    """A USB camera by serial number, or a recorded file (`.bag`/`.db3`), through `rs.pipeline`."""

    def __init__(self, serial: str | None, width: int, height: int, fps: int, color: bool, depth: bool,
                 playback_file: str | None = None, realtime: bool = True) -> None:
        self.rs = require("pyrealsense2")
        self.serial, self.width, self.height, self.fps = serial, width, height, fps
        self.color, self.depth, self.playback_file, self.realtime = color, depth, playback_file, realtime
        self._pipeline = None
        self._profile = None

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

    def start(self, on_frameset) -> None:
        rs = self.rs
        what = self.playback_file or f"serial {self.serial}"
        if not self.playback_file and self.serial:
            found = [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]
            if self.serial not in found:
                raise CameraError(f"RealSense {self.serial}: device not found (connected: {found or 'none'})")
        self._pipeline = rs.pipeline()
        try:
            self._profile = self._pipeline.start(self._config(), on_frameset)
        except RuntimeError as e:
            self._pipeline = None
            raise CameraError(
                f"RealSense {what}: cannot start {self.width}x{self.height}@{self.fps} color={self.color} "
                f"depth={self.depth}: {e}"
            ) from e
        if self.playback_file:
            self._profile.get_device().as_playback().set_real_time(self.realtime)

    def stop(self) -> None:
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


class RealSenseCamera(Camera):
    """One RealSense D4xx. Options are raw device values: `color_exposure` in the color sensor's units
    (D4xx RGB: 100 us), `depth_exposure_us` in microseconds, `white_balance_k` in kelvin; setting one
    switches the matching auto mode off. `source` replaces the USB pipeline (e.g. `SyntheticRealSense`)."""

    def __init__(
        self, serial: str | None = None, width: int = 640, height: int = 480, fps: int = 30, color: bool = True,
        depth: bool = True, align_to_color: bool = False, color_exposure: float | None = None,
        depth_exposure_us: float | None = None, white_balance_k: float | None = None,
        playback_file: str | None = None, stale_after_s: float = 1.0, reconnect_period_s: float = 0.5,
        reconnect: bool = True, source=None, clock_window: int = 600,
    ) -> None:
        super().__init__()
        self.serial = serial or getattr(source, "serial", None)
        self.name = f"RealSense {self.serial or playback_file or '(first found)'}"
        self.source = source or PipelineSource(serial, width, height, fps, color, depth, playback_file)
        self.rs = require("pyrealsense2")
        self.align_to_color = align_to_color
        self.options = {"color": {}, "depth": {}}
        if color_exposure is not None:
            self.options["color"].update(enable_auto_exposure=0, exposure=color_exposure)
        if white_balance_k is not None:
            self.options["color"].update(enable_auto_white_balance=0, white_balance=white_balance_k)
        if depth_exposure_us is not None:
            self.options["depth"].update(enable_auto_exposure=0, exposure=depth_exposure_us)
        self.stale_after_s, self.reconnect_period_s, self.reconnect = stale_after_s, reconnect_period_s, reconnect
        self.stream_drops = {"color": FrameDropCounter(), "depth": FrameDropCounter()}
        self.drops = self.stream_drops["color"] if color else self.stream_drops["depth"]
        self.clock = DeviceClockMapper(window=clock_window)
        self.reconnects = 0
        self.incomplete_framesets = 0
        self.expect_both = color and depth
        self._profiles: dict = {}
        self._align = None
        self._depth_scale = 0.001
        self._last_frame_host = 0.0
        self._arrived = threading.Event()
        self._closing = threading.Event()
        self._watchdog: threading.Thread | None = None

    # lifecycle ---------------------------------------------------------------------------------------
    def _start(self) -> None:
        rs = self.rs
        self._align = rs.align(rs.stream.color) if self.align_to_color else None
        self._open_source()
        self._closing.clear()
        if self.reconnect:
            self._watchdog = threading.Thread(target=self._watch, name=f"{self.name} watchdog", daemon=True)
            self._watchdog.start()

    def _stop(self) -> None:
        self._closing.set()
        self._arrived.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=5.0)
            self._watchdog = None
        self.source.stop()

    def _open_source(self) -> None:
        self.source.start(self._on_frameset)
        try:
            self._apply_options()
        except Exception:
            self.source.stop()
            raise
        self._depth_scale = self.source.depth_scale
        self._last_frame_host = clock.now()

    @property
    def clock_mapping(self) -> ClockMapping | None:
        """Current device-to-host clock estimate, with its `mapping_error_s` and delay percentiles."""
        return self.clock.mapping

    @property
    def stats(self) -> dict:
        m = self.clock.mapping
        return {
            **{f"{k}_dropped": c.dropped for k, c in self.stream_drops.items()},
            **{f"{k}_received": c.received for k, c in self.stream_drops.items()},
            "incomplete_framesets": self.incomplete_framesets, "reconnects": self.reconnects,
            "clock_mapping_error_ms": None if m is None else m.mapping_error_s * 1e3,
            "clock_drift_ppm": None if m is None else m.drift * 1e6,
        }

    # options -----------------------------------------------------------------------------------------
    def _apply_options(self) -> None:
        rs = self.rs
        device = self.source.options_device()
        if device is None:
            return
        sensors = {}
        for sensor in device.query_sensors():
            kinds = {p.stream_type() for p in sensor.get_stream_profiles()}
            if rs.stream.color in kinds:
                sensors["color"] = sensor
            if rs.stream.depth in kinds:
                sensors["depth"] = sensor
        # Raw hardware timestamps: we map them to the host *monotonic* clock ourselves (librealsense's global
        # time maps to the wall clock, which jumps with NTP).
        for sensor in sensors.values():
            if sensor.supports(rs.option.global_time_enabled):
                sensor.set_option(rs.option.global_time_enabled, 0)
        for kind, options in self.options.items():
            for name, value in options.items():
                self._set_option(sensors.get(kind), kind, name, value)

    def _set_option(self, sensor, kind: str, name: str, value: float) -> None:
        option = getattr(self.rs.option, name)
        if sensor is None or not sensor.supports(option):
            raise CameraError(f"{self.name}: the {kind} sensor has no option {name!r} (asked for {value})")
        r = sensor.get_option_range(option)
        if not r.min <= value <= r.max:
            raise CameraError(f"{self.name}: {kind} option {name}={value} outside the device range {r.min}..{r.max}")
        sensor.set_option(option, float(value))

    # frames ------------------------------------------------------------------------------------------
    def _on_frameset(self, frames) -> None:
        """Runs on librealsense's thread for every synchronized frameset."""
        receive_t = clock.now()
        try:
            frame = self._convert(frames.as_frameset(), receive_t)
        except Exception as e:  # surface in read() rather than dying silently in a vendor thread
            self._mailbox.fail(CameraError(f"{self.name}: cannot convert a frameset: {e}"))
            return
        if frame is not None:
            self._last_frame_host = receive_t
            self._arrived.set()
            self._publish(frame)

    def _convert(self, fs, receive_t: float) -> CameraFrame | None:
        color_f, depth_f = fs.get_color_frame(), fs.get_depth_frame()
        if self._align is not None and color_f and depth_f:
            aligned = self._align.process(fs)
            depth_f = aligned.get_depth_frame()
        if not color_f and not depth_f:
            return None
        gaps = {}
        if color_f:
            gaps["color"] = self.stream_drops["color"].update(color_f.get_frame_number())
        if depth_f:
            gaps["depth"] = self.stream_drops["depth"].update(depth_f.get_frame_number())
        main = color_f or depth_f
        if self.expect_both and not (color_f and depth_f):
            self.incomplete_framesets += 1
        for kind, f in (("color", color_f), ("depth", depth_f)):
            if f:
                self._profiles[kind] = f.get_profile().as_video_stream_profile()
        device_t = main.get_timestamp() / 1e3
        t = self.clock.update(device_t, receive_t)
        color = np.asanyarray(color_f.get_data()).copy() if color_f else None
        depth = np.asanyarray(depth_f.get_data()).astype(np.float32) * np.float32(self._depth_scale) if depth_f else None
        return CameraFrame(
            color=color, depth=depth, t=t, receive_t=receive_t, device_t=device_t, frame_number=main.get_frame_number(),
            dropped_before=gaps.get("color" if color_f else "depth", 0),
            info={"timestamp_domain": str(main.get_frame_timestamp_domain()), "serial": self.serial},
        )

    def intrinsics(self, stream: str = "color") -> dict:
        """Factory intrinsics of a stream as received (pixels; depth aligned to color has color's)."""
        profile = self._profiles.get(stream)
        if profile is None:
            raise CameraError(f"{self.name}: no {stream} frame received yet; read() one before asking for intrinsics")
        i = profile.get_intrinsics()
        return {"width": i.width, "height": i.height, "fx": i.fx, "fy": i.fy, "ppx": i.ppx, "ppy": i.ppy,
                "model": str(i.model), "coeffs": list(i.coeffs)}

    # reconnect ---------------------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._closing.is_set():
            self._arrived.clear()
            if self._arrived.wait(self.stale_after_s) or self._closing.is_set():
                continue
            self.source.stop()
            while not self._closing.wait(self.reconnect_period_s):
                try:
                    self._open_source()
                except Exception:  # device still missing: keep trying until disconnect()
                    continue
                self.reconnects += 1
                self.clock.reset()
                break
