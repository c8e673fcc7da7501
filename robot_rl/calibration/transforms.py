"""Rigid transforms as 4x4 homogeneous matrices. `T_a_b` maps points from frame b into frame a
(so T_base_cam is the camera's pose in the base frame). Metres, radians; quaternions (w, x, y, z)."""

from __future__ import annotations

import cv2
import numpy as np

from robot_rl.core.rotations import mat_to_quat, quat_to_mat


def make_T(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def invert(T: np.ndarray) -> np.ndarray:
    R, t = T[:3, :3], T[:3, 3]
    return make_T(R.T, -R.T @ t)


def from_rvec(rvec, tvec) -> np.ndarray:
    """From an OpenCV (Rodrigues rotation vector, translation) pair."""
    R, _ = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64).reshape(3, 1))
    return make_T(R, tvec)


def to_rvec(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rvec, _ = cv2.Rodrigues(np.ascontiguousarray(T[:3, :3]))
    return rvec.reshape(3), T[:3, 3].copy()


def from_pos_quat(position, quat) -> np.ndarray:
    return make_T(quat_to_mat(np.asarray(quat, dtype=np.float64)), position)


def to_pos_quat(T: np.ndarray) -> tuple[list[float], list[float]]:
    return [float(x) for x in T[:3, 3]], [float(x) for x in mat_to_quat(T[:3, :3])]


def exp_se3(xi: np.ndarray) -> np.ndarray:
    """Small pose change from (rotation vector (3,), translation (3,)) (rotation and translation apart)."""
    return from_rvec(xi[:3], xi[3:])


def project_rotation(M: np.ndarray) -> np.ndarray:
    """The rotation matrix closest to M (Frobenius), e.g. to average rotations."""
    U, _, Vt = np.linalg.svd(M)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def pose_error(T_est: np.ndarray, T_true: np.ndarray) -> tuple[float, float]:
    """(translation error in mm, rotation error in degrees) between two poses of the same frame."""
    dt = float(np.linalg.norm(T_est[:3, 3] - T_true[:3, 3])) * 1e3
    cos = (np.trace(T_est[:3, :3].T @ T_true[:3, :3]) - 1.0) / 2.0
    return dt, float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
