"""Calibration results on disk and `load_calibration`, the one way the runtime and the twin read them.

    calibration/<rig>/<calibration_id>/
        calibration.yaml   id, rig, created/updated (UTC)
        intrinsics.yaml    per camera: width, height, fx fy cx cy (OpenCV, px), distortion, errors, source
        handeye.yaml       per camera: extrinsics (parent hand|base, position m, quat w x y z), board pose, errors
        latency.yaml       latency_s per stream (observation latency), command_latency_s per device, details
        cameras.yaml       generated: the cameras that have intrinsics and extrinsics, in the twin's format
                           (robot_rl.sim.cameras); a rig file's `calibration:` may point at it

Recorded episodes carry the calibration_id (EpisodeMeta.calibration_id). A flat rig folder holding a
cameras.yaml (like calibration/twin/) is read too. Results are never overwritten silently: a camera or
latency already in a calibration needs overwrite=True.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robot_rl.calibration.intrinsics import Intrinsics
from robot_rl.calibration.paths import calibration_root
from robot_rl.calibration.transforms import from_pos_quat, to_pos_quat
from robot_rl.core.config import load_yaml, save_yaml
from robot_rl.core.errors import ConfigError

META, INTRINSICS, HANDEYE, LATENCY, CAMERAS = ("calibration.yaml", "intrinsics.yaml", "handeye.yaml",
                                               "latency.yaml", "cameras.yaml")
PARENTS = ("hand", "base")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_calibration_id(rig: str) -> str:
    """<rig>-<UTC timestamp>, e.g. lab-franka-1-20250314T101500Z (sorts by time within a rig)."""
    return f"{rig}-{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"


def calibration_dir(rig: str, calibration_id: str, root: str | Path | None = None) -> Path:
    return calibration_root(root) / rig / calibration_id


@dataclass
class CameraExtrinsics:
    """Pose of the camera's optical frame (OpenCV: x right, y down, z forward) in `parent`."""

    parent: str
    T_parent_cam: np.ndarray

    @property
    def position(self) -> list[float]:
        return to_pos_quat(self.T_parent_cam)[0]

    @property
    def quat(self) -> list[float]:
        return to_pos_quat(self.T_parent_cam)[1]


@dataclass
class Calibration:
    """Everything calibrated for one rig under one id. latency_s: observation latency per stream
    (receive time - capture time, s) for DeployConfig.latency_s / StreamSpec.latency_s;
    command_latency_s: command-to-motion lag per device (s)."""

    calibration_id: str
    rig: str
    path: Path
    intrinsics: dict[str, Intrinsics] = field(default_factory=dict)
    extrinsics: dict[str, CameraExtrinsics] = field(default_factory=dict)
    latency_s: dict[str, float] = field(default_factory=dict)
    command_latency_s: dict[str, float] = field(default_factory=dict)

    def camera_calibrations(self) -> dict:
        """robot_rl.sim.cameras.CameraCalibration of every camera with intrinsics and extrinsics."""
        from robot_rl.sim.cameras import CameraCalibration

        out = {}
        for name in sorted(set(self.intrinsics) & set(self.extrinsics)):
            i, e = self.intrinsics[name], self.extrinsics[name]
            out[name] = CameraCalibration(name, i.width, i.height, i.fx, i.fy, i.cx, i.cy, e.parent,
                                          tuple(e.position), tuple(e.quat))
        return out


# ---------------------------------------------------------------- writing

def _section(path: Path, camera: str | None, overwrite: bool) -> dict:
    d = load_yaml(path) if path.is_file() else {}
    d = d or {}
    if camera is not None and camera in (d.get("cameras") or {}) and not overwrite:
        raise ConfigError(f"{path}: camera {camera!r} is already calibrated under this id; pass overwrite=true "
                          f"or use a new calibration_id")
    return d


def _touch_meta(cal_dir: Path, rig: str) -> None:
    meta_path = cal_dir / META
    meta = (load_yaml(meta_path) if meta_path.is_file() else None) or {"calibration_id": cal_dir.name, "rig": rig,
                                                                       "created": _now()}
    meta["updated"] = _now()
    save_yaml(meta, meta_path)


