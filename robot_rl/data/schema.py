"""Stream and episode metadata of the episode store.

Every stream keeps its own timestamps (seconds; host monotonic clock on a robot, simulation time in
the twin) so streams of different rates are aligned at read time, never at write time.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from robot_rl.core.errors import StoreError

STREAM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
CODECS = ("zstd", "jpeg", "png")
INTERPOLATIONS = ("linear", "hold", "slerp")
SOURCES = ("teleop", "policy", "intervention", "scripted", "recovered", "imported")


@dataclass(frozen=True)
class StreamSpec:
    """One recorded stream.

    name: array name in the store; dtype/shape: of one sample; rate_hz: nominal rate;
    units/frame: physical meaning (e.g. "m", "base"); codec: zstd (lossless, any dtype),
    jpeg (uint8 HxWx3 images, lossy) or png (uint8/uint16 images, lossless);
    latency_s: device latency (sample time = receive time - latency); interp: how to align it
    (linear for continuous signals, slerp for (w, x, y, z) quaternions, hold for images/events).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    rate_hz: float
    units: str = ""
    frame: str = ""
    codec: str = "zstd"
    latency_s: float = 0.0
    interp: str = "linear"
    description: str = ""

    def __post_init__(self) -> None:
        if not STREAM_NAME.match(self.name):
            raise StoreError(f"stream name {self.name!r} must match {STREAM_NAME.pattern}")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            raise StoreError(f"stream {self.name}: unknown dtype {self.dtype!r}") from None
        if dtype.kind not in "biuf":
            raise StoreError(f"stream {self.name}: dtype {dtype} is not numeric or bool")
        object.__setattr__(self, "dtype", dtype.name)
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if any(s <= 0 for s in self.shape):
            raise StoreError(f"stream {self.name}: shape {self.shape} has a non-positive dimension")
        if not (self.rate_hz > 0 and math.isfinite(self.rate_hz)):
            raise StoreError(f"stream {self.name}: rate_hz must be a positive number, got {self.rate_hz}")
        if self.codec not in CODECS:
            raise StoreError(f"stream {self.name}: codec {self.codec!r} is not one of {CODECS}")
        if self.codec == "jpeg" and (dtype != np.uint8 or len(self.shape) != 3 or self.shape[2] not in (1, 3)):
            raise StoreError(f"stream {self.name}: jpeg needs uint8 (H, W, 1|3) samples, got {dtype} {self.shape}")
        if self.codec == "png" and (dtype not in (np.uint8, np.uint16) or len(self.shape) not in (2, 3)):
            raise StoreError(f"stream {self.name}: png needs uint8/uint16 (H, W[, C]) samples, got {dtype} {self.shape}")
        if self.interp not in INTERPOLATIONS:
            raise StoreError(f"stream {self.name}: interp {self.interp!r} is not one of {INTERPOLATIONS}")
        if self.interp == "slerp" and self.shape != (4,):
            raise StoreError(f"stream {self.name}: slerp needs (4,) quaternions, got shape {self.shape}")

    @property
    def is_image(self) -> bool:
        return self.codec in ("jpeg", "png") or len(self.shape) >= 2

    @property
    def sample_nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"shape": list(self.shape)}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "StreamSpec":
        try:
            return StreamSpec(**dict(d))
        except TypeError as e:
            raise StoreError(f"stream spec {dict(d)}: {e}") from None


@dataclass
class EpisodeMeta:
    """Per-episode metadata. Times: `start_time` is wall-clock ISO 8601 (for people),
    `duration_s` is the span of recorded timestamps. `success` is None when unknown."""

    task: str = ""
    rig: str = ""
    source: str = "teleop"
    success: bool | None = None
    reward_labels: list = field(default_factory=list)
    calibration_id: str = ""
    start_time: str = ""
    duration_s: float = 0.0
    dropped: dict = field(default_factory=dict)
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise StoreError(f"episode source {self.source!r} is not one of {SOURCES}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "EpisodeMeta":
        known = EpisodeMeta.__dataclass_fields__
        extra = {k: v for k, v in d.items() if k not in known}
        meta = EpisodeMeta(**{k: v for k, v in d.items() if k in known})
        meta.extra.update(extra)
        return meta
