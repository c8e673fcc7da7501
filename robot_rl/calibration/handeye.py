"""Hand-eye calibration: the camera's pose on the hand (eye-in-hand) or in the robot base (eye-to-hand).

Every view i gives the robot pose T_base_hand_i (the hand flange, exactly as the robot reports it) and the
board corners seen by the camera. Both set-ups are one equation, T_cam_board_i = inv(X) @ A_i @ Y:

    eye_in_hand: X = T_hand_cam, A_i = inv(T_base_hand_i), Y = T_base_board (board fixed in the cell)
    eye_to_hand: X = T_base_cam, A_i = T_base_hand_i,      Y = T_hand_board (board held by the hand)

(the eye-to-hand case is the eye-in-hand one with the robot poses inverted). Pairs of views give
AX = XB with A = A_i inv(A_j), B = C_i inv(C_j), C_i = T_cam_board_i from solvePnP; the initial X is
Park & Martin's closed form (or OpenCV's calibrateHandEye where the cv2 build exposes it), Y the average
of inv(A_i) X C_i. The refinement then minimises the board-corner reprojection error over all views and
both unknowns (12 parameters, scipy's Levenberg-Marquardt) with the intrinsics held fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import cv2
import numpy as np
from scipy.optimize import least_squares

from robot_rl.calibration.boards import BoardView
from robot_rl.calibration.calibration_errors import CalibrationError
from robot_rl.calibration.intrinsics import Intrinsics, reprojection_errors
from robot_rl.calibration.transforms import exp_se3, from_rvec, invert, make_T, project_rotation

MODES = ("eye_in_hand", "eye_to_hand")
OPENCV_METHODS = {"opencv_tsai": "CALIB_HAND_EYE_TSAI", "opencv_park": "CALIB_HAND_EYE_PARK",
                  "opencv_horaud": "CALIB_HAND_EYE_HORAUD", "opencv_andreff": "CALIB_HAND_EYE_ANDREFF",
                  "opencv_daniilidis": "CALIB_HAND_EYE_DANIILIDIS"}
METHODS = ("park_martin", *OPENCV_METHODS)


@dataclass
class HandEyeView:
    """One calibration view: the robot's hand pose in the base frame and the board corners seen."""

    T_base_hand: np.ndarray
    board: BoardView

    @property
    def name(self) -> str:
        return self.board.name


@dataclass
class HandEyeResult:
    mode: str
    T_parent_cam: np.ndarray        # T_hand_cam (eye_in_hand) or T_base_cam (eye_to_hand)
    T_parent_board: np.ndarray      # T_base_board (eye_in_hand) or T_hand_board (eye_to_hand)
    rms_px: float                   # reprojection RMS over all corners after refinement
    initial_rms_px: float           # ... of the closed-form solution
    view_rms_px: dict[str, float]
    views_used: list[str]
    views_rejected: dict[str, int] = field(default_factory=dict)
    method: str = "park_martin"
    max_rotation_deg: float = 0.0   # largest relative rotation between two views (motion diversity)

    @property
    def parent(self) -> str:
        return "hand" if self.mode == "eye_in_hand" else "base"


def board_pose(view: BoardView, intr: Intrinsics) -> np.ndarray:
    """T_cam_board of one view by PnP (IPPE for the planar board, then LM refinement)."""
    obj, img = view.object_points.astype(np.float64), view.image_points.astype(np.float64)
    ok, rvec, tvec = cv2.solvePnP(obj, img, intr.K, intr.dist, flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        raise CalibrationError(f"image {view.name}: solvePnP found no board pose from {len(view)} corners")
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, intr.K, intr.dist, rvec, tvec)
    return from_rvec(rvec, tvec)


def park_martin(A: list[np.ndarray], B: list[np.ndarray]) -> np.ndarray:
    """X solving A_k X = X B_k in least squares (Park & Martin 1994): the rotation from the log maps of
    the motion rotations, then the translation by linear least squares."""
    alpha = np.array([cv2.Rodrigues(np.ascontiguousarray(a[:3, :3]))[0].reshape(3) for a in A])
    beta = np.array([cv2.Rodrigues(np.ascontiguousarray(b[:3, :3]))[0].reshape(3) for b in B])
    M = beta.T @ alpha                      # sum_k beta_k alpha_k^T
    w, V = np.linalg.eigh(M.T @ M)
    if w.min() <= 1e-12 * max(w.max(), 1e-300):
        raise CalibrationError("hand-eye: the robot motions rotate about fewer than two distinct axes; "
                               "rotate the hand about at least two non-parallel axes between views")
    R = V @ np.diag(w ** -0.5) @ V.T @ M.T   # (M^T M)^(-1/2) M^T
    R = project_rotation(R)
    C = np.concatenate([a[:3, :3] - np.eye(3) for a in A])
    d = np.concatenate([R @ b[:3, 3] - a[:3, 3] for a, b in zip(A, B)])
    t, *_ = np.linalg.lstsq(C, d, rcond=None)
    return make_T(R, t)


