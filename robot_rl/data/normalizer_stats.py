"""Normalizer statistics streamed over an episode store, and the affine contract built from them.

For every low-dim observation feature and the action of a PolicySpec: per-dimension min, max, mean
and std (population), computed block by block (Welford/Chan merge in float64), so a store never has
to fit in memory. A feature read from several '+'-joined streams gets the concatenation of the
streams' statistics (statistics are per dimension). Image features get scale 1/255, offset 0.

Affine contract (the model sees x_norm = x * scale + offset):
    limits    [min, max] -> [-1, 1]; a dimension with range < RANGE_EPS maps to 0
    gaussian  (x - mean) / max(std, RANGE_EPS)
    none      identity
    image     uint8 -> x / 255
Checkpoints hold the flat dict {"<key>.scale", "<key>.offset", "<key>.min", "<key>.max",
"<key>.mean", "<key>.std"} of float32 arrays (to_flat / from_flat).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from robot_rl.core.progress import progress_bar

from robot_rl.core.errors import ConfigError
from robot_rl.core.spec import PolicySpec
from robot_rl.data.sampler import feature_streams, select_episodes
from robot_rl.data.episode_store import EpisodeStore

RANGE_EPS = 1e-4  # same threshold as robot_rl.policies.normalizer: below it a dimension is constant
STAT_NAMES = ("min", "max", "mean", "std")
AFFINE_NAMES = ("scale", "offset")


@dataclass
class RunningStats:
    """Per-dimension count, min, max, mean and sum of squared deviations (m2) of (n, D) batches."""

    dim: int
    count: int = 0
    mean: np.ndarray = field(default=None)
    m2: np.ndarray = field(default=None)
    min: np.ndarray = field(default=None)
    max: np.ndarray = field(default=None)

    def __post_init__(self) -> None:
        self.mean = np.zeros(self.dim) if self.mean is None else self.mean
        self.m2 = np.zeros(self.dim) if self.m2 is None else self.m2
        self.min = np.full(self.dim, np.inf) if self.min is None else self.min
        self.max = np.full(self.dim, -np.inf) if self.max is None else self.max

    def update(self, batch: np.ndarray) -> None:
        """Merge a (n, D) batch (Chan et al. parallel update)."""
        x = np.asarray(batch, dtype=np.float64).reshape(len(batch), self.dim)
        n = len(x)
        if n == 0:
            return
        if not np.all(np.isfinite(x)):
            raise ConfigError(f"normalizer: non-finite values in a batch of {n} rows")
        b_mean = x.mean(axis=0)
        b_m2 = ((x - b_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = b_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + b_m2 + delta ** 2 * (self.count * n / total)
        self.count = total
        self.min = np.minimum(self.min, x.min(axis=0))
        self.max = np.maximum(self.max, x.max(axis=0))

    def stats(self) -> dict[str, np.ndarray]:
        """{min, max, mean, std} float32 (D,) arrays; std is the population std."""
        if self.count == 0:
            raise ConfigError("normalizer: no samples to compute statistics from")
        std = np.sqrt(self.m2 / self.count)
        return {k: np.asarray(v, dtype=np.float32) for k, v in
                (("min", self.min), ("max", self.max), ("mean", self.mean), ("std", std))}


def affine_from_stats(stats: Mapping[str, np.ndarray], mode: str, key: str = "?") -> tuple[np.ndarray, np.ndarray]:
    """Stats {min, max, mean, std} -> (scale, offset) float32 arrays for `mode` (see module docstring)."""
    def get(name: str) -> np.ndarray:
        if name not in stats:
            raise ConfigError(f"normalizer stats for {key!r}: missing {name!r} (have {sorted(stats)})")
        return np.asarray(stats[name], dtype=np.float64)

    if mode == "limits":
        lo, hi = get("min"), get("max")
        constant = (hi - lo) < RANGE_EPS
        scale = np.where(constant, 1.0, 2.0 / np.where(constant, 1.0, hi - lo))
        offset = np.where(constant, -(lo + hi) / 2.0, -1.0 - lo * scale)
    elif mode == "gaussian":
        scale = 1.0 / np.maximum(get("std"), RANGE_EPS)
        offset = -get("mean") * scale
    elif mode == "none":
        scale, offset = np.ones_like(get("min")), np.zeros_like(get("min"))
    elif mode == "image":
        scale, offset = np.full_like(get("min"), 1.0 / 255.0), np.zeros_like(get("min"))
    else:
        raise ConfigError(f"normalizer {key!r}: unknown mode {mode!r}")
    if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(offset))):
        raise ConfigError(f"normalizer stats for {key!r} give non-finite scale/offset")
    return scale.astype(np.float32), offset.astype(np.float32)


@dataclass
class NormalizerStats:
    """Per-key stats {min, max, mean, std} and normalize mode; scale/offset derived from them."""

    stats: dict[str, dict[str, np.ndarray]]
    modes: dict[str, str]

    def affine(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        if key not in self.stats:
            raise ConfigError(f"normalizer: no key {key!r} (keys {sorted(self.stats)})")
        return affine_from_stats(self.stats[key], self.modes[key], key)

    def normalize(self, key: str, x: np.ndarray) -> np.ndarray:
        scale, offset = self.affine(key)
        return (np.asarray(x, dtype=np.float32) * scale + offset).astype(np.float32)

    def unnormalize(self, key: str, y: np.ndarray) -> np.ndarray:
        scale, offset = self.affine(key)
        return ((np.asarray(y, dtype=np.float32) - offset) / scale).astype(np.float32)

    def to_flat(self) -> dict[str, np.ndarray]:
        """{"<key>.scale", "<key>.offset", "<key>.min", ...: float32 array} for normalizer.safetensors."""
        flat = {}
        for key, stats in self.stats.items():
            scale, offset = self.affine(key)
            flat[f"{key}.scale"], flat[f"{key}.offset"] = scale, offset
            for name in STAT_NAMES:
                flat[f"{key}.{name}"] = np.asarray(stats[name], dtype=np.float32)
        return flat

    @staticmethod
    def from_flat(flat: Mapping[str, np.ndarray], spec: PolicySpec, source: str = "normalizer") -> "NormalizerStats":
        """Inverse of to_flat; modes come from `spec` (features without stats are skipped)."""
        stats: dict[str, dict[str, np.ndarray]] = {}
        for name, value in flat.items():
            key, _, part = name.rpartition(".")
            if not key or part not in STAT_NAMES + AFFINE_NAMES:
                parts = "|".join(STAT_NAMES + AFFINE_NAMES)
                raise ConfigError(f"{source}: unexpected array {name!r} (expected '<key>.<{parts}>')")
            if part in STAT_NAMES:
                stats.setdefault(key, {})[part] = np.asarray(value, dtype=np.float32)
        modes = {f.key: f.normalize for f in (*spec.obs, spec.action)}
        for key, s in stats.items():
            if key not in modes:
                raise ConfigError(f"{source}: key {key!r} is not in the spec (keys {sorted(modes)})")
            missing = [n for n in STAT_NAMES if n not in s]
            if missing:
                raise ConfigError(f"{source}: key {key!r} lacks {missing}")
        return NormalizerStats(stats, {k: modes[k] for k in stats})


def stream_stats(store: EpisodeStore, stream: str, episodes=None, block_rows: int = 65536) -> RunningStats:
    """RunningStats of one stream over the committed rows of `episodes` (default: all), read in blocks."""
    spec = store._check_stream(stream)
    dim = int(np.prod(spec.shape))
    ends = store.ends(stream)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    episodes = np.arange(len(ends)) if episodes is None else np.asarray(episodes, dtype=np.int64)
    running = RunningStats(dim)
    values = store.values(stream)
    for lo, hi in _merge_ranges(starts[episodes], ends[episodes]):
        for a in range(lo, hi, block_rows):
            running.update(np.asarray(values[a:min(a + block_rows, hi)]).reshape(-1, dim))
    return running


def _merge_ranges(starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    """Sorted, coalesced [start, end) row ranges (adjacent episodes are read as one range)."""
    out: list[list[int]] = []
    for lo, hi in sorted(zip(starts.tolist(), ends.tolist())):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        elif hi > lo:
            out.append([lo, hi])
    return [(a, b) for a, b in out]


def compute_stats(store: EpisodeStore | str, spec: PolicySpec, episodes=None, success: bool | None = None,
                  sources=None, progress: bool = False) -> NormalizerStats:
    """Stream statistics of every low-dim feature and the action of `spec` over the store.
    Episodes: explicit indices, or selected by success/sources (default: all committed)."""
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore.open(store)
    if episodes is None:
        episodes = select_episodes(store.meta_list(), success, sources)
    features = [*spec.low_dim, spec.action]
    streams = sorted({s for f in features for s in feature_streams(f)})
    per_stream = {s: stream_stats(store, s, episodes).stats()
                  for s in progress_bar(streams, desc="normalizer stats", enabled=progress)}
    stats: dict[str, dict[str, np.ndarray]] = {}
    for f in features:
        parts = [per_stream[s] for s in feature_streams(f)]
        stats[f.key] = {n: np.concatenate([p[n] for p in parts]) for n in STAT_NAMES}
        if stats[f.key]["min"].shape != f.shape:
            raise ConfigError(f"{store.path}: spec {f.key} has shape {f.shape} but stream(s) {f.stream!r} give "
                              f"{stats[f.key]['min'].shape[0]} values per sample")
    for f in spec.images:
        # nominal uint8 range, not measured: images only need scale 1/255 (shape (C, 1, 1) broadcasts)
        shape = (f.shape[0], 1, 1)
        stats[f.key] = {"min": np.zeros(shape, np.float32), "max": np.full(shape, 255.0, np.float32),
                        "mean": np.zeros(shape, np.float32), "std": np.ones(shape, np.float32)}
    modes = {f.key: (f.normalize if f.kind == "low_dim" else "image") for f in (*spec.obs, spec.action)}
    return NormalizerStats(stats, modes)
