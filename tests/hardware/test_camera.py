"""The camera interface's building blocks: frame hand-over and drop counting."""

import threading

import numpy as np
import pytest

from robot_rl.hardware.camera import CameraFrame, FrameBuffer, FrameDropCounter
from robot_rl.hardware.device_errors import CameraTimeoutError, EndOfStreamError


def frame(n):
    return CameraFrame(color=np.zeros((2, 2, 3), np.uint8), depth=None, t=n, receive_t=n, device_t=n, frame_number=n)


def test_live_buffer_hands_over_the_newest_unread_frame():
    buf = FrameBuffer(capacity=1)
    for n in (1, 2, 3):
        buf.put(frame(n))
    assert buf.get(0.1, "cam").frame_number == 3 and buf.overwritten == 2
    with pytest.raises(CameraTimeoutError, match="cam: no new frame within 0.01 s"):
        buf.get(0.01, "cam")  # never the same frame twice


def test_lossless_buffer_makes_the_producer_wait_and_keeps_order():
    buf = FrameBuffer(capacity=2, lossless=True)
    producer = threading.Thread(target=lambda: [buf.put(frame(n)) for n in range(1, 6)])
    producer.start()
    assert [buf.get(1.0, "file").frame_number for _ in range(5)] == [1, 2, 3, 4, 5]
    producer.join(1.0)
    assert not producer.is_alive() and buf.overwritten == 0


def test_end_of_stream_comes_after_the_frames_before_it():
    buf = FrameBuffer(capacity=4, lossless=True)
    buf.put(frame(1))
    buf.fail(EndOfStreamError("file: end of recording"))
    assert buf.get(0.1, "file").frame_number == 1
    with pytest.raises(EndOfStreamError):
        buf.get(0.1, "file")


def test_closing_releases_a_blocked_producer():
    buf = FrameBuffer(capacity=1, lossless=True)
    buf.put(frame(1))
    producer = threading.Thread(target=buf.put, args=(frame(2),))
    producer.start()
    buf.close()
    producer.join(1.0)
    assert not producer.is_alive()


def test_drops_are_gaps_in_the_frame_counter():
    counter = FrameDropCounter()
    assert [counter.update(n) for n in (5, 6, 9)] == [0, 0, 2]
    assert counter.dropped == 2 and counter.drop_rate == pytest.approx(2 / 5)


def test_frame_drop_counter_restarts_when_the_counter_goes_back():
    counter = FrameDropCounter()
    for n in (5, 6, 9, 1, 2):
        counter.update(n)
    assert (counter.dropped, counter.restarts) == (2, 1)