def write_intrinsics(cal_dir: Path, rig: str, camera: str, intr: Intrinsics, report: dict,
                     overwrite: bool = False) -> Path:
    path = cal_dir / INTRINSICS
    d = _section(path, camera, overwrite)
    d["calibration_id"] = cal_dir.name
    d.setdefault("cameras", {})[camera] = {
        "width": intr.width, "height": intr.height,
        "intrinsics": {"fx": intr.fx, "fy": intr.fy, "cx": intr.cx, "cy": intr.cy},
        "distortion": [float(x) for x in intr.dist], **report, "created": _now()}
    save_yaml(d, path)
    _touch_meta(cal_dir, rig)
    _write_cameras(cal_dir)
    return path


def write_handeye(cal_dir: Path, rig: str, camera: str, ext: CameraExtrinsics, board_frame: str,
                  T_board: np.ndarray, report: dict, overwrite: bool = False) -> Path:
    path = cal_dir / HANDEYE
    d = _section(path, camera, overwrite)
    d["calibration_id"] = cal_dir.name
    bpos, bquat = to_pos_quat(T_board)
    d.setdefault("cameras", {})[camera] = {
        "extrinsics": {"parent": ext.parent, "position": ext.position, "quat": ext.quat},
        "board_pose": {"parent": board_frame, "position": bpos, "quat": bquat}, **report, "created": _now()}
    save_yaml(d, path)
    _touch_meta(cal_dir, rig)
    _write_cameras(cal_dir)
    return path


def write_latency(cal_dir: Path, rig: str, latency_s: dict, command_latency_s: dict, report: dict,
                  overwrite: bool = False) -> Path:
    path = cal_dir / LATENCY
    if path.is_file() and not overwrite:
        raise ConfigError(f"{path}: latencies already calibrated under this id; pass overwrite=true or use a new "
                          f"calibration_id")
    save_yaml({"calibration_id": cal_dir.name, "latency_s": {k: round(float(v), 6) for k, v in latency_s.items()},
               "command_latency_s": {k: round(float(v), 6) for k, v in command_latency_s.items()}, **report,
               "created": _now()}, path)
    _touch_meta(cal_dir, rig)
    return path


def _write_cameras(cal_dir: Path) -> None:
    cal = _read_dir(cal_dir)
    cams = cal.camera_calibrations()
    if not cams:
        return
    out = {"calibration_id": cal.calibration_id, "cameras": {}}
    for name, c in cams.items():
        out["cameras"][name] = {
            "width": c.width, "height": c.height,
            "intrinsics": {"fx": c.fx, "fy": c.fy, "cx": c.cx, "cy": c.cy},
            "distortion": [float(x) for x in cal.intrinsics[name].dist],
            "extrinsics": {"parent": c.parent, "position": list(c.position), "quat": list(c.quat)}}
    save_yaml(out, cal_dir / CAMERAS)


# ---------------------------------------------------------------- reading

def _camera_entries(path: Path) -> dict:
    d = load_yaml(path) or {}
    cams = d.get("cameras") or {}
    if not isinstance(cams, dict):
        raise ConfigError(f"{path}: `cameras` must be a mapping of camera name -> entry")
    return cams


def _read_intrinsics(path: Path, name: str, c: dict) -> Intrinsics:
    try:
        i = c["intrinsics"]
        intr = Intrinsics.from_values(c["width"], c["height"], float(i["fx"]), float(i["fy"]), float(i["cx"]),
                                      float(i["cy"]), c.get("distortion"))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{path}: cameras.{name}: missing or invalid field {e}") from None
    if intr.fx <= 0 or intr.fy <= 0 or intr.width <= 0 or intr.height <= 0 or intr.dist.shape != (5,):
        raise ConfigError(f"{path}: cameras.{name}: fx, fy, width, height must be > 0 and distortion 5 values")
    return intr


