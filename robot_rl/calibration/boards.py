"""ChArUco boards: definitions (calibration/boards/<name>.yaml), images to print or render, detection.

Board frame (OpenCV's): origin at the board's top-left chessboard corner as printed, x along the
columns (right), y along the rows (down), z into the board; metres.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from robot_rl.calibration.paths import calibration_root
from robot_rl.core.config import dataclass_from_dict, load_yaml
from robot_rl.core.errors import ConfigError


@dataclass(frozen=True)
class BoardSpec:
    """squares_x columns by squares_y rows of chessboard squares (square_length, m) with ArUco markers
    (marker_length, m) from `dictionary` (a cv2.aruco DICT_* name) in the white squares."""

    name: str
    squares_x: int
    squares_y: int
    square_length: float
    marker_length: float
    dictionary: str = "DICT_5X5_100"
    legacy_pattern: bool = False   # boards printed with OpenCV < 4.6 and an even number of rows
    description: str = ""

    def __post_init__(self) -> None:
        where = f"board {self.name!r}"
        if self.squares_x < 2 or self.squares_y < 2:
            raise ConfigError(f"{where}: squares_x={self.squares_x}, squares_y={self.squares_y} must be >= 2")
        if not 0 < self.marker_length < self.square_length:
            raise ConfigError(f"{where}: need 0 < marker_length ({self.marker_length}) < square_length "
                              f"({self.square_length}), both in metres")
        if not hasattr(cv2.aruco, self.dictionary):
            raise ConfigError(f"{where}: dictionary={self.dictionary!r} is not a cv2.aruco DICT_* name")

    @property
    def size_m(self) -> tuple[float, float]:
        return self.squares_x * self.square_length, self.squares_y * self.square_length

    @property
    def n_corners(self) -> int:
        return (self.squares_x - 1) * (self.squares_y - 1)

    def cv_board(self) -> cv2.aruco.CharucoBoard:
        d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        board = cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_length, self.marker_length, d)
        board.setLegacyPattern(self.legacy_pattern)
        return board

    def image(self, px_per_square: int = 200, margin_squares: float = 0.5) -> np.ndarray:
        """Grayscale uint8 image of the board with a white margin of `margin_squares` squares all round."""
        m = int(round(margin_squares * px_per_square))
        w, h = self.squares_x * px_per_square, self.squares_y * px_per_square
        img = np.full((h + 2 * m, w + 2 * m), 255, np.uint8)
        img[m:m + h, m:m + w] = self.cv_board().generateImage((w, h), marginSize=0, borderBits=1)
        return img


def load_board(name: str | Path, root: str | Path | None = None) -> BoardSpec:
    """A board by name (calibration/boards/<name>.yaml) or by path to such a YAML file."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = calibration_root(root) / "boards" / f"{name}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in path.parent.glob("*.yaml"))
            raise ConfigError(f"board={name!r}: no {path}; known boards: {known}")
    d = load_yaml(path) or {}
    d.setdefault("name", path.stem)
    try:
        return dataclass_from_dict(BoardSpec, d, str(path))
    except TypeError as e:
        raise ConfigError(f"{path}: {e}") from None


@dataclass
class BoardView:
    """Board corners found in one image: ids (N,), board-frame points (N, 3) m, image points (N, 2) px."""

    name: str
    ids: np.ndarray
    object_points: np.ndarray
    image_points: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


class BoardDetector:
    """Finds ChArUco corners (sub-pixel) in RGB/BGR/gray images."""

    def __init__(self, board: BoardSpec) -> None:
        self.board = board
        self._cv_board = board.cv_board()
        self._detector = cv2.aruco.CharucoDetector(self._cv_board)

    def detect(self, image: np.ndarray, name: str = "") -> BoardView:
        """All corners found (possibly none). Colour order does not matter for detection."""
        gray = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        corners, ids, _, _ = self._detector.detectBoard(gray)
        if ids is None or len(ids) == 0:
            return BoardView(name, np.zeros(0, np.int32), np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32))
        obj, img = self._cv_board.matchImagePoints(corners, ids)
        return BoardView(name, ids.reshape(-1).astype(np.int32), obj.reshape(-1, 3).astype(np.float32),
                         img.reshape(-1, 2).astype(np.float32))
