"""The one place where MuJoCo 3.x (>= 3.3) and 4.x differ for the twin.

Suites that pin MuJoCo 3 (e.g. mujoco==3.3.0) must be able to share a venv with robot_rl, so the twin, the
controller and every command run on both; CI runs a subset on mujoco==3.3.0 (scripts/test.sh).
- Keyframes: the cell's `home` key lists the arm's qpos only; a task adds free-jointed objects. MuJoCo 4 pads a
  short keyframe with qpos0, MuJoCo 3 refuses to compile it ("invalid qpos size"): pad it ourselves.
- mj_fullM: MuJoCo 4 reads the inertia from MjData (mj_fullM(m, d, dst)), MuJoCo 3 from the sparse d.qM
  (mj_fullM(m, dst, qM)).
- A camera's principal_pixel: the optical axis lands on OpenCV column cx = W/2 - 0.5 - principal_pixel_x in
  both, but on row cy = H/2 - 0.5 - principal_pixel_y in MuJoCo 4 and H/2 - 0.5 + principal_pixel_y in
  MuJoCo 3.3 (measured by rendering a sphere on the axis; tests/calibration recover cx, cy from renders).
"""

from __future__ import annotations

import mujoco
import numpy as np

MUJOCO_MAJOR = int(mujoco.__version__.split(".")[0])


def compile_spec(spec: mujoco.MjSpec) -> mujoco.MjModel:
    """spec.compile(), with keyframes shorter than the model's qpos padded with qpos0 (as MuJoCo 4 does)."""
    keys = list(spec.keys)
    saved = [np.array(k.qpos, dtype=np.float64) for k in keys]
    if not any(len(q) for q in saved):
        return spec.compile()
    for k in keys:
        k.qpos = []              # unspecified: qpos0; compile once to learn qpos0 of the whole model
    qpos0 = spec.compile().qpos0.copy()
    for k, q in zip(keys, saved):
        k.qpos = np.concatenate([q, qpos0[len(q):]]) if 0 < len(q) < len(qpos0) else q
    return spec.compile()


def full_inertia(m: mujoco.MjModel, d: mujoco.MjData, dst: np.ndarray) -> None:
    """The dense (nv, nv) joint-space inertia matrix into dst."""
    if MUJOCO_MAJOR >= 4:
        mujoco.mj_fullM(m, d, dst)
    else:
        mujoco.mj_fullM(m, dst, d.qM)


_PRINCIPAL_Y_SIGN = 1.0 if MUJOCO_MAJOR >= 4 else -1.0


def principal_pixel(width: int, height: int, cx: float, cy: float) -> list[float]:
    """MuJoCo camera `principal_pixel` that puts the optical axis at OpenCV pixel (cx, cy)."""
    return [0.5 * width - 0.5 - cx, _PRINCIPAL_Y_SIGN * (0.5 * height - 0.5 - cy)]


def optical_centre(width: int, height: int, px: float, py: float) -> tuple[float, float]:
    """OpenCV (cx, cy) of a MuJoCo camera with principal offset (px, py) pixels (the inverse of principal_pixel)."""
    return 0.5 * width - 0.5 - px, 0.5 * height - 0.5 - _PRINCIPAL_Y_SIGN * py
