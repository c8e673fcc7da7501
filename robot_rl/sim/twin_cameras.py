"""The twin's cameras for the wall-clock loop: rendered beside the 1 kHz loop process, never inside it.

The loop process owns the physics and must keep its 1 ms tick, and one 128x128 render costs ~3 ms,
so it only publishes the scene (robot_rl.sim.twin_arm.pack_scene: qpos, mocap poses, site positions)
in every state snapshot. `TwinCameraSource` holds its own compiled copy of the same cell + task,
copies a snapshot's scene in, runs the kinematics and renders each camera at the camera's rate,
stamping every frame with the loop-clock time the scene describes. To the policy runner it is a
camera driver like any other: frames arrive with their capture times, and a source that stops
leaves them to go stale.
"""

from __future__ import annotations

from typing import Sequence

import mujoco
import numpy as np

from robot_rl.core.errors import ConfigError
from robot_rl.sim.cameras import CameraRig, camera_stream
from robot_rl.sim.mujoco_twin import build_model
from robot_rl.sim.tasks import make_task
from robot_rl.sim.twin_arm import scene_size, unpack_scene


class TwinCameraSource:
    """Renders twin cameras from the scene the loop process publishes.

    rig: the loop's RigConfig; task: None, a task name or {"name", "params"} (as the loop was given:
    the copy must have the same bodies); cameras: camera names (calibration/<rig>/cameras.yaml);
    fps: {name: frames per second} (default: the rig's cameras.<name>.fps, else 30)."""

    def __init__(self, rig, task=None, cameras: Sequence[str] = (), fps: dict | None = None) -> None:
        if isinstance(task, dict):
            task_obj = make_task(str(task["name"]), task.get("params") or {})
        else:
            task_obj = make_task(task) if task else None
        self.model, _, calibration = build_model(rig, task_obj)
        unknown = sorted(set(cameras) - set(calibration))
        if unknown or not cameras:
            what = f"unknown {unknown}" if unknown else "none named"
            raise ConfigError(f"twin cameras {list(cameras)}: {what}; {rig.calibration} calibrates {sorted(calibration)}")
        self.data = mujoco.MjData(self.model)
        fps = dict(fps or {})
        rates = {n: float(fps.get(n, rig.cameras.get(n, {}).get("fps", 30))) for n in cameras}
        self.rig = CameraRig(self.model, self.data, {n: calibration[n] for n in cameras}, rates)
        self.names = list(cameras)
        self.streams = [camera_stream(n) for n in self.names]
        self.fps = {camera_stream(n): rates[n] for n in self.names}
        self.scene_size = scene_size(self.model)
        self._next: dict[str, float | None] = {n: None for n in self.names}
        self.rendered = 0

    def frames(self, snap) -> list[tuple[str, float, np.ndarray]]:
        """(stream, capture time, HxWx3 uint8 frame) of every camera whose next frame is due at the scene
        time of loop snapshot `snap`; the first call renders every camera. Renders nothing otherwise."""
        t = float(snap.scene_t)
        due = [n for n in self.names if self._next[n] is None or t + 1e-9 >= self._next[n]]
        if not due:
            return []
        scene = snap.scene_state
        if scene.shape[0] != self.scene_size:
            raise ConfigError(f"twin cameras: the loop publishes a scene of {scene.shape[0]} floats, this copy of the "
                              f"cell + task needs {self.scene_size} (is the loop running the twin backend with the "
                              "same task?)")
        unpack_scene(self.model, self.data, scene)
        m, d = self.model, self.data
        mujoco.mj_kinematics(m, d)     # body, geom, site frames
        mujoco.mj_comPos(m, d)         # subtree centres of mass (tracking cameras and lights)
        mujoco.mj_camlight(m, d)       # camera and light frames
        out = []
        for n in due:
            out.append((camera_stream(n), t, self.rig.render(n)))
            period = 1.0 / self.rig.fps[n]
            nxt = (t if self._next[n] is None else self._next[n]) + period
            self._next[n] = nxt if nxt > t else t + period   # fell behind: no burst of catch-up frames
        self.rendered += len(out)
        return out

    def reset(self) -> None:
        """The next call of `frames` renders every camera (a new episode)."""
        self._next = {n: None for n in self.names}

    def close(self) -> None:
        self.rig.close()
