"""Where calibration data lives: `calibration/` beside `configs/` in the checkout (board definitions in
`boards/`, results in `<rig>/<calibration_id>/`), unless a directory is given explicitly."""

from __future__ import annotations

from pathlib import Path

from robot_rl.core.config import config_dir


def calibration_root(root: str | Path | None = None) -> Path:
    return Path(root) if root else config_dir().parent / "calibration"
