"""Render one episode as a video (mp4 or gif): cameras side by side above plots of the low-dim
streams, with a cursor at the current time, so a person can look at what was recorded."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from robot_rl.core.errors import StoreError
from robot_rl.data.episode_store import EpisodeStore

PANEL_HEIGHT = 240


def _plot_strip(store: EpisodeStore, episode: int, streams: list[str], width: int, t0: float, t1: float):
    """Static plot of the low-dim streams (one row each); returns the image and x pixel mapping."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, len(streams))
    fig, axes = plt.subplots(rows, 1, figsize=(width / 100, 1.3 * rows), dpi=100, sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], streams):
        v, t = store.read(name, episode)
        ax.plot(t - t0, v.reshape(len(v), -1), linewidth=0.8)
        ax.set_ylabel(name, fontsize=7, rotation=0, ha="right")
        ax.tick_params(labelsize=6)
        ax.set_xlim(0, max(t1 - t0, 1e-3))
    axes[-1, 0].set_xlabel("time (s)", fontsize=7)
    fig.tight_layout()
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    left = axes[0, 0].get_position().x0 * img.shape[1]
    right = axes[0, 0].get_position().x1 * img.shape[1]
    plt.close(fig)
    return img, (lambda t: int(left + (t - t0) / max(t1 - t0, 1e-3) * (right - left)))


def render_episode(store: EpisodeStore, episode: int, out: str | Path, fps: float | None = None,
                   max_plots: int = 6) -> Path:
    """Write `out` (.mp4 or .gif). Frames follow the first camera's timestamps (or the index stream
    when there is no camera); other cameras show their latest frame at or before that time."""
    import imageio.v2 as imageio

    out = Path(out)
    if out.suffix not in (".mp4", ".gif"):
        raise StoreError(f"{out}: view writes .mp4 or .gif, not {out.suffix!r}")
    cams = [n for n, s in store.streams.items() if s.is_image]
    low = [n for n, s in store.streams.items() if not s.is_image and np.prod(s.shape) <= 16][:max_plots]
    clock = cams[0] if cams else store.index_stream
    times = store.episode(episode).times(clock)
    if len(times) == 0:
        raise StoreError(f"{store.path}: episode {episode} has no samples in {clock}")
    spans = [store.episode(episode).times(n) for n in cams + low]
    t0 = min([times[0]] + [s[0] for s in spans if len(s)])
    t1 = max([times[-1]] + [s[-1] for s in spans if len(s)])
    cam_data = {n: store.read(n, episode) for n in cams}
    width = 0
    tiles_h = PANEL_HEIGHT if cams else 0
    for n in cams:
        h, w = store.streams[n].shape[:2]
        width += int(round(w * PANEL_HEIGHT / h))
    width = max(width, 640)
    strip, x_of = _plot_strip(store, episode, low, width, t0, t1) if low else (None, None)
    rate = fps or store.streams[clock].rate_hz
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio.get_writer(str(out), fps=float(rate)) if out.suffix == ".mp4" else imageio.get_writer(str(out), duration=1.0 / rate, loop=0)
    try:
        for t in times:
            canvas = np.zeros((tiles_h + (strip.shape[0] if strip is not None else 0), width, 3), np.uint8)
            x = 0
            for n in cams:
                v, ts = cam_data[n]
                k = int(np.searchsorted(ts, t, side="right")) - 1
                if k < 0:
                    continue
                frame = v[k]
                if frame.ndim == 2 or frame.shape[-1] == 1:  # depth/gray: normalize for display
                    f = frame.reshape(frame.shape[:2]).astype(np.float32)
                    f = (255 * (f - f.min()) / max(float(f.max() - f.min()), 1e-6)).astype(np.uint8)
                    frame = cv2.applyColorMap(f, cv2.COLORMAP_VIRIDIS)[..., ::-1]
                w = int(round(frame.shape[1] * PANEL_HEIGHT / frame.shape[0]))
                canvas[:PANEL_HEIGHT, x:x + w] = cv2.resize(frame, (w, PANEL_HEIGHT))[:, : width - x]
                x += w
            if strip is not None:
                canvas[tiles_h:, : strip.shape[1]] = strip[:, :width]
                cx = x_of(t)
                cv2.line(canvas, (cx, tiles_h), (cx, canvas.shape[0] - 1), (220, 30, 30), 1)
            cv2.putText(canvas, f"ep {episode}  t={t - t0:6.2f}s", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
            pad_h, pad_w = -canvas.shape[0] % 16, -canvas.shape[1] % 16  # h264 macro blocks
            writer.append_data(np.pad(canvas, ((0, pad_h), (0, pad_w), (0, 0))))
    finally:
        writer.close()
    return out