def _opencv_hand_eye(A: list[np.ndarray], C: list[np.ndarray], method: str) -> np.ndarray:
    if not hasattr(cv2, "calibrateHandEye"):
        raise CalibrationError(
            f"handeye.method={method!r}: this OpenCV build ({cv2.__version__}) does not expose "
            f"cv2.calibrateHandEye to Python (opencv/opencv#29565); use handeye.method=park_martin")
    G = [invert(a) for a in A]   # "gripper2base" of OpenCV's eye-in-hand form
    R, t = cv2.calibrateHandEye([g[:3, :3] for g in G], [g[:3, 3] for g in G], [c[:3, :3] for c in C],
                                [c[:3, 3] for c in C], method=getattr(cv2, OPENCV_METHODS[method]))
    return make_T(R, t)


def _robot_terms(views: list[HandEyeView], mode: str) -> list[np.ndarray]:
    return [invert(v.T_base_hand) if mode == "eye_in_hand" else v.T_base_hand for v in views]


def _rms(errors: list[np.ndarray]) -> float:
    e = np.concatenate(errors)
    return float(np.sqrt(np.mean(e ** 2)))


def calibrate_handeye(views: list[HandEyeView], intr: Intrinsics, mode: str = "eye_in_hand",
                      method: str = "park_martin", min_corners: int = 8, min_views: int = 6,
                      refine: bool = True) -> HandEyeResult:
    """Solve for the camera pose (see the module docstring) from views with >= min_corners corners."""
    if mode not in MODES:
        raise CalibrationError(f"handeye.mode={mode!r}: expected one of {MODES}")
    if method not in METHODS:
        raise CalibrationError(f"handeye.method={method!r}: expected one of {METHODS}")
    good = [v for v in views if len(v.board) >= min_corners]
    rejected = {v.name: len(v.board) for v in views if len(v.board) < min_corners}
    if len(good) < min_views:
        per_image = ", ".join(f"{v.name}: {len(v.board)}" for v in views[:40])
        raise CalibrationError(f"handeye: only {len(good)} of {len(views)} views show the board with >= {min_corners} "
                               f"corners, need {min_views}. Corners found per image: {per_image}")
    A = _robot_terms(good, mode)
    C = [board_pose(v.board, intr) for v in good]
    pairs = list(combinations(range(len(good)), 2))
    A_rel = [A[i] @ invert(A[j]) for i, j in pairs]
    B_rel = [C[i] @ invert(C[j]) for i, j in pairs]
    max_rot = max(np.degrees(np.linalg.norm(cv2.Rodrigues(np.ascontiguousarray(a[:3, :3]))[0])) for a in A_rel)
    X = park_martin(A_rel, B_rel) if method == "park_martin" else _opencv_hand_eye(A, C, method)
    Ys = [invert(a) @ X @ c for a, c in zip(A, C)]
    Y = make_T(project_rotation(sum(y[:3, :3] for y in Ys)), np.mean([y[:3, 3] for y in Ys], axis=0))

    def errors(X_, Y_) -> list[np.ndarray]:
        Xi = invert(X_)
        return [reprojection_errors(v.board, Xi @ a @ Y_, intr) for v, a in zip(good, A)]

    initial = _rms(errors(X, Y))
    if refine:
        def residual(p: np.ndarray) -> np.ndarray:
            Xi, Yp = invert(X @ exp_se3(p[:6])), Y @ exp_se3(p[6:])
            out = []
            for v, a in zip(good, A):
                rvec, tvec = cv2.Rodrigues(np.ascontiguousarray((Xi @ a @ Yp)[:3, :3]))[0], (Xi @ a @ Yp)[:3, 3]
                proj, _ = cv2.projectPoints(v.board.object_points, rvec, tvec, intr.K, intr.dist)
                out.append((proj.reshape(-1, 2) - v.board.image_points).reshape(-1))
            return np.concatenate(out)

        sol = least_squares(residual, np.zeros(12), method="lm")
        X, Y = X @ exp_se3(sol.x[:6]), Y @ exp_se3(sol.x[6:])
    errs = errors(X, Y)
    return HandEyeResult(mode, X, Y, _rms(errs), initial,
                         {v.name: float(np.sqrt(np.mean(e ** 2))) for v, e in zip(good, errs)},
                         [v.name for v in good], rejected, method, float(max_rot))
