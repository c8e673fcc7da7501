"""Where calibration images and robot poses come from: a folder of image files, or an image stream of an
episode store (`store:<path>:<stream>`), and a YAML file of robot poses per image."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from robot_rl.calibration.transforms import from_pos_quat
from robot_rl.core.config import load_yaml
from robot_rl.core.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
STORE_PREFIX = "store:"


def parse_store_source(spec: str) -> tuple[str, str]:
    """'store:<path or URL>:<stream>' -> (path, stream)."""
    body = spec[len(STORE_PREFIX):]
    path, sep, stream = body.rpartition(":")
    if not sep or not path or not stream:
        raise ConfigError(f"images={spec!r}: expected store:<store path>:<image stream>, e.g. "
                          f"store:data/calib.zarr:cam_wrist_rgb")
    return path, stream


def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"images={str(folder)!r}: not a folder (or use store:<path>:<stream>)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"images={str(folder)!r}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    return files


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 image from a file; errors name the file."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ConfigError(f"{path}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def iter_images(spec: str, every: int = 1, episodes=None) -> Iterator[tuple[str, np.ndarray]]:
    """(name, RGB image) from a folder (name = file stem) or a store stream (name = ep<E>_f<row>), every
    n-th image. `episodes`: store episodes to read (default all)."""
    if every < 1:
        raise ConfigError(f"every={every} must be >= 1")
    if spec.startswith(STORE_PREFIX):
        from robot_rl.data.episode_store import EpisodeStore

        path, stream = parse_store_source(spec)
        store = EpisodeStore.open(path)
        if stream not in store.streams:
            raise ConfigError(f"images={spec!r}: store {path} has no stream {stream!r}; streams: {sorted(store.streams)}")
        for e in (range(store.n_episodes) if episodes is None else episodes):
            n = store.episode(int(e)).length(stream)
            for start in range(0, n, 64 * every):
                values, _ = store.read(stream, int(e), start, min(n, start + 64 * every))
                for k in range(0, len(values), every):
                    yield f"ep{int(e)}_f{start + k}", values[k]
        return
    for p in image_files(spec)[::every]:
        yield p.stem, read_image(p)


def load_robot_poses(path: str | Path) -> dict[str, np.ndarray]:
    """Robot poses per image from YAML: `poses: {<image stem>: {position: [x, y, z], quat: [w, x, y, z]}}`
    (the hand flange in the robot base frame, metres). Returns {stem: T_base_hand}."""
    path = Path(path)
    d = load_yaml(path) or {}
    poses = d.get("poses") if isinstance(d, dict) else None
    if not isinstance(poses, dict) or not poses:
        raise ConfigError(f"{path}: expected a mapping `poses: {{<image name>: {{position: [..], quat: [..]}}}}`")
    out = {}
    for name, p in poses.items():
        try:
            pos, quat = np.asarray(p["position"], float), np.asarray(p["quat"], float)
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: poses.{name}: needs position [x, y, z] (m) and quat [w, x, y, z]") from None
        if pos.shape != (3,) or quat.shape != (4,) or not np.isfinite(quat).all() or np.linalg.norm(quat) < 1e-6:
            raise ConfigError(f"{path}: poses.{name}: position must have 3 values and quat 4 (non-zero), got "
                              f"{p['position']}, {p['quat']}")
        out[str(name)] = from_pos_quat(pos, quat / np.linalg.norm(quat))
    return out
