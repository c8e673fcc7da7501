"""Resampling an episode's multi-rate streams onto one time grid for formats with a single clock.

Low-dim streams use their declared interpolation through `align.sample_at`; frames (images) and
integer streams are always held (nearest sample at or before the grid time, never interpolated), and
only the frames that the grid uses are read, in batches, so a long camera episode never sits in
memory whole. Every grid time must have a sample no older than the stream's staleness bound: a
stale frame is never used silently (StaleDataError names the stream, episode and time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

from robot_rl.core.errors import ConfigError, StaleDataError
from robot_rl.data.align import sample_at
from robot_rl.data.schema import StreamSpec
from robot_rl.data.store import EpisodeStore

FRAME_BATCH = 32


def effective_interp(spec: StreamSpec) -> str:
    """Frames and integer/bool streams are held: averaging two images or two ids makes no sense."""
    if spec.is_image or np.dtype(spec.dtype).kind in "biu":
        return "hold"
    return spec.interp


def staleness_bounds(store: EpisodeStore, streams: list[str], option: Any) -> dict[str, float | None]:
    """Per-stream max staleness: option None -> 3 nominal sample periods (a dropped sample or two is
    tolerated, a dead sensor is not); a number -> that many seconds for all; a dict -> per stream;
    'none' or a negative number -> no bound."""
    out = {}
    for name in streams:
        value = option.get(name, "default") if isinstance(option, Mapping) else option
        if value is None or value == "default":
            out[name] = 3.0 / store.streams[name].rate_hz
        elif isinstance(value, str) and value.lower() in ("none", "inf", "off"):
            out[name] = None
        else:
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"max_staleness for {name}: {value!r} is not a number of seconds") from None
            out[name] = None if value < 0 or not np.isfinite(value) else value
    return out


@dataclass
class EpisodeGrid:
    """The grid of one episode: times (seconds, store clock) and index rows dropped at its ends."""

    episode: int
    times: np.ndarray
    index_rows: int
    dropped_head: int
    dropped_tail: int


def stream_times(store: EpisodeStore, episode: int, name: str) -> np.ndarray:
    lo, hi = store.episode_rows(episode, name)
    return np.asarray(store.times(name)[lo:hi], dtype=np.float64)


def episode_grid(store: EpisodeStore, episode: int, streams: list[str], index_stream: str,
                 rate_hz: float | None = None) -> EpisodeGrid:
    """Grid = the index stream's own timestamps (rate_hz None) or a uniform grid at rate_hz starting
    at the index stream's first sample. Grid times before every stream has its first sample are
    dropped (nothing can be held there yet) and counted, as are times past the last sample of an
    interpolated stream (no extrapolation); held streams hold past their end, within staleness."""
    times = {s: stream_times(store, episode, s) for s in set(streams) | {index_stream}}
    t_index = times[index_stream]
    if len(t_index) == 0:
        return EpisodeGrid(episode, t_index, 0, 0, 0)
    if rate_hz is None:
        grid = t_index
    else:
        n = int(np.floor((t_index[-1] - t_index[0]) * rate_hz + 1e-6)) + 1
        grid = t_index[0] + np.arange(n) / rate_hz
    present = [s for s in streams if len(times[s])]
    first = max(float(times[s][0]) for s in present)
    last = min([float(times[s][-1]) for s in present if effective_interp(store.streams[s]) != "hold"] or [np.inf])
    head = int(np.searchsorted(grid, first, side="left"))
    stop = max(head, int(np.searchsorted(grid, last + 1e-9, side="right")))
    return EpisodeGrid(episode, grid[head:stop], len(grid), head, len(grid) - stop)


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
    lo, hi = store.episode_rows(episode, name)
    times = np.asarray(store.times(name)[lo:hi], dtype=np.float64)
    if len(times) == 0:
        raise StaleDataError(f"{store.path}: stream {name} episode {episode}: no samples to export")
    rows = sample_at(np.arange(len(times)), times, grid, "hold", max_staleness,
                     name=f"{store.path}: stream {name} episode {episode}")
    return lo + np.asarray(rows, dtype=np.int64)


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
