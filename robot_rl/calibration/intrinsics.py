"""Camera intrinsics from ChArUco views: OpenCV pinhole model (fx, fy, cx, cy in pixels, pixel centres at
integer coordinates) with k1 k2 p1 p2 k3 distortion, by cv2.calibrateCamera on matched board corners."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import cv2
import numpy as np

from robot_rl.calibration.boards import BoardDetector, BoardSpec, BoardView
from robot_rl.calibration.calibration_errors import CalibrationError


@dataclass
class Intrinsics:
    """OpenCV camera matrix K (3x3, px) and distortion (k1, k2, p1, p2, k3) at width x height px."""

    width: int
    height: int
    K: np.ndarray
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @staticmethod
    def from_values(width, height, fx, fy, cx, cy, dist=None) -> "Intrinsics":
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return Intrinsics(int(width), int(height), K, np.zeros(5) if dist is None else np.asarray(dist, float))


@dataclass
class IntrinsicsResult:
    intrinsics: Intrinsics
    rms_px: float                    # RMS reprojection error over all corners of all used views
    view_rms_px: dict[str, float]    # per used view
    views_used: list[str]
    views_rejected: dict[str, int]   # name -> corners found (fewer than min_corners)
    n_corners: int


def detect_views(images: Iterable[tuple[str, np.ndarray]], board: BoardSpec, progress: bool = False
                 ) -> tuple[list[BoardView], tuple[int, int]]:
    """Detect the board in every (name, image); returns the views and the image size (w, h)."""
    from robot_rl.core.progress import progress_bar

    detector = BoardDetector(board)
    views, size = [], None
    for name, img in progress_bar(images, desc="detect board", unit="img", enabled=progress):
        h, w = img.shape[:2]
        if size is None:
            size = (w, h)
        elif size != (w, h):
            raise CalibrationError(f"image {name}: size {w}x{h} differs from the first image's {size[0]}x{size[1]}")
        views.append(detector.detect(img, name))
    if size is None:
        raise CalibrationError("no images to calibrate from")
    return views, size


def select_views(views: list[BoardView], min_corners: int, min_views: int, what: str
                 ) -> tuple[list[BoardView], dict[str, int]]:
    """Views with >= min_corners corners; an error listing the corners per image when fewer than min_views."""
    good = [v for v in views if len(v) >= min_corners]
    rejected = {v.name: len(v) for v in views if len(v) < min_corners}
    if len(good) < min_views:
        per_image = ", ".join(f"{v.name}: {len(v)}" for v in views[:40]) + (" ..." if len(views) > 40 else "")
        raise CalibrationError(
            f"{what}: only {len(good)} of {len(views)} images show the board with >= {min_corners} corners, "
            f"need {min_views}. Corners found per image: {per_image}. Check board= (squares, dictionary) and "
            f"lighting, or lower min_corners/min_views")
    return good, rejected


def calibrate_intrinsics(views: list[BoardView], image_size: tuple[int, int], min_corners: int = 8,
                         min_views: int = 8, fix_k3: bool = True, zero_tangent: bool = False) -> IntrinsicsResult:
    """Calibrate from board views (see detect_views). Views with fewer than min_corners are left out."""
    good, rejected = select_views(views, min_corners, min_views, "intrinsics")
    flags = (cv2.CALIB_FIX_K3 if fix_k3 else 0) | (cv2.CALIB_ZERO_TANGENT_DIST if zero_tangent else 0)
    obj = [v.object_points.reshape(-1, 1, 3) for v in good]
    img = [v.image_points.reshape(-1, 1, 2) for v in good]
    rms, K, dist, rvecs, tvecs = cv2.calibrateCamera(obj, img, image_size, None, None, flags=flags)
    dist = np.asarray(dist, np.float64).reshape(-1)[:5]
    view_rms = {}
    for v, r, t in zip(good, rvecs, tvecs):
        proj, _ = cv2.projectPoints(v.object_points, r, t, K, dist)
        view_rms[v.name] = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - v.image_points) ** 2, axis=1))))
    return IntrinsicsResult(Intrinsics(image_size[0], image_size[1], K, dist), float(rms), view_rms,
                            [v.name for v in good], rejected, int(sum(len(v) for v in good)))


def reprojection_errors(view: BoardView, T_cam_board: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Per-corner reprojection error (px) of a view for a board pose in the camera frame."""
    from robot_rl.calibration.transforms import to_rvec

    r, t = to_rvec(T_cam_board)
    proj, _ = cv2.projectPoints(view.object_points, r, t, intr.K, intr.dist)
    return np.linalg.norm(proj.reshape(-1, 2) - view.image_points, axis=1)
