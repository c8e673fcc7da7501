"""Cameras of the twin: geometry from calibration files, headless rendering at each camera's own rate
(recording) or once per policy step (rollouts that only read the step's last frame).

Calibration files (calibration/<rig>/cameras.yaml) give OpenCV pinhole intrinsics and the pose of the
optical frame (x right, y down, z forward) in a parent frame ("base" or "hand"). MuJoCo cameras look
along -z with y up, so the optical frame is turned by diag(1, -1, -1) when the camera is added.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_rl.core.config import load_yaml
from robot_rl.core.errors import ConfigError
from robot_rl.core.rotations import quat_mul, quat_normalize

_PARENT_BODY = {"base": None, "hand": "hand"}
# optical (OpenCV) frame -> MuJoCo camera frame: rotate pi about x
_CV_TO_MJ = np.array([0.0, 1.0, 0.0, 0.0])
_PIXEL_PITCH = 3e-6  # m; only the ratio focal/pitch matters, MuJoCo needs a physical sensor size


@dataclass(frozen=True)
class CameraCalibration:
    """One camera: resolution (px), intrinsics (px), optical-frame pose in `parent` (m, quat w,x,y,z)."""

    name: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    parent: str
    position: tuple
    quat: tuple

    def mujoco_quat(self) -> np.ndarray:
        return quat_mul(quat_normalize(np.array(self.quat)), _CV_TO_MJ)


def load_camera_calibration(path: str | Path) -> tuple[str, dict[str, CameraCalibration]]:
    """(calibration_id, {name: CameraCalibration}) from a calibration YAML; errors name the field."""
    path = Path(path)
    d = load_yaml(path) or {}
    cams = {}
    for name, c in dict(d.get("cameras") or {}).items():
        where = f"{path}: cameras.{name}"
        try:
            intr, ext = c["intrinsics"], c["extrinsics"]
            cal = CameraCalibration(name, int(c["width"]), int(c["height"]), float(intr["fx"]), float(intr["fy"]),
                                    float(intr["cx"]), float(intr["cy"]), str(ext["parent"]),
                                    tuple(float(x) for x in ext["position"]), tuple(float(x) for x in ext["quat"]))
        except KeyError as e:
            raise ConfigError(f"{where}: missing field {e}") from None
        if cal.parent not in _PARENT_BODY:
            raise ConfigError(f"{where}.extrinsics.parent={cal.parent!r}: expected one of {list(_PARENT_BODY)}")
        if len(cal.position) != 3 or len(cal.quat) != 4 or np.linalg.norm(cal.quat) < 1e-6:
            raise ConfigError(f"{where}.extrinsics: position needs 3 values and quat 4 (non-zero), got "
                              f"{cal.position}, {cal.quat}")
        if cal.fx <= 0 or cal.fy <= 0 or cal.width <= 0 or cal.height <= 0:
            raise ConfigError(f"{where}: fx, fy, width, height must be > 0, got {cal}")
        cams[name] = cal
    return str(d.get("calibration_id", path.parent.name)), cams


def add_cameras(spec, cams: dict[str, CameraCalibration], names=None) -> None:
    """Add calibrated cameras to an MjSpec (before compile). MuJoCo name = 'cam_<name>'."""
    from robot_rl.sim.mujoco_compat import principal_pixel

    for name, c in cams.items():
        if names is not None and name not in names:
            continue
        body = spec.worldbody if _PARENT_BODY[c.parent] is None else spec.body(_PARENT_BODY[c.parent])
        cam = body.add_camera(name=f"cam_{name}")
        cam.pos = list(c.position)
        cam.quat = list(c.mujoco_quat())
        cam.resolution = [c.width, c.height]
        cam.sensor_size = [c.width * _PIXEL_PITCH, c.height * _PIXEL_PITCH]
        cam.focal_pixel = [c.fx, c.fy]
        cam.principal_pixel = principal_pixel(c.width, c.height, c.cx, c.cy)   # its convention differs across versions


def camera_stream(name: str) -> str:
    """The observation / episode-store stream of twin camera `name`."""
    return f"cam_{name}_rgb"


def camera_name(stream: str) -> str:
    """The twin camera whose stream is `stream` (the inverse of camera_stream)."""
    return stream[len("cam_"):-len("_rgb")]


class CameraRig:
    """Renders each camera headless at its own rate; frames carry their simulation timestamps.

    Call `poll(t)` after physics steps: every camera whose next frame time has come renders once and
    its latest (t, image) is kept in `frames[name]`. Or call `capture(t)` to render every camera now
    (once per policy step: what a rollout reads, without the frames in between). Shadows and
    reflections are off (5x faster).
    """

    def __init__(self, model, data, cams: dict[str, CameraCalibration], fps: dict[str, float]) -> None:
        import mujoco

        self._mujoco = mujoco
        self.model, self.data = model, data
        self.names = list(cams)
        self.fps = {n: float(fps.get(n, 30.0)) for n in self.names}
        self.renderers = {}
        for n in self.names:
            c = cams[n]
            try:
                r = mujoco.Renderer(model, height=c.height, width=c.width)
            except mujoco.FatalError as e:
                raise RuntimeError(
                    f"camera {n}: MuJoCo could not create an OpenGL context ({e}). Headless rendering needs "
                    f"MUJOCO_GL=egl set before mujoco is first imported (robot_rl.sim sets it when imported "
                    f"first) and the EGL libraries (apt-get install libegl1 libegl-mesa0 libgl1)") from None
            r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            self.renderers[n] = r
        self.cam_ids = {n: model.camera(f"cam_{n}").id for n in self.names}
        self.frames: dict[str, tuple[float, np.ndarray]] = {}
        self.listeners: list = []   # callables (name, t, image) run on every new frame (e.g. a recorder)
        self._next = {n: 0.0 for n in self.names}
        self.rendered = 0

    def reset(self, t: float) -> None:
        self.frames.clear()
        self._next = {n: t for n in self.names}
        self.poll(t)

    def poll(self, t: float) -> None:
        for n in self.names:
            if t + 1e-9 >= self._next[n]:
                self._take(n, t)
                self._next[n] += 1.0 / self.fps[n]
                if self._next[n] <= t:  # fell behind (e.g. after a reset): no burst of catch-up frames
                    self._next[n] = t + 1.0 / self.fps[n]

    def capture(self, t: float) -> None:
        """Render every camera now, stamped t (a listener sees each frame, as with poll)."""
        for n in self.names:
            self._take(n, t)

    def _take(self, name: str, t: float) -> None:
        img = self.render(name)
        self.frames[name] = (t, img)
        for fn in self.listeners:
            fn(name, t, img)

    def render(self, name: str) -> np.ndarray:
        r = self.renderers[name]
        r.update_scene(self.data, camera=self.cam_ids[name])
        self.rendered += 1
        return r.render().copy()

    def close(self) -> None:
        for r in self.renderers.values():
            r.close()
        self.renderers.clear()
