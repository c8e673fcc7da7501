"""Training windows over committed episodes, on the policy grid.

The grid of an episode is the timestamps of its grid stream (the store's index stream, normally
`action`, recorded at the policy rate). Every other stream a PolicySpec reads is aligned to the grid
once, when the sampler is built:
  - image streams (and any `hold` stream read as an image) become a row map: for each grid time the
    row of the latest frame at or before it (searchsorted), so a frame is fetched by row and decoded
    only when a window needs it;
  - low-dim streams are sampled at the grid times with their declared interp (hold / linear / slerp)
    and kept in memory as float32 (they are small once on the grid).
A sample older than the staleness bound raises StaleDataError: a stale observation is never used.
Grid steps before some stream's first sample (or past an interpolated stream's end) are dropped,
with a warning when that is more than the stream's staleness bound (the exporter's rule).

Windows follow diffusion_policy: length `horizon`, pad_before = n_obs_steps - 1, pad_after =
n_action_steps - 1, positions outside the episode replicate the first/last step (edge padding), and
no window crosses an episode border. Validation takes whole episodes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from robot_rl.core.errors import ConfigError, StaleDataError, StoreError
from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.data.align import (EpisodeGrid, effective_interp, episode_grid, hold_indices, sample_at,
                                 staleness_bounds)
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.validate import require_valid_values


def feature_streams(feature: FeatureSpec) -> list[str]:
    """Streams a feature reads (FeatureSpec.stream may join several with '+')."""
    return feature.streams


# -- episode selection ---------------------------------------------------------------------------
def select_episodes(metas: list[dict], success: bool | None = None, sources=None, tasks=None) -> np.ndarray:
    """Indices of episodes whose metadata match: `success` True/False (None: any; an unknown success
    never matches True/False), `sources`/`tasks`: collections of allowed values (None: any)."""
    keep = []
    for i, meta in enumerate(metas):
        if success is not None and meta.get("success") is not bool(success):
            continue
        if sources is not None and meta.get("source") not in set(sources):
            continue
        if tasks is not None and meta.get("task") not in set(tasks):
            continue
        keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def split_episodes(episodes: np.ndarray, val_ratio: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) episode indices; val holds round(n * val_ratio) whole episodes (at least 1 and
    leaving at least 1 for training when val_ratio > 0), drawn with `seed`."""
    episodes = np.asarray(episodes, dtype=np.int64)
    if not 0.0 <= val_ratio < 1.0:
        raise ConfigError(f"val_ratio must be in [0, 1), got {val_ratio}")
    n = len(episodes)
    n_val = 0 if val_ratio == 0 or n < 2 else min(max(1, round(n * val_ratio)), n - 1)
    val_mask = np.zeros(n, dtype=bool)
    val_mask[np.random.default_rng(seed).choice(n, size=n_val, replace=False)] = True
    return episodes[~val_mask], episodes[val_mask]


# -- alignment to the grid -----------------------------------------------------------------------
@dataclass
class GridData:
    """Streams of selected episodes aligned to the policy grid, all episodes concatenated.

    episodes: (E,) store episode indices; offsets: (E + 1,) grid row offset of each episode;
    times: (N,) grid timestamps in seconds; low_dim: stream -> (N, D) float32 values at grid times
    (multi-dimensional samples flattened); image_rows: stream -> (N,) int64 rows of data/<stream>.
    """

    episodes: np.ndarray
    offsets: np.ndarray
    times: np.ndarray
    low_dim: dict[str, np.ndarray]
    image_rows: dict[str, np.ndarray]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _warn_trimmed(store: EpisodeStore, g: EpisodeGrid, covered: dict[str, np.ndarray], grid: np.ndarray,
                  bounds: dict[str, float | None], name: str) -> None:
    """Warn when a stream starts (or an interpolated one ends) more than its staleness bound away from
    the grid's ends, so grid steps were dropped (the exporter's rule, robot_rl.data.align.episode_grid)."""
    far = lambda gap, s: bounds[s] is not None and gap > bounds[s]  # noqa: E731
    late = [s for s, t in covered.items() if far(t[0] - grid[0], s)]
    early = [s for s, t in covered.items() if effective_interp(store.streams[s]) != "hold" and far(grid[-1] - t[-1], s)]
    if late or early:
        warnings.warn(f"{name}: episode {g.episode}: dropped {g.dropped_head} grid steps before streams {late} start "
                      f"and {g.dropped_tail} after streams {early} end")


