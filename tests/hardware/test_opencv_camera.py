"""OpenCVCamera through cv2.VideoCapture on a small video file written with cv2.VideoWriter."""

import cv2
import numpy as np
import pytest

from robot_rl.hardware.camera import FrameDropCounter
from robot_rl.hardware.device_errors import CameraError, EndOfStreamError
from robot_rl.hardware.opencv_camera import OpenCVCamera, frames_elapsed

N, FPS = 12, 30.0


@pytest.fixture
def video(tmp_path):
    """An MJPG .avi whose frame i is a flat BGR colour (0, 0, 20 i): red rising in RGB."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    assert writer.isOpened()
    for i in range(N):
        writer.write(np.full((48, 64, 3), (0, 0, 20 * i), np.uint8))
    writer.release()
    return str(path)


def test_file_frames_arrive_in_order_as_rgb_with_presentation_times(video):
    with OpenCVCamera(video) as cam:
        frames = []
        with pytest.raises(EndOfStreamError, match="clip.avi: end of recording"):
            while True:
                frames.append(cam.read(timeout_s=2.0))
    assert [f.frame_number for f in frames] == list(range(1, N + 1))
    for i, f in enumerate(frames):
        assert f.color.shape == (48, 64, 3) and f.depth is None
        assert f.color[..., 0].mean() == pytest.approx(20 * i, abs=3)  # red channel first: RGB
        assert f.color[..., 2].mean() < 3
    assert [f.device_t for f in frames] == pytest.approx([i / FPS for i in range(N)], abs=1e-3)
    assert all(a.receive_t <= b.receive_t for a, b in zip(frames, frames[1:]))
    assert cam.stats["dropped"] == 0


def test_missing_device_is_a_clear_error(tmp_path):
    with pytest.raises(CameraError, match="cannot open"):
        OpenCVCamera(str(tmp_path / "nope.avi")).connect()


def test_gaps_in_device_timestamps_count_as_dropped_frames():
    counter, number = FrameDropCounter(), 0
    for dt in (1 / 30, 1 / 30, 3 / 30, 1 / 30):  # one step spans three periods: two frames lost
        number += frames_elapsed(dt, 30.0)
        counter.update(number)
    assert counter.dropped == 2 and counter.received == 4
