"""The live view: MJPEG over HTTP on localhost following the latest signals, never stalling its caller."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest

from robot_rl.core.errors import ConfigError
from robot_rl.runtime.live_view import LiveView, compose_view, view_mode

FRAMES = {"cam_front_rgb": np.dstack([np.full((96, 128), 200, np.uint8), np.zeros((96, 128, 2), np.uint8)])}
IDLE = {"state": "idle", "elapsed_s": 0.0, "deadman": False, "ee_pos": np.array([0.4, 0.0, 0.3])}
RECORDING = {"state": "recording", "elapsed_s": 2.5, "deadman": True, "ee_pos": np.array([0.45, 0.0, 0.3])}


def read_part(stream) -> np.ndarray:
    """One part of a multipart/x-mixed-replace response, decoded."""
    assert stream.readline() == b"--frame\r\n"
    headers = {}
    while (line := stream.readline()) != b"\r\n":
        name, value = line.decode().split(":", 1)
        headers[name.strip().lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    jpeg = stream.read(int(headers["content-length"]))
    assert stream.readline() == b"\r\n"
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_http_view_streams_frames_that_follow_the_signals():
    with LiveView("http", port=0, fps=50) as view:
        assert view.url == f"http://127.0.0.1:{view.port}/" and view.port > 0
        view.update(FRAMES, IDLE)
        with urllib.request.urlopen(view.url + "stream", timeout=5) as stream:
            assert stream.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
            first = read_part(stream)
            assert first.shape == compose_view(FRAMES, IDLE).shape == (240 + 80, 640, 3)   # tile + 2-row panel
            assert first[:240, :320, 2].mean() > 150 and first[:240, :320, :2].mean() < 40   # the red camera tile
            view.update(FRAMES, RECORDING)
            deadline = time.monotonic() + 5
            while np.abs(first.astype(int) - (img := read_part(stream)).astype(int)).mean() < 1:
                assert time.monotonic() < deadline, "the streamed frame never followed the new signals"
        assert np.abs(img.astype(int) - compose_view(FRAMES, RECORDING).astype(int)).mean() < 3   # JPEG-close
        signals = json.loads(urllib.request.urlopen(view.url + "signals.json", timeout=5).read())
        assert signals["state"] == "recording" and signals["ee_pos"] == [0.45, 0.0, 0.3]


def test_updates_never_wait_for_a_slow_composer_and_only_the_latest_is_shown():
    release, composed = threading.Event(), []

    def slow_compose(frames, signals):
        release.wait(10)
        composed.append(signals["i"])
        return compose_view(frames, signals)

    with LiveView("http", port=0, fps=100, compose=slow_compose) as view:
        t0 = time.monotonic()
        for i in range(200):
            view.update(FRAMES, {"state": "recording", "i": i})
        assert time.monotonic() - t0 < 1.0      # 200 frames queued behind a stalled composer would take 10 s
        release.set()
        deadline = time.monotonic() + 5
        while not composed or composed[-1] != 199:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert len(composed) <= 3                   # skipped to the latest, not a backlog


def test_window_without_a_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ConfigError, match="needs a display and DISPLAY is not set.*live_view=http"):
        LiveView("window")


def test_a_busy_port_and_an_unknown_mode_are_named():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            LiveView("http", port=port)
    with pytest.raises(ConfigError, match="live_view='tv'"):
        view_mode("tv")
    assert view_mode(False) == view_mode("off") == "off"   # YAML reads a bare off as False
