"""Pose conversions between vendor layouts and robot_rl's (position m + quaternion (w, x, y, z))."""

from __future__ import annotations

import mujoco
import numpy as np

from robot_rl.core.rotations import quat_to_rotvec, rotvec_to_quat


_ROTATION_ROW_MAJOR = np.array([0, 4, 8, 1, 5, 9, 2, 6, 10])   # R[i, j] sits at 4 j + i in a column-major 4x4


def pose_from_column_major(T16) -> tuple[np.ndarray, np.ndarray]:
    """A 4x4 homogeneous transform stored column-major in 16 numbers (libfranka's O_T_EE).
    Runs every 1 ms tick: MuJoCo's C conversion costs ~1 us against ~50 us for the batched numpy one."""
    T = np.asarray(T16, dtype=np.float64)
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, T[_ROTATION_ROW_MAJOR])
    return T[12:15].copy(), quat


def pose_from_rotvec(pose6) -> tuple[np.ndarray, np.ndarray]:
    """[x, y, z, rx, ry, rz] (m, rotation vector in rad: UR's TCP pose) -> position, quaternion."""
    p = np.asarray(pose6, dtype=np.float64)
    return p[:3].copy(), rotvec_to_quat(p[3:6])


def pose_to_rotvec(pos, quat) -> list[float]:
    """Position + quaternion -> [x, y, z, rx, ry, rz] (the shortest rotation vector), as a list."""
    return [float(v) for v in pos] + quat_to_rotvec(quat).tolist()


def same_hemisphere(q: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """q or -q, whichever is closer to `previous`: a stream of orientations stays continuous (q and -q
    are one rotation; a TCP pointing down sits at w ~ 0 where a canonical w >= 0 flips sign)."""
    return -q if float(np.dot(q, previous)) < 0.0 else q
