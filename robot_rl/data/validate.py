"""Integrity check of an episode store: every problem is named with its array, rows and value."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from zarr.core.sync import sync

from robot_rl.core.errors import StoreError
from robot_rl.data.store import EpisodeStore


@dataclass
class Problem:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def _missing_chunks(array, rows: int) -> list[int]:
    """Indices of chunks (shards) along axis 0 that hold committed rows but are absent."""
    if rows == 0:
        return []
    per = array.metadata.chunk_grid.chunk_shape[0]
    store, base = array.store_path.store, array.store_path.path
    zeros = (0,) * (array.ndim - 1)
    return [i for i in range(-(-rows // per))
            if not sync(store.exists(f"{base}/{array.metadata.encode_chunk_key((i, *zeros))}"))]


def _check_stream(store: EpisodeStore, name: str, decode: bool) -> list[Problem]:
    problems: list[Problem] = []
    n = store.n_episodes
    ends_arr = store.group["meta/ends"][name]
    if ends_arr.shape[0] < n:
        return [Problem(f"meta/ends/{name}", f"{ends_arr.shape[0]} entries for {n} committed episodes")]
    ends = np.asarray(ends_arr[:n])
    if np.any(np.diff(np.r_[0, ends]) < 0):
        k = int(np.flatnonzero(np.diff(np.r_[0, ends]) < 0)[0])
        problems.append(Problem(f"meta/ends/{name}[{k}]", f"end {ends[k]} is before the previous end"))
        return problems
    rows = int(ends[-1]) if n else 0
    values, times = store.values(name), store.times(name)
    for label, arr in (("data", values), ("time", times)):
        if arr.shape[0] < rows:
            problems.append(Problem(f"{label}/{name}", f"length {arr.shape[0]} < committed rows {rows} (truncated)"))
            return problems
        missing = _missing_chunks(arr, rows)
        if missing:
            per = arr.metadata.chunk_grid.chunk_shape[0]
            problems.append(Problem(f"{label}/{name}", "missing chunk files for rows "
                                    + ", ".join(f"[{i * per}, {min(rows, (i + 1) * per)})" for i in missing[:5])))
    if problems:
        return problems
    try:
        t = np.asarray(times[:rows])
    except Exception as e:  # noqa: BLE001 - any decode failure is a corrupt chunk
        return [Problem(f"time/{name}", f"corrupt chunk ({type(e).__name__}: {e})")]
    starts = np.r_[0, ends[:-1]]
    for ep, (lo, hi) in enumerate(zip(starts, ends)):
        seg = t[lo:hi]
        if not np.all(np.isfinite(seg)):
            problems.append(Problem(f"time/{name} episode {ep}", f"non-finite timestamp at row {lo + int(np.flatnonzero(~np.isfinite(seg))[0])}"))
        elif seg.size > 1 and np.any(np.diff(seg) <= 0):
            k = int(np.flatnonzero(np.diff(seg) <= 0)[0])
            problems.append(Problem(f"time/{name} episode {ep}",
                                    f"non-monotonic timestamps at row {lo + k + 1}: {seg[k]!r} -> {seg[k + 1]!r}"))
    if decode:
        step = values.metadata.chunk_grid.chunk_shape[0]
        for lo in range(0, rows, step):
            hi = min(rows, lo + step)
            try:
                values[lo:hi]
            except Exception as e:  # noqa: BLE001
                problems.append(Problem(f"data/{name}", f"corrupt chunk for rows [{lo}, {hi}) ({type(e).__name__}: {e})"))
    return problems


def losses(meta) -> dict:
    """What an episode's recorder counted as lost (non-zero only): `missing` (never arrived, from gaps in
    the stamps at the nominal rate), `rejected` (arrived but not stored: NaN, bad stamp or shape),
    `dropped` (write queue full). Empty for a complete episode."""
    meta = meta if isinstance(meta, dict) else meta.to_dict()
    extra = meta.get("extra") or {}
    found = {"missing": {k: v for k, v in (extra.get("missing") or {}).items() if v},
             "rejected": {k: v for k, v in (extra.get("rejected") or {}).items() if v},
             "dropped": {k: v for k, v in (meta.get("dropped") or {}).items() if v}}
    return {k: v for k, v in found.items() if v}


def validate(path, decode: bool = True) -> list[Problem]:
    """All problems found in the store at `path` (empty list: valid). decode=False skips decoding
    every value chunk (fast check of index, timestamps and chunk presence only)."""
    try:
        store = EpisodeStore.open(path)
    except StoreError as e:
        return [Problem(str(path), str(e))]
    problems: list[Problem] = []
    n = store.n_episodes
    if store.header.get("open_episode"):
        problems.append(Problem("header", "an interrupted episode is pending: run `robot-rl data recover`"))
    for arr_name in ("meta/episode_ends", "meta/episode_info"):
        if store.group[arr_name].shape[0] < n:
            problems.append(Problem(arr_name, f"{store.group[arr_name].shape[0]} entries for {n} committed episodes"))
    if problems and any(p.where.startswith("meta/") for p in problems):
        return problems
    for i in range(n):
        try:
            meta = store.episode_meta(i)
        except StoreError as e:
            problems.append(Problem(f"meta/episode_info[{i}]", str(e)))
            continue
        lost = losses(meta)
        if lost:
            problems.append(Problem(f"meta/episode_info[{i}]", "samples lost while recording: " + "; ".join(
                f"{what} {counts}" for what, counts in lost.items())))
    for name in store.streams:
        try:
            problems += _check_stream(store, name, decode)
        except Exception as e:  # noqa: BLE001 - report, never crash the validator
            problems.append(Problem(f"stream {name}", f"{type(e).__name__}: {e}"))
    if not problems:
        index_ends = store.group["meta/episode_ends"][:n]
        if not np.array_equal(index_ends, store.ends(store.index_stream)):
            problems.append(Problem("meta/episode_ends", f"differs from meta/ends/{store.index_stream}"))
    return problems
