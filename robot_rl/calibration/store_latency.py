"""Device latencies from the episodes of a store (see latency.py for the method).

Command devices (arm, gripper) pair a commanded stream with the measured one; cameras pair the TCP twist
from the robot's pose streams (default ee_pos, ee_quat) with the mean optical flow of the camera stream. Correlation
sums of all episodes add up before the peak search, so short episodes pool their evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_rl.calibration.calibration_errors import CalibrationError
from robot_rl.calibration.latency import (LagEstimate, canonical_lag_curve, image_flow, lag_curve, peak_lag, twist,
                                          velocity)

# device -> (command stream, measured stream, sign of the response)
DEFAULT_DEVICES = {"robot": ("ee_target_pos", "ee_pos", 1.0), "gripper": ("gripper_cmd", "gripper_pos", -1.0)}


@dataclass
class LatencyOptions:
    max_lag_s: float = 0.3
    resample_hz: float = 1000.0
    min_corr: float = 0.5            # a lower correlation peak means too little or too unlike motion
    pose_streams: tuple = ("ee_pos", "ee_quat")   # robot state the cameras are timed against
    reference_latency_s: float = 0.0  # latency of those streams themselves (camera latency = lag + this)
    flow_width: int = 64             # px: frames are shrunk to this width for the optical flow
    devices: dict = field(default_factory=lambda: dict(DEFAULT_DEVICES))
    cameras: list | None = None      # image streams; None: every image stream of the store
    camera_mounts: dict = field(default_factory=dict)  # image stream -> "hand" | "base" (default base)
    episodes: list | None = None     # None: all episodes


@dataclass
class LatencyResult:
    command: dict[str, LagEstimate]   # device -> command-to-motion lag
    cameras: dict[str, LagEstimate]   # image stream -> lag behind the pose streams
    skipped: dict[str, str]           # name -> why no estimate
    options: LatencyOptions

    def latency_s(self) -> dict[str, float]:
        """Observation latency per stream (receive time - capture time, s), for the runtime. A latency
        cannot be negative: a slightly negative estimate (noise around zero) is written as 0; the raw lag
        stays in the report."""
        return {s: max(0.0, e.lag_s + self.options.reference_latency_s) for s, e in self.cameras.items()}

    def command_latency_s(self) -> dict[str, float]:
        return {d: e.lag_s for d, e in self.command.items()}


def _frames(store, stream: str, episode: int, chunk: int = 64):
    n = store.episode(episode).length(stream)
    for start in range(0, n, chunk):
        values, _ = store.read(stream, episode, start, min(n, start + chunk))
        yield from values


def estimate_store_latencies(store, opts: LatencyOptions | None = None, progress: bool = False) -> LatencyResult:
    from robot_rl.core.progress import progress_bar

    o = opts or LatencyOptions()
    episodes = list(range(store.n_episodes)) if o.episodes is None else [int(e) for e in o.episodes]
    if not episodes:
        raise CalibrationError(f"{store.path}: no committed episodes to estimate latencies from")
    cameras = o.cameras if o.cameras is not None else [s for s, spec in store.streams.items() if spec.is_image]
    for s in cameras:
        if s not in store.streams:
            raise CalibrationError(f"latency.cameras: store {store.path} has no stream {s!r}")
    for s, mount in o.camera_mounts.items():
        if mount not in ("hand", "base"):
            raise CalibrationError(f"latency.camera_mounts.{s}={mount!r}: expected 'hand' or 'base'")
    skipped: dict[str, str] = {}
    curves: dict = {}
    signs: dict[str, float] = {}
    for dev, (cmd, meas, sign) in o.devices.items():
        missing = [s for s in (cmd, meas) if s not in store.streams]
        if missing:
            skipped[dev] = f"streams {missing} not in the store"
        signs[dev] = float(sign)
    missing = [s for s in o.pose_streams if s not in store.streams]
    if cameras and (missing or len(o.pose_streams) != 2):
        raise CalibrationError(f"latency.pose_streams={list(o.pose_streams)}: need [position, quaternion] streams of "
                               f"{store.path}; missing {missing}")

    def add(name: str, curve) -> None:
        curves[name] = curve if name not in curves else curves[name] + curve

    for e in progress_bar(episodes, desc="latency", unit="episode", enabled=progress):
        for dev, (cmd, meas, _) in o.devices.items():
            if dev in skipped:
                continue
            tc, vc = velocity(*store.read(cmd, e)[::-1])
            tm, vm = velocity(*store.read(meas, e)[::-1])
            add(dev, lag_curve(tc, vc, tm, vm, o.max_lag_s, o.resample_hz))
        if cameras:
            pos, tp = store.read(o.pose_streams[0], e)
            quat, tq = store.read(o.pose_streams[1], e)
            if not np.array_equal(tp, tq):
                raise CalibrationError(f"latency.pose_streams {list(o.pose_streams)}: episode {e} samples them at "
                                       f"different times")
            twists = {frame: twist(tp, pos, quat, frame) for frame in ("base", "tool")}
            for cam in cameras:
                tw, xw = twists["tool" if o.camera_mounts.get(cam, "base") == "hand" else "base"]
                ti, fi = image_flow(_frames(store, cam, e), store.episode(e).times(cam), o.flow_width)
                add(cam, canonical_lag_curve(tw, xw, ti, fi, o.max_lag_s, o.resample_hz))
    command, cams = {}, {}
    for name, curve in curves.items():
        if not np.any(curve.score(signs.get(name, 1.0)) > 0):
            skipped[name] = "no motion in the reference or the measured stream"
            continue
        est = peak_lag(curve, signs.get(name, 1.0), o.resample_hz, what=name)
        if est.peak_corr < o.min_corr:
            skipped[name] = (f"correlation peak {est.peak_corr:.2f} < latency.min_corr={o.min_corr} at "
                             f"{est.lag_s * 1e3:.1f} ms: too little or too unlike motion")
            continue
        (command if name in o.devices else cams)[name] = est
    if not command and not cams:
        raise CalibrationError(f"{store.path}: no latency could be estimated: "
                               + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return LatencyResult(command, cams, skipped, o)