class _StreamSpan:
    """The rows of some streams over the row span of some episodes, each array read from the store once:
    reading per episode and stream costs a store round trip each, which was most of the time aligning a few
    hundred short episodes took (filtered BC realigns its online store after every success).
    values: streams whose values are read too; times_only: streams whose timestamps alone are."""

    def __init__(self, store: EpisodeStore, episodes: np.ndarray, values, times_only) -> None:
        self.store, self.start, self._values, self._times = store, {}, {}, {}
        for s in {*values, *times_only}:
            rows = [store.episode_rows(int(e), s) for e in episodes]
            lo, hi = (min(r[0] for r in rows), max(r[1] for r in rows)) if rows else (0, 0)
            self.start[s] = lo
            self._times[s] = np.asarray(store.times(s)[lo:hi], dtype=np.float64)
            if s in values:
                self._values[s] = np.asarray(store.values(s)[lo:hi])

    def _slice(self, stream: str, episode: int) -> slice:
        lo, hi = self.store.episode_rows(episode, stream)
        return slice(lo - self.start[stream], hi - self.start[stream])

    def times(self, stream: str, episode: int) -> np.ndarray:
        return self._times[stream][self._slice(stream, episode)]

    def read(self, stream: str, episode: int) -> tuple[np.ndarray, np.ndarray]:
        at = self._slice(stream, episode)
        return self._values[stream][at], self._times[stream][at]


def align_to_grid(store: EpisodeStore, episodes, low_dim: list[str], images: list[str],
                  grid_stream: str | None = None, max_staleness: float | dict | None = None,
                  on_stale: str = "raise") -> GridData:
    """Align `low_dim` and `images` streams of `episodes` to the grid of `grid_stream` (default: the
    store's index stream), trimmed to the steps every stream covers (robot_rl.data.align.episode_grid).
    max_staleness: seconds, per stream dict, or None (align.STALENESS_PERIODS sample periods).
    on_stale: 'raise' (default) or 'skip' (drop that episode with a warning)."""
    grid_stream = grid_stream or store.index_stream
    for name in [grid_stream, *low_dim, *images]:
        store._check_stream(name)
    if on_stale not in ("raise", "skip"):
        raise ConfigError(f"on_stale must be 'raise' or 'skip', got {on_stale!r}")
    bounds = staleness_bounds(store, sorted({grid_stream, *low_dim, *images}), max_staleness)
    kept, times, lows, rows = [], [], {s: [] for s in low_dim}, {s: [] for s in images}
    episodes = np.asarray(episodes, dtype=np.int64)
    span = _StreamSpan(store, episodes, {grid_stream, *low_dim}, images)
    for ep in episodes:
        ep = int(ep)
        low = {s: span.read(s, ep) for s in low_dim if s != grid_stream}
        covered = {s: t for s, (_, t) in low.items()}
        covered |= {s: span.times(s, ep) for s in images}
        g = episode_grid(store, ep, list(covered), grid_stream,
                         times=covered | {grid_stream: span.times(grid_stream, ep)})
        if g.index_rows == 0 or any(len(t) == 0 for t in covered.values()):
            empty = [s for s, t in covered.items() if len(t) == 0]
            warnings.warn(f"{store.path}: skipping episode {ep}: no samples in {empty or [grid_stream]}")
            continue
        grid = g.times
        if covered and (g.dropped_head or g.dropped_tail):
            _warn_trimmed(store, g, covered, span.times(grid_stream, ep), bounds, str(store.path))
        try:
            ep_low = {}
            for s in low_dim:
                where = f"{store.path}:{s}[episode {ep}]"
                if s == grid_stream:
                    v = span.read(s, ep)[0][g.head:g.stop]
                else:
                    v = sample_at(*low[s], grid, effective_interp(store.streams[s]), bounds[s], name=where)
                ep_low[s] = np.asarray(v, dtype=np.float32).reshape(len(grid), -1)
            ep_rows = {s: store.episode_rows(ep, s)[0] + hold_indices(covered[s], grid, bounds[s],
                                                                      f"{store.path}:{s}[episode {ep}]")
                       for s in images}
        except StaleDataError as e:
            if on_stale == "raise":
                raise
            warnings.warn(f"skipping episode {ep}: {e}")
            continue
        kept.append(ep)
        times.append(grid)
        for s in low_dim:
            lows[s].append(ep_low[s])
        for s in images:
            rows[s].append(ep_rows[s])
    lengths = [len(t) for t in times]
    cat = lambda xs, empty: np.concatenate(xs) if xs else empty  # noqa: E731
    return GridData(
        episodes=np.asarray(kept, dtype=np.int64),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        times=cat(times, np.zeros(0)),
        low_dim={s: cat(v, np.zeros((0, int(np.prod(store.streams[s].shape))), np.float32)) for s, v in lows.items()},
        image_rows={s: cat(v, np.zeros(0, np.int64)) for s, v in rows.items()},
    )


