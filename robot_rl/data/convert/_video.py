"""MP4 encode/decode through the ffmpeg binary that imageio-ffmpeg ships (no system ffmpeg needed).

Constant frame rate: frame k of a file has presentation time k / fps exactly, which is what
LeRobot's decoders match query timestamps against (tolerance 1e-4 s).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from robot_rl.core.errors import StoreError


class Mp4Writer:
    """Appends RGB uint8 frames to one constant-rate mp4 (episodes are written back to back)."""

    def __init__(self, path: Path, fps: int, height: int, width: int, vcodec: str = "libx264",
                 pix_fmt: str = "yuv420p", crf: int = 23, gop: int = 2) -> None:
        import imageio_ffmpeg

        if pix_fmt == "yuv420p" and (height % 2 or width % 2):
            raise StoreError(f"{path}: {width}x{height} frames need even sizes for yuv420p; pass pix_fmt=yuv444p")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.shape, self.frames = path, (height, width, 3), 0
        # -g: keyframe every `gop` frames, so seeking to any frame decodes at most gop-1 others (LeRobot uses 2)
        params = ["-crf", str(int(crf)), "-g", str(int(gop))]
        if vcodec == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr unless told errors only
            params = ["-crf", str(int(crf)), "-g", str(int(gop)), "-preset", "8"]
        self._gen = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec=vcodec, pix_fmt_in="rgb24",
                                                pix_fmt_out=pix_fmt, quality=None, macro_block_size=1,
                                                output_params=params, ffmpeg_log_level="error")
        self._gen.send(None)

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames, dtype=np.uint8)
        if frames.ndim == 3:
            frames = frames[..., None]
        if frames.shape[-1] == 1:  # gray: video frames are 3-channel
            frames = np.repeat(frames, 3, axis=-1)
        if frames.shape[1:] != self.shape:
            raise StoreError(f"{self.path}: frame shape {frames.shape[1:]} != {self.shape}")
        for f in frames:
            self._gen.send(np.ascontiguousarray(f).tobytes())
        self.frames += len(frames)

    def close(self) -> None:
        if self._gen is not None:
            gen, self._gen = self._gen, None
            gen.close()


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """Every frame of an mp4 as (H, W, 3) uint8 RGB, in order."""
    import imageio_ffmpeg

    if not path.is_file():
        raise StoreError(f"{path}: video file missing")
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24", output_params=["-fps_mode", "passthrough"])
    try:
        meta = next(gen)
        w, h = meta["size"]
        for raw in gen:
            yield np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)
    finally:
        gen.close()
