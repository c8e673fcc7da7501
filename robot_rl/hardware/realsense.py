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
from robot_rl.hardware.device_errors import CameraError, require
from robot_rl.hardware.realsense_pipeline import PipelineSource


class RealSenseCamera(Camera):
    """One RealSense D4xx. Options are raw device values: `color_exposure` in the color sensor's units
    (D4xx RGB: 100 us), `depth_exposure_us` in microseconds, `white_balance_k` in kelvin; setting one
    switches the matching auto mode off. `source` replaces the USB pipeline (e.g. `SyntheticRealSense`)."""

    def __init__(
        self, serial: str | None = None, width: int = 640, height: int = 480, fps: int = 30, color: bool = True,
        depth: bool = True, align_to_color: bool = False, color_exposure: float | None = None,
        depth_exposure_us: float | None = None, white_balance_k: float | None = None,
        playback_file: str | None = None, stale_after_s: float = 1.0, reconnect_period_s: float = 0.5,
        reconnect: bool = True, source=None, clock_window: int = 600, playback_realtime: bool = True,
    ) -> None:
        # Playback hands over every frame in order (lossless buffer); live streams hand over the newest frame.
        # playback_realtime=False plays as fast as the file reads, and librealsense's pipeline queue then drops
        # frames whenever read() falls behind.
        super().__init__(buffer_frames=4 if playback_file else 1, lossless=bool(playback_file))
        self.serial = serial or getattr(source, "serial", None)
        self.name = f"RealSense {self.serial or playback_file or '(first found)'}"
        self.source = source or PipelineSource(
            serial, width, height, fps, color, depth, playback_file, playback_realtime
        )
        self.rs = require("pyrealsense2")
        self.align_to_color = align_to_color
        self.options = {"color": {}, "depth": {}}
        if color_exposure is not None:
            self.options["color"].update(enable_auto_exposure=0, exposure=color_exposure)
        if white_balance_k is not None:
            self.options["color"].update(enable_auto_white_balance=0, white_balance=white_balance_k)
        if depth_exposure_us is not None:
            self.options["depth"].update(enable_auto_exposure=0, exposure=depth_exposure_us)
        self.stale_after_s, self.reconnect_period_s = stale_after_s, reconnect_period_s
        self.reconnect = reconnect and not playback_file  # a file that ended must not restart
        self.stream_drops = {"color": FrameDropCounter(), "depth": FrameDropCounter()}
        self.drops = self.stream_drops["color"] if color else self.stream_drops["depth"]
        self.clock = DeviceClockMapper(window=clock_window)
        self.reconnects = 0
        self.reconnected = threading.Event()  # set once streaming resumed after a drop
        self.incomplete_framesets = 0
        self.expect_both = color and depth
        self._profiles: dict = {}
        self._align = None
        self._depth_scale = 0.001
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
        self.source.start(self._on_frameset, self._end_of_stream)
        try:
            self._apply_options()
        except Exception:
            self.source.stop()
            raise
        self._depth_scale = self.source.depth_scale

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
            option = rs.option.global_time_enabled
            if sensor.supports(option) and not sensor.is_option_read_only(option):  # read-only in playback
                sensor.set_option(rs.option.global_time_enabled, 0)
        for kind, options in self.options.items():
            for name, value in options.items():
                self._set_option(sensors.get(kind), kind, name, value)

    def _set_option(self, sensor, kind: str, name: str, value: float) -> None:
        option = getattr(self.rs.option, name)
        if sensor is None or not sensor.supports(option):
            raise CameraError(f"{self.name}: the {kind} sensor has no option {name!r} (asked for {value})")
        if sensor.is_option_read_only(option):
            raise CameraError(f"{self.name}: {kind} option {name} is read-only here (playback?); cannot set {value}")
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
            self._buffer.fail(CameraError(f"{self.name}: cannot convert a frameset: {e}"))
            return
        if frame is not None:
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
        depth = None
        if depth_f:
            depth = np.asanyarray(depth_f.get_data()).astype(np.float32) * np.float32(self._depth_scale)
        info = {"timestamp_domain": str(main.get_frame_timestamp_domain()), "serial": self.serial}
        if color_f and depth_f:  # the syncer pairs by timestamp; a starved pipeline can pair adjacent captures
            info["depth_frame_number"] = depth_f.get_frame_number()
            info["depth_device_t"] = depth_f.get_timestamp() / 1e3
        return CameraFrame(
            color=color, depth=depth, t=t, receive_t=receive_t, device_t=device_t, frame_number=main.get_frame_number(),
            dropped_before=gaps.get("color" if color_f else "depth", 0),
            info=info,
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
            self.reconnected.clear()
            while not self._closing.wait(self.reconnect_period_s):
                self.clock.reset()  # a re-enumerated device restarts its clock
                try:
                    self._open_source()
                except Exception:  # device still missing: keep trying until disconnect()
                    continue
                self.reconnects += 1
                self.reconnected.set()
                break
