"""Aligning multi-rate streams at read time (the one definition; the sampler and the exporters use it).

`hold` takes the latest sample at or before the query time (images, events), `linear` interpolates
continuous signals, `slerp` interpolates (w, x, y, z) quaternions. A query that would need a sample
older than `max_staleness` seconds raises StaleDataError: a stale sample is never used silently.

Resampling onto a grid (training windows, single-clock export formats): `staleness_bounds` gives each
stream's bound (default STALENESS_PERIODS sample periods), `episode_grid` the grid of an episode trimmed
to the steps every stream covers, `hold_indices` the held sample of each grid time (frames are fetched by
row), `sample_at` the values of low-dim streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from robot_rl.core.errors import ConfigError, StaleDataError, StoreError
from robot_rl.core.rotations import quat_slerp

STALENESS_PERIODS = 3.0  # default bound: a dropped sample or two is tolerated, a dead sensor is not


def hold_indices(times: np.ndarray, query: np.ndarray, max_staleness: float | None = None,
                 name: str = "stream") -> np.ndarray:
    """Index of the latest sample at or before each query time (`times` increasing, seconds).

    Raises StaleDataError when a query is before the first sample (there is nothing to hold) or the
    held sample is more than `max_staleness` seconds old (None: no bound)."""
    times = np.asarray(times, dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    if len(times) == 0:
        raise StaleDataError(f"{name}: no samples to align to")
    idx = np.searchsorted(times, q, side="right") - 1
    if np.any(idx < 0):
        first = q[idx < 0][0]
        raise StaleDataError(f"{name}: query time {first:.6f} s is before the first sample at {times[0]:.6f} s")
    if max_staleness is not None:
        age = q - times[idx]
        if np.any(age > max_staleness):
            k = int(np.argmax(age))
            raise StaleDataError(
                f"{name}: sample at {times[idx[k]]:.6f} s is {age[k] * 1e3:.1f} ms old at query {q[k]:.6f} s "
                f"(max staleness {max_staleness * 1e3:.1f} ms)"
            )
    return idx


def sample_at(values: np.ndarray, times: np.ndarray, query: np.ndarray | float, interp: str = "hold",
              max_staleness: float | None = None, name: str = "stream") -> np.ndarray:
    """Values of a stream (samples `values` at `times`) at the query times.

    For `hold`, the sample used must be at most `max_staleness` older than the query. For `linear`
    and `slerp`, the query must lie within [first, last] sample time extended by `max_staleness`,
    and the bracketing samples must be at most `max_staleness` apart. Queries before the first
    sample raise (there is nothing to hold).
    """
    values = np.asarray(values)
    times = np.asarray(times, dtype=np.float64)
    q = np.atleast_1d(np.asarray(query, dtype=np.float64))
    if len(times) == 0:
        raise StaleDataError(f"{name}: no samples to align to")
    if len(values) != len(times):
        raise StoreError(f"{name}: {len(values)} values but {len(times)} timestamps")
    if interp == "hold" or len(times) == 1:
        out = values[hold_indices(times, q, max_staleness, name)]
    else:
        idx = hold_indices(times, q, None, name)
        lo = np.clip(idx, 0, len(times) - 2)
        hi = lo + 1
        if max_staleness is not None:
            past_end = q - times[-1]
            gap = np.where(q <= times[-1], times[hi] - times[lo], past_end)
            if np.any(gap > max_staleness):
                k = int(np.argmax(gap))
                raise StaleDataError(
                    f"{name}: no sample within {max_staleness * 1e3:.1f} ms around query {q[k]:.6f} s "
                    f"(gap {gap[k] * 1e3:.1f} ms)"
                )
        span = times[hi] - times[lo]
        alpha = np.clip((q - times[lo]) / np.where(span > 0, span, 1.0), 0.0, 1.0)
        v0 = values[lo].astype(np.float64)
        v1 = values[hi].astype(np.float64)
        if interp == "slerp":
            out = quat_slerp(v0, v1, alpha)
        elif interp == "linear":
            a = alpha.reshape((-1,) + (1,) * (values.ndim - 1))
            out = v0 + a * (v1 - v0)
        else:
            raise StoreError(f"{name}: unknown interpolation {interp!r}")
        out = out.astype(values.dtype) if np.issubdtype(values.dtype, np.floating) else out
    return out if np.ndim(query) else out[0]


def align_episode(store, episode: int, streams: list[str], query: np.ndarray,
                  max_staleness: float | dict | None = None) -> dict[str, np.ndarray]:
    """Read `streams` of one episode and sample each at the `query` times with its declared interp."""
    out = {}
    for name in streams:
        spec = store.streams[name]
        values, times = store.read(name, episode)
        bound = max_staleness.get(name) if isinstance(max_staleness, dict) else max_staleness
        out[name] = sample_at(values, times, query, spec.interp, bound, name=f"{store.path}:{name}[episode {episode}]")
    return out


# -- resampling onto a grid ------------------------------------------------------------------------
def effective_interp(spec) -> str:
    """A StreamSpec's interp, except that frames and integer/bool streams are always held: averaging two
    images or two ids makes no sense."""
    if spec.is_image or np.dtype(spec.dtype).kind in "biu":
        return "hold"
    return spec.interp


def staleness_bounds(store, streams: list[str], option: Any = None) -> dict[str, float | None]:
    """Per-stream max staleness (s): option None -> STALENESS_PERIODS nominal sample periods; a number ->
    that many seconds for all; a dict -> per stream (missing streams: the default); 'none' or a
    negative number -> no bound."""
    out = {}
    for name in streams:
        value = option.get(name, "default") if isinstance(option, Mapping) else option
        if value is None or value == "default":
            out[name] = STALENESS_PERIODS / store.streams[name].rate_hz
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
    """The grid of one episode: times (seconds, store clock) after trimming, the index stream's rows
    `index_rows` and the grid steps dropped at its head and tail (grid[head:stop] of the untrimmed grid)."""

    episode: int
    times: np.ndarray
    index_rows: int
    dropped_head: int
    dropped_tail: int

    @property
    def head(self) -> int:
        return self.dropped_head

    @property
    def stop(self) -> int:
        return self.dropped_head + len(self.times)


def stream_times(store, episode: int, name: str) -> np.ndarray:
    """Timestamps (s) of one stream of one episode."""
    lo, hi = store.episode_rows(episode, name)
    return np.asarray(store.times(name)[lo:hi], dtype=np.float64)


def episode_grid(store, episode: int, streams: list[str], index_stream: str, rate_hz: float | None = None,
                 times: Mapping[str, np.ndarray] | None = None) -> EpisodeGrid:
    """Grid = the index stream's own timestamps (rate_hz None) or a uniform grid at rate_hz starting at
    the index stream's first sample, trimmed to the steps every stream covers: grid times before some
    stream's first sample are dropped (nothing can be held there yet), as are times past the last sample
    of an interpolated stream (no extrapolation); held streams hold past their end, within staleness.
    Streams without samples are ignored here (aligning them raises). `times`: timestamps already read."""
    times = dict(times or {})
    for s in set(streams) | {index_stream}:
        if s not in times:
            times[s] = stream_times(store, episode, s)
    t_index = times[index_stream]
    if len(t_index) == 0:
        return EpisodeGrid(episode, t_index, 0, 0, 0)
    if rate_hz is None:
        grid = t_index
    else:
        n = int(np.floor((t_index[-1] - t_index[0]) * rate_hz + 1e-6)) + 1
        grid = t_index[0] + np.arange(n) / rate_hz
    present = [s for s in streams if len(times[s])]
    if not present:
        return EpisodeGrid(episode, grid, len(grid), 0, 0)
    first = max(float(times[s][0]) for s in present)
    last = min([float(times[s][-1]) for s in present if effective_interp(store.streams[s]) != "hold"] or [np.inf])
    head = int(np.searchsorted(grid, first, side="left"))
    stop = max(head, int(np.searchsorted(grid, last + 1e-9, side="right")))
    return EpisodeGrid(episode, grid[head:stop], len(grid), head, len(grid) - stop)