# -- windows -------------------------------------------------------------------------------------
def window_starts(length: int, horizon: int, pad_before: int, pad_after: int) -> np.ndarray:
    """Start steps (relative to the episode, may be negative) of every window of an episode of
    `length` grid steps; diffusion_policy's range(-pad_before, length - horizon + pad_after + 1)."""
    return np.arange(-pad_before, length - horizon + pad_after + 1, dtype=np.int64)


def window_steps(start: int | np.ndarray, length: int | np.ndarray, horizon: int) -> np.ndarray:
    """Episode steps of windows starting at `start`, edge-replicated at both borders: (..., horizon)."""
    start = np.asarray(start)[..., None]
    length = np.asarray(length)[..., None]
    return np.clip(start + np.arange(horizon), 0, length - 1)


class WindowSampler:
    """Window index of a PolicySpec over an episode store.

    `len(sampler)` windows; `sampler.rows(i)` gives the (horizon,) grid rows of window i (the first
    n_obs_steps are the observation steps). `features[key]` is the (N, D) float32 grid data of each
    low-dim feature and of the action; `image_rows[key]` the (N,) store rows of each image feature.
    """

    def __init__(self, store: EpisodeStore | str | Path, spec: PolicySpec, episodes=None, *,
                 success: bool | None = None, sources=None, tasks=None, grid_stream: str | None = None,
                 max_staleness: float | dict | None = None, on_stale: str = "raise",
                 storage_options: dict | None = None, flag_streams: Sequence[str] = ()) -> None:
        """flag_streams: more low-dim streams to align to the grid (in `grid.low_dim`), not policy inputs:
        per-step flags a caller selects windows by (e.g. `intervention`, with executed_rows and keep)."""
        if not isinstance(store, EpisodeStore):
            store = EpisodeStore.open(store, storage_options=storage_options)
        self.path = store.path
        self.storage_options = storage_options
        self.spec = spec
        if episodes is None:
            episodes = select_episodes(store.meta_list(), success, sources, tasks)
        low_features = [*spec.low_dim, spec.action]
        low_streams = sorted({s for f in low_features for s in feature_streams(f)} | set(flag_streams))
        image_streams = sorted({feature_streams(f)[0] for f in spec.images})
        # every row used is checked before any is: low-dim values are loaded into memory here (decode
        # them all, refuse non-finite ones); image frames are decoded later, one by one
        require_valid_values(store, image_streams, decode_streams={*low_streams, grid_stream or store.index_stream})
        self.grid = align_to_grid(store, episodes, low_streams, image_streams, grid_stream, max_staleness, on_stale)
        self.streams = {name: store.streams[name] for name in low_streams + image_streams}
        self.features: dict[str, np.ndarray] = {}
        for f in low_features:
            parts = [self.grid.low_dim[s] for s in feature_streams(f)]
            data = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
            if data.shape[1] != f.shape[0]:
                dims = {s: self.grid.low_dim[s].shape[1] for s in feature_streams(f)}
                raise ConfigError(f"{self.path}: spec {f.key} has shape {f.shape} but stream(s) {dims} "
                                  f"give {data.shape[1]} values per step")
            self.features[f.key] = np.ascontiguousarray(data)
        self.image_rows = {f.key: self.grid.image_rows[f.stream] for f in spec.images}
        self.image_streams = {f.key: f.stream for f in spec.images}
        self._set_windows(np.arange(len(self.grid.episodes)))

    def _set_windows(self, positions: np.ndarray) -> None:
        """Index the windows of the episodes at `positions` in self.grid."""
        spec = self.spec
        lengths = self._lengths = self.grid.lengths()
        pos, starts = [], []
        for p in positions:
            if lengths[p] == 0:  # every grid step was trimmed away
                continue
            s = window_starts(int(lengths[p]), spec.horizon, spec.n_obs_steps - 1, spec.n_action_steps - 1)
            pos.append(np.full(len(s), p, dtype=np.int64))
            starts.append(s)
        self.positions = np.asarray(positions, dtype=np.int64)
        self._win_pos = np.concatenate(pos) if pos else np.zeros(0, np.int64)
        self._win_start = np.concatenate(starts) if starts else np.zeros(0, np.int64)

    @property
    def episodes(self) -> np.ndarray:
        """Store indices of the episodes this sampler draws windows from."""
        return self.grid.episodes[self.positions]

    def __len__(self) -> int:
        return len(self._win_start)

    def rows(self, index) -> np.ndarray:
        """Grid rows of window(s) `index` (int or int array): (horizon,) or (B, horizon)."""
        p = self._win_pos[index]
        steps = window_steps(self._win_start[index], self._lengths[p], self.spec.horizon)
        return self.grid.offsets[p][..., None] + steps

    def executed_rows(self) -> np.ndarray:
        """(len(self), n_action_steps) grid rows of the actions each window's policy step executes (the
        action chunk from the last observation step on)."""
        start = self.spec.n_obs_steps - 1
        return self.rows(np.arange(len(self)))[:, start:start + self.spec.n_action_steps]

    def keep(self, mask) -> "WindowSampler":
        """A sampler over the windows where `mask` (len(self),) is true, sharing this sampler's grid data."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(self),):
            raise ValueError(f"keep: mask of shape {mask.shape} for {len(self)} windows")
        other = object.__new__(WindowSampler)
        other.__dict__.update(self.__dict__)
        other._win_pos, other._win_start = self._win_pos[mask], self._win_start[mask]
        return other

    def window_episode(self, index: int) -> int:
        """Store episode index of window `index`."""
        return int(self.grid.episodes[self._win_pos[index]])

    def subset(self, episodes) -> "WindowSampler":
        """A sampler over some of this sampler's episodes (store indices), sharing its grid data."""
        episodes = np.asarray(episodes, dtype=np.int64)
        where = {int(e): i for i, e in enumerate(self.grid.episodes)}
        missing = [int(e) for e in episodes if int(e) not in where]
        if missing:
            raise StoreError(f"{self.path}: episodes {missing} are not in this sampler")
        other = object.__new__(WindowSampler)
        other.__dict__.update(self.__dict__)
        other._set_windows(np.asarray([where[int(e)] for e in episodes], dtype=np.int64))
        return other

    def split(self, val_ratio: float, seed: int = 0) -> tuple["WindowSampler", "WindowSampler"]:
        """(train, val) samplers holding whole episodes; see split_episodes."""
        train, val = split_episodes(self.episodes, val_ratio, seed)
        return self.subset(train), self.subset(val)


__all__ = ["GridData", "WindowSampler", "align_to_grid", "feature_streams", "select_episodes",
           "split_episodes", "window_starts", "window_steps"]