def _read_extrinsics(path: Path, name: str, c: dict) -> CameraExtrinsics:
    try:
        e = c["extrinsics"]
        parent, pos, quat = str(e["parent"]), np.asarray(e["position"], float), np.asarray(e["quat"], float)
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{path}: cameras.{name}.extrinsics: missing or invalid field {err}") from None
    if parent not in PARENTS or pos.shape != (3,) or quat.shape != (4,) or np.linalg.norm(quat) < 1e-6:
        raise ConfigError(f"{path}: cameras.{name}.extrinsics: parent must be one of {PARENTS}, position 3 values, "
                          f"quat 4 (non-zero); got {e}")
    return CameraExtrinsics(parent, from_pos_quat(pos, quat / np.linalg.norm(quat)))


def _read_dir(cal_dir: Path) -> Calibration:
    meta = (load_yaml(cal_dir / META) if (cal_dir / META).is_file() else None) or {}
    cal = Calibration(str(meta.get("calibration_id", cal_dir.name)), str(meta.get("rig", cal_dir.parent.name)), cal_dir)
    if (cal_dir / CAMERAS).is_file() and not (cal_dir / INTRINSICS).is_file():   # hand-written (e.g. the twin's)
        path = cal_dir / CAMERAS
        cal.calibration_id = str((load_yaml(path) or {}).get("calibration_id", cal.calibration_id))
        cal.rig = str(meta.get("rig", cal_dir.name))     # a flat rig folder: calibration/<rig>/cameras.yaml
        for name, c in _camera_entries(path).items():
            cal.intrinsics[name] = _read_intrinsics(path, name, c)
            cal.extrinsics[name] = _read_extrinsics(path, name, c)
    if (cal_dir / INTRINSICS).is_file():
        for name, c in _camera_entries(cal_dir / INTRINSICS).items():
            cal.intrinsics[name] = _read_intrinsics(cal_dir / INTRINSICS, name, c)
    if (cal_dir / HANDEYE).is_file():
        for name, c in _camera_entries(cal_dir / HANDEYE).items():
            cal.extrinsics[name] = _read_extrinsics(cal_dir / HANDEYE, name, c)
    if (cal_dir / LATENCY).is_file():
        d = load_yaml(cal_dir / LATENCY) or {}
        for key in ("latency_s", "command_latency_s"):
            vals = d.get(key) or {}
            try:
                setattr(cal, key, {str(k): float(v) for k, v in vals.items()})
            except (TypeError, ValueError, AttributeError):
                raise ConfigError(f"{cal_dir / LATENCY}: {key} must map names to seconds, got {vals!r}") from None
    return cal


def _is_calibration(d: Path) -> bool:
    return any((d / f).is_file() for f in (INTRINSICS, HANDEYE, LATENCY, CAMERAS))


def load_calibration(rig_dir_or_id: str | Path, root: str | Path | None = None) -> Calibration:
    """A calibration by folder (calibration/<rig>/<id>, or a flat folder with cameras.yaml), by rig folder
    (its newest calibration by `created` time), or by id (searched as <root>/*/<id>)."""
    p = Path(rig_dir_or_id)
    if p.is_dir() and _is_calibration(p):
        return _read_dir(p)
    if p.is_dir():
        subs = [d for d in p.iterdir() if d.is_dir() and _is_calibration(d)]
        if not subs:
            raise ConfigError(f"{p}: holds no calibration (no {INTRINSICS}, {HANDEYE}, {LATENCY} or {CAMERAS} "
                              f"here or in a sub-folder)")

        def created(d: Path) -> str:
            meta = (load_yaml(d / META) if (d / META).is_file() else None) or {}
            return str(meta.get("created", ""))

        return _read_dir(max(subs, key=lambda d: (created(d), d.name)))
    base = calibration_root(root)
    hits = [d for d in base.glob(f"*/{rig_dir_or_id}") if d.is_dir() and _is_calibration(d)] if base.is_dir() else []
    if len(hits) == 1:
        return _read_dir(hits[0])
    if len(hits) > 1:
        raise ConfigError(f"calibration id {rig_dir_or_id!r} is ambiguous: {sorted(map(str, hits))}")
    raise ConfigError(f"calibration {str(rig_dir_or_id)!r}: not a folder and no {base}/<rig>/{rig_dir_or_id}")
