"""Live view of a recording session: camera frames and key signals, composed off the control thread.

`update(frames, signals)` only keeps the latest inputs (copies of the frames) and returns; a worker thread
composes them with OpenCV at most `fps` times a second and shows the result:

    http    MJPEG over HTTP (stdlib http.server in a thread), bound to 127.0.0.1 unless told otherwise:
            open http://127.0.0.1:<port>/ in a browser (from another machine: ssh -L <port>:127.0.0.1:<port>
            robot-pc). /stream is multipart/x-mixed-replace JPEG, /frame.jpg the latest frame,
            /signals.json the latest signals.
    window  cv2.imshow on the machine's display (needs a display and an OpenCV build with a GUI).
    off     nothing (tests, CI).

A slow composer or viewer never stalls the caller: frames it did not get to are skipped, only the
latest is shown.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping

import numpy as np

from robot_rl.core.config import to_plain
from robot_rl.core.errors import ConfigError

log = logging.getLogger(__name__)

MODES = ("off", "http", "window")
STATE_COLOURS = {"recording": (40, 40, 210), "resetting": (0, 150, 230), "idle": (90, 90, 90)}  # BGR
TILE_HEIGHT = 240
PANEL_MIN_WIDTH = 640
COLUMN_WIDTH = 320
LINE_HEIGHT = 22
BANNER_HEIGHT = 30


def view_mode(value) -> str:
    """The mode from a config value (YAML reads a bare `off` as False)."""
    mode = "off" if value in (None, False) else str(value).lower()
    if mode not in MODES:
        raise ConfigError(f"live_view={value!r} is not one of {MODES}")
    return mode


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "on" if value else "off"
    if isinstance(value, (float, np.floating)):
        return f"{value:.3f}"
    if isinstance(value, (np.ndarray, list, tuple)):
        return "[" + " ".join(_fmt(v) for v in np.asarray(value).reshape(-1).tolist()) + "]"
    return str(value)


def _tile(name: str, frame: np.ndarray, height: int) -> np.ndarray:
    """A camera frame (RGB uint8, or one channel: grey or depth) as a BGR tile `height` pixels high."""
    import cv2

    img = np.asarray(frame)
    if img.ndim == 2 or img.shape[-1] == 1:
        img = img.reshape(img.shape[:2])
        if img.dtype != np.uint8:   # depth: scale to its own range
            top = float(img.max()) or 1.0
            img = (img.astype(np.float32) * (255.0 / top)).astype(np.uint8)
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    else:
        img = cv2.cvtColor(img.astype(np.uint8, copy=False), cv2.COLOR_RGB2BGR)
    width = max(1, round(img.shape[1] * height / img.shape[0]))
    img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    cv2.putText(img, name, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)   # outline
    cv2.putText(img, name, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _fit(text: str, width: int, scale: float) -> str:
    """`text`, cut with '..' to fit `width` pixels."""
    import cv2

    while len(text) > 3 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width:
        text = text[:-3] + ".."
    return text


def compose_view(frames: Mapping[str, np.ndarray], signals: Mapping[str, Any],
                 tile_height: int = TILE_HEIGHT) -> np.ndarray:
    """Camera tiles side by side above a panel: a banner coloured by signals['state'] and one
    `name: value` line per other signal. Returns a BGR uint8 image (deterministic in its inputs)."""
    import cv2

    tiles = [_tile(n, f, tile_height) for n, f in frames.items()]
    row = np.hstack(tiles) if tiles else np.zeros((0, 0, 3), np.uint8)
    width = max(row.shape[1], PANEL_MIN_WIDTH)
    lines = [_fit(f"{k}: {_fmt(v)}", COLUMN_WIDTH - 14, 0.45) for k, v in signals.items() if k != "state"]
    cols = max(1, width // COLUMN_WIDTH)
    rows = math.ceil(len(lines) / cols)
    panel = np.full((BANNER_HEIGHT + rows * LINE_HEIGHT + 6, width, 3), 24, np.uint8)
    state = str(signals.get("state", ""))
    panel[:BANNER_HEIGHT] = STATE_COLOURS.get(state, (60, 60, 60))
    cv2.putText(panel, state.upper() or "-", (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.65, (255, 255, 255), 2, cv2.LINE_AA)
    for i, text in enumerate(lines):
        x, y = (i // rows) * COLUMN_WIDTH + 8, BANNER_HEIGHT + (i % rows + 1) * LINE_HEIGHT - 5
        cv2.putText(panel, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
    if not tiles:
        return panel
    if row.shape[1] < width:
        row = np.hstack([row, np.zeros((row.shape[0], width - row.shape[1], 3), np.uint8)])
    return np.vstack([row, panel])


def _check_window_support() -> None:
    import cv2

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ConfigError("live_view=window needs a display and DISPLAY is not set (a headless robot PC?); use "
                          "live_view=http and open http://127.0.0.1:<live_view_port>/ (ssh -L from your machine)")
    gui = [line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
           if line.strip().startswith("GUI:")]
    if gui and gui[0].upper() == "NONE":
        raise ConfigError(f"live_view=window: this OpenCV {cv2.__version__} build has no GUI (opencv-python-headless); "
                          "install opencv-python, or use live_view=http")


class LiveView:
    """See the module docstring. `url` is the page to open (http mode); `composed` counts composed frames."""

    def __init__(self, mode: str = "http", host: str = "127.0.0.1", port: int = 8765, fps: float = 10.0,
                 quality: int = 80, title: str = "robot_rl", compose: Callable[..., np.ndarray] = compose_view) -> None:
        self.mode = view_mode(mode)
        if fps <= 0:
            raise ConfigError(f"live_view fps={fps} must be > 0")
        self.period, self.quality, self.title, self._compose = 1.0 / fps, int(quality), title, compose
        self._lock = threading.Lock()
        self._new = threading.Event()
        self._stop = threading.Event()
        self._frame_ready = threading.Condition()
        self._frames: dict[str, np.ndarray] = {}
        self._signals: dict[str, Any] = {}
        self._jpeg: bytes | None = None
        self._seq = 0
        self.composed = 0
        self.url = ""
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        if self.mode == "off":
            return
        if self.mode == "window":
            _check_window_support()
        else:
            self._serve(host, int(port))
        started = threading.Event()
        self._start_error: BaseException | None = None
        worker = threading.Thread(target=self._work, args=(started,), name="live-view", daemon=True)
        worker.start()
        self._threads.append(worker)
        started.wait(10.0)
        if self._start_error is not None:
            self.close()
            raise ConfigError(f"live_view={self.mode}: {self._start_error}") from self._start_error

    # -- the caller's side --------------------------------------------------------------------
    def update(self, frames: Mapping[str, np.ndarray], signals: Mapping[str, Any]) -> None:
        """Keep these as the latest inputs (frames are copied) and return at once."""
        if self.mode == "off":
            return
        frames = {n: np.array(f, copy=True) for n, f in frames.items()}
        with self._lock:
            self._frames, self._signals = frames, dict(signals)
        self._new.set()

    def close(self) -> None:
        self._stop.set()
        self._new.set()
        with self._frame_ready:
            self._frame_ready.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for th in self._threads:
            th.join(5.0)
        self._threads = []

    def __enter__(self) -> "LiveView":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- composing ----------------------------------------------------------------------------
    def _work(self, started: threading.Event) -> None:
        import cv2

        if self.mode == "window":
            try:
                cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE)
            except cv2.error as e:
                self._start_error = e
                started.set()
                return
        started.set()
        next_t = time.monotonic()
        while not self._stop.is_set():
            if not self._new.wait(0.05):
                if self.mode == "window":
                    cv2.waitKey(1)   # keeps the window responsive between frames
                continue
            self._stop.wait(max(0.0, next_t - time.monotonic()))   # at most fps; inputs keep updating meanwhile
            if self._stop.is_set():
                break
            self._new.clear()
            next_t = time.monotonic() + self.period
            with self._lock:
                frames, signals = self._frames, self._signals
            try:
                img = self._compose(frames, signals)
                if self.mode == "window":
                    cv2.imshow(self.title, img)
                    cv2.waitKey(1)
                else:
                    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                    with self._frame_ready:
                        self._jpeg, self._seq = buf.tobytes(), self._seq + 1
                        self._frame_ready.notify_all()
                self.composed += 1
            except Exception:   # a bad frame must not end the view (nor the session)
                log.warning("live view: composing a frame failed", exc_info=True)
        if self.mode == "window":
            cv2.destroyWindow(self.title)

    def next_jpeg(self, after: int, timeout_s: float) -> tuple[bytes | None, int]:
        """The latest JPEG once it is newer than sequence number `after` (None on timeout or close)."""
        with self._frame_ready:
            self._frame_ready.wait_for(lambda: self._seq > after or self._stop.is_set(), timeout_s)
            if self._seq > after and not self._stop.is_set():
                return self._jpeg, self._seq
            return None, after

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def signals(self) -> dict:
        with self._lock:
            return dict(self._signals)

    # -- serving ------------------------------------------------------------------------------
    def _serve(self, host: str, port: int) -> None:
        view = self

        class Handler(_Handler):
            pass

        Handler.view = view
        try:
            server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise ConfigError(f"live_view=http: cannot listen on {host}:{port} ({e}); "
                              "choose another live_view_port") from e
        server.daemon_threads = True
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("live view on %s:%d is reachable from the network", host, port)
        self._server = server
        self.url = f"http://{host}:{server.server_address[1]}/"
        th = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="live-view-http",
                              daemon=True)
        th.start()
        self._threads.append(th)

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server is not None else 0


PAGE = b"""<!doctype html><html><head><title>robot_rl live view</title></head>
<body style="margin:0;background:#111"><img src="/stream" style="max-width:100%"></body></html>"""


class _Handler(BaseHTTPRequestHandler):
    view: LiveView

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        try:
            if path == "/":
                self._send(PAGE, "text/html")
            elif path == "/frame.jpg":
                jpeg, _ = self.view.next_jpeg(0, 2.0)
                if jpeg is None:
                    self.send_error(503, "no frame yet")
                else:
                    self._send(jpeg, "image/jpeg")
            elif path == "/signals.json":
                self._send(json.dumps(to_plain(self.view.signals()), default=str).encode(), "application/json")
            elif path == "/stream":
                self._stream()
            else:
                self.send_error(404, "try / , /stream, /frame.jpg or /signals.json")
        except (BrokenPipeError, ConnectionResetError):
            pass   # the viewer went away

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        seq = 0
        while not self.view.closed:
            jpeg, seq = self.view.next_jpeg(seq, 1.0)
            if jpeg is None:
                continue
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                             + jpeg + b"\r\n")
            self.wfile.flush()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        log.debug("live view: " + format, *args)
