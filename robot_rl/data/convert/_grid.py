"""Resampling an episode's multi-rate streams onto one time grid for formats with a single clock.

The grid, its trimming and the staleness bounds are robot_rl.data.align's (the training sampler uses
the same ones). Low-dim streams use their effective interpolation through `align.sample_at`; frames
(images) and integer streams are always held (latest sample at or before the grid time, never
interpolated), and only the frames that the grid uses are read, in batches, so a long camera episode
never sits in memory whole. Every grid time must have a sample no older than the stream's staleness
bound: a stale frame is never used silently (StaleDataError names the stream, episode and time).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from robot_rl.data.align import (EpisodeGrid, effective_interp, episode_grid, hold_indices, sample_at,
                                 staleness_bounds, stream_times)
from robot_rl.data.episode_store import EpisodeStore

FRAME_BATCH = 32

__all__ = ["EpisodeGrid", "effective_interp", "episode_grid", "grid_summary", "hold_rows", "iter_rows",
           "lowdim_on_grid", "staleness_bounds", "stream_times"]


def lowdim_on_grid(store: EpisodeStore, episode: int, name: str, grid: np.ndarray,
                   max_staleness: float | None) -> np.ndarray:
    spec = store.streams[name]
    values, times = store.read(name, episode)
    where = f"{store.path}: stream {name} episode {episode}"
    out = sample_at(values, times, grid, effective_interp(spec), max_staleness, name=where)
    return np.asarray(out).astype(spec.dtype, copy=False)


def hold_rows(store: EpisodeStore, episode: int, name: str, grid: np.ndarray,
              max_staleness: float | None) -> np.ndarray:
    """Absolute rows of `name` held at each grid time (staleness checked), without reading values."""
    lo, _ = store.episode_rows(episode, name)
    idx = hold_indices(stream_times(store, episode, name), grid, max_staleness,
                       name=f"{store.path}: stream {name} episode {episode}")
    return lo + idx.astype(np.int64)


def iter_rows(store: EpisodeStore, name: str, rows: np.ndarray, batch: int = FRAME_BATCH) -> Iterator[np.ndarray]:
    """Values at monotonic absolute `rows`, read one contiguous block per batch."""
    arr = store.values(name)
    for i in range(0, len(rows), batch):
        r = rows[i:i + batch]
        block = arr[int(r[0]): int(r[-1]) + 1]
        yield block[r - r[0]]


def grid_summary(grids: list[EpisodeGrid]) -> dict:
    return {
        "rows": int(sum(len(g.times) for g in grids)),
        "index_rows": int(sum(g.index_rows for g in grids)),
        "dropped_head_rows": int(sum(g.dropped_head for g in grids)),
        "dropped_tail_rows": int(sum(g.dropped_tail for g in grids)),
    }
