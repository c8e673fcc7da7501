"""Aligning multi-rate streams at read time.

`hold` takes the latest sample at or before the query time (images, events), `linear` interpolates
continuous signals, `slerp` interpolates (w, x, y, z) quaternions. A query that would need a sample
older than `max_staleness` seconds raises StaleDataError: a stale sample is never used silently.
"""

from __future__ import annotations

import numpy as np

from robot_rl.core.errors import StaleDataError, StoreError
from robot_rl.core.rotations import quat_slerp


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
    idx = np.searchsorted(times, q, side="right") - 1
    if np.any(idx < 0):
        first = q[idx < 0][0]
        raise StaleDataError(f"{name}: query time {first:.6f} s is before the first sample at {times[0]:.6f} s")
    if interp == "hold" or len(times) == 1:
        age = q - times[idx]
        if max_staleness is not None and np.any(age > max_staleness):
            k = int(np.argmax(age))
            raise StaleDataError(
                f"{name}: sample at {times[idx[k]]:.6f} s is {age[k] * 1e3:.1f} ms old at query {q[k]:.6f} s "
                f"(max staleness {max_staleness * 1e3:.1f} ms)"
            )
        out = values[idx]
    else:
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
