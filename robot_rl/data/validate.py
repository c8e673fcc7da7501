"""Integrity check of an episode store: every problem is named with its array, rows and value.

Two levels share one set of checks: the layout checks every `EpisodeStore.open` runs
(robot_rl.data.episode_store.layout_problems), and the value checks here, which read every committed row:
chunk files present, chunks decodable, timestamps finite and increasing within each episode, float
values finite. `robot-rl data validate` runs both and also reports episodes with no row of the index
stream; training runs the value checks on the streams it loads (`require_valid_values`) before it
uses a single row.
"""

from __future__ import annotations

import json

import numpy as np
from zarr.core.sync import sync

from robot_rl.core.errors import StoreError
from robot_rl.data.episode_store import EpisodeStore, Problem, layout_problems, problems_error, stream_layout_problems

__all__ = ["Problem", "require_valid_values", "validate", "value_problems"]


def _chunk_file(store: EpisodeStore, array, index: int) -> str:
    key = array.metadata.encode_chunk_key((index,) + (0,) * (array.ndim - 1))
    return f"{store.path}/{array.path}/{key}"


def _missing_chunks(array, rows: int) -> list[int]:
    """Indices of chunks (shards) along axis 0 that hold committed rows but are absent."""
    if rows == 0:
        return []
    per = array.metadata.chunk_grid.chunk_shape[0]
    store, base = array.store_path.store, array.store_path.path
    zeros = (0,) * (array.ndim - 1)
    return [i for i in range(-(-rows // per))
            if not sync(store.exists(f"{base}/{array.metadata.encode_chunk_key((i, *zeros))}"))]


def _episode_of(ends: np.ndarray, row: int) -> int:
    return int(np.searchsorted(ends, row, side="right"))


def value_problems(store: EpisodeStore, name: str, decode: bool = True) -> list[Problem]:
    """Problems in the committed rows of stream `name` (its layout must be valid): missing chunk
    files, undecodable chunks, non-finite or non-increasing timestamps within an episode and, with
    decode=True, undecodable value chunks and non-finite float values."""
    ends = store.ends(name)
    rows = int(ends[-1]) if len(ends) else 0
    values, times = store.values(name), store.times(name)
    problems: list[Problem] = []
    for label, arr in (("data", values), ("time", times)):
        per = arr.metadata.chunk_grid.chunk_shape[0]
        problems += [Problem(f"{label}/{name} rows [{i * per}, {min(rows, (i + 1) * per)})",
                             f"chunk file {_chunk_file(store, arr, i)} is missing (the rows would read as "
                             f"{arr.fill_value})") for i in _missing_chunks(arr, rows)]
    if problems:
        return problems
    try:
        t = np.asarray(times[:rows])
    except Exception as e:  # noqa: BLE001 - any decode failure is a corrupt chunk
        return [Problem(f"time/{name} rows [0, {rows})", f"corrupt chunk ({type(e).__name__}: {e})")]
    starts = np.r_[0, ends[:-1]]
    for ep, (lo, hi) in enumerate(zip(starts, ends)):
        seg = t[lo:hi]
        if not np.all(np.isfinite(seg)):
            row = lo + int(np.flatnonzero(~np.isfinite(seg))[0])
            problems.append(Problem(f"time/{name} row {row} (episode {ep})",
                                    f"timestamp {float(t[row])} is not finite"))
        elif seg.size > 1 and np.any(np.diff(seg) <= 0):
            k = int(np.flatnonzero(np.diff(seg) <= 0)[0])
            problems.append(Problem(f"time/{name} row {lo + k + 1} (episode {ep})",
                                    f"non-monotonic timestamps: {float(seg[k])} -> {float(seg[k + 1])}"))
    if decode:
        per = values.metadata.chunk_grid.chunk_shape[0]
        check_finite = values.dtype.kind == "f"
        for i, lo in enumerate(range(0, rows, per)):
            hi = min(rows, lo + per)
            try:
                block = np.asarray(values[lo:hi])
            except Exception as e:  # noqa: BLE001
                problems.append(Problem(f"data/{name} rows [{lo}, {hi})", f"corrupt chunk in "
                                        f"{_chunk_file(store, values, i)} ({type(e).__name__}: {e})"))
                continue
            if check_finite:
                bad = np.flatnonzero(~np.isfinite(block.reshape(len(block), -1)).all(axis=1))
                if bad.size:
                    row = lo + int(bad[0])
                    problems.append(Problem(f"data/{name} row {row} (episode {_episode_of(ends, row)})",
                                            f"{bad.size} row(s) with non-finite values in rows [{lo}, {hi}), "
                                            f"first {block[bad[0]].ravel()[:4].tolist()}"))
    return problems


def require_valid_values(store: EpisodeStore, streams, decode_streams=()) -> None:
    """Raise StoreError naming the store, stream and rows if any of `streams` has a value problem;
    `decode_streams` are also fully decoded and checked for non-finite values (the streams a
    caller loads into memory; image streams are decoded frame by frame when read)."""
    problems = []
    for name in sorted(set(streams) | set(decode_streams)):
        problems += value_problems(store, name, decode=name in decode_streams)
    if problems:
        raise problems_error(store.path, problems)


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
    every value chunk (fast check of the layout, timestamps and chunk presence only)."""
    try:
        store = EpisodeStore.open(path, check=False)
    except StoreError as e:
        return [Problem(str(path), str(e))]
    problems: list[Problem] = []
    if store.header.get("open_episode"):
        problems.append(Problem("header", "an interrupted episode is pending: run `robot-rl data recover`"))
    layout = layout_problems(store)
    problems += layout
    if not any(p.where.startswith("meta/episode_info") for p in layout):
        for i, raw in enumerate(store.group["meta/episode_info"][: store.n_episodes]):
            try:
                meta = json.loads(str(raw))
            except json.JSONDecodeError:
                problems.append(Problem(f"meta/episode_info[{i}]", f"not valid JSON: {str(raw)[:80]!r}"))
                continue
            lost = losses(meta) if isinstance(meta, dict) else {}
            if lost:
                problems.append(Problem(f"meta/episode_info[{i}]", "samples lost while recording: " + "; ".join(
                    f"{what} {counts}" for what, counts in lost.items())))
    if not layout:  # an episode no training window can be read from (e.g. camera frames, no action)
        empty = np.flatnonzero(np.diff(np.r_[0, store.ends(store.index_stream)]) == 0)
        problems += [Problem(f"meta/ends/{store.index_stream}[{k}]", f"episode {k} has no row of the index "
                             f"stream {store.index_stream!r}") for k in empty]
    for name in store.streams:
        if stream_layout_problems(store, name):
            continue  # already reported; its rows cannot be located
        try:
            problems += value_problems(store, name, decode)
        except Exception as e:  # noqa: BLE001 - report, never crash the validator
            problems.append(Problem(f"stream {name}", f"{type(e).__name__}: {e}"))
    return problems
