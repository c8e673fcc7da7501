"""Rotation math on numpy arrays.

Conventions (same as MuJoCo): quaternions are (w, x, y, z), unit norm; rotation vectors are
axis * angle in radians; matrices are 3x3 active rotations (v_world = R @ v_body). All functions
accept leading batch dimensions. Conversions and interpolation are scipy's Rotation
(scalar_first=True for MuJoCo's order); the Hamilton product and conjugate stay numpy expressions
(scipy's composition would normalise its inputs).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def quat_normalize(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quat_conj(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b (apply b first, then a)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def quat_to_rotvec(q: np.ndarray) -> np.ndarray:
    """Rotation vector of the shortest rotation (angle in [0, pi])."""
    return _rotation(q).as_rotvec()


def rotvec_to_quat(v: np.ndarray) -> np.ndarray:
    return Rotation.from_rotvec(np.asarray(v, dtype=np.float64)).as_quat(scalar_first=True)


def quat_error(q_target: np.ndarray, q_current: np.ndarray) -> np.ndarray:
    """Rotation vector (world frame) that rotates q_current onto q_target, shortest way round."""
    return quat_to_rotvec(quat_mul(q_target, quat_conj(q_current)))


def quat_to_mat(q: np.ndarray) -> np.ndarray:
    return _rotation(q).as_matrix()


def mat_to_quat(m: np.ndarray) -> np.ndarray:
    """Rotation matrix to unit quaternion with w >= 0."""
    return Rotation.from_matrix(np.asarray(m, dtype=np.float64)).as_quat(canonical=True, scalar_first=True)


def quat_slerp(q0: np.ndarray, q1: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation from q0 (alpha=0) to q1 (alpha=1) along the shortest arc; the result keeps
    q0's sign (q0 * exp(alpha * log(q0^-1 q1)))."""
    r0 = _rotation(q0)
    step = (r0.inv() * _rotation(q1)).as_rotvec()
    alpha = np.asarray(alpha, dtype=np.float64)[..., None] if np.ndim(alpha) else float(alpha)
    return (r0 * Rotation.from_rotvec(alpha * step)).as_quat(scalar_first=True)


def _rotation(q: np.ndarray) -> Rotation:
    return Rotation.from_quat(np.asarray(q, dtype=np.float64), scalar_first=True)
