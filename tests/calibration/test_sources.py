"""Calibration inputs: image folders and robot-pose files, with errors that name the file and field."""

import cv2
import numpy as np
import pytest

from robot_rl.calibration.sources import iter_images, load_robot_poses, parse_store_source
from robot_rl.core.errors import ConfigError


def test_image_folder_is_read_in_name_order_as_rgb(tmp_path):
    for name, colour in (("b", (0, 0, 255)), ("a", (255, 0, 0))):        # BGR on disk
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.full((4, 6, 3), colour, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    images = list(iter_images(str(tmp_path)))
    assert [n for n, _ in images] == ["a", "b"]
    assert tuple(images[0][1][0, 0]) == (0, 0, 255) and tuple(images[1][1][0, 0]) == (255, 0, 0)


def test_unreadable_image_and_empty_folder_are_named(tmp_path):
    with pytest.raises(ConfigError, match="no image files"):
        list(iter_images(str(tmp_path)))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match="broken.png: not a readable image"):
        list(iter_images(str(tmp_path)))


def test_robot_poses_file(tmp_path):
    path = tmp_path / "poses.yaml"
    path.write_text("poses:\n  img_000: {position: [0.5, 0.0, 0.3], quat: [0, 1, 0, 0]}\n")
    T = load_robot_poses(path)["img_000"]
    np.testing.assert_allclose(T[:3, 3], [0.5, 0.0, 0.3])
    np.testing.assert_allclose(T[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    path.write_text("poses:\n  img_001: {position: [0.5, 0.0], quat: [1, 0, 0, 0]}\n")
    with pytest.raises(ConfigError, match=r"poses.yaml: poses.img_001: position must have 3 values"):
        load_robot_poses(path)


def test_store_source_syntax():
    assert parse_store_source("store:s3://bucket/a.zarr:cam_front_rgb") == ("s3://bucket/a.zarr", "cam_front_rgb")
    with pytest.raises(ConfigError, match="store:<store path>:<image stream>"):
        parse_store_source("store:only_a_path")
