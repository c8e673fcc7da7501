"""Recovery of an episode left open by a recording process that died (kill -9, power loss)."""

from __future__ import annotations

import numpy as np

from robot_rl.core.errors import StoreError
from robot_rl.data.episode_store import ATTR, EpisodeStore, write_episode_index


def flushed_end(journal: dict, flushed, start: int) -> int:
    """End row of what a lane flushed for the journaled episode. The lane's journal names the
    episode its rows belong to; rows of any other episode (one discarded, or dropped by a previous
    recover) count as nothing flushed. Journals written before episodes had ids are plain ints."""
    if isinstance(flushed, dict):
        ok = journal.get("id") is not None and flushed.get("episode") == journal.get("id")
        return int(flushed.get("end", start)) if ok else start
    if isinstance(flushed, int) and "id" not in journal:
        return flushed
    return start


def recover(store: EpisodeStore, discard: bool = False) -> dict:
    """Commit what was flushed of the interrupted episode (marked source='recovered'; success as
    journaled, i.e. unknown unless the operator labelled it before the crash), or drop it with
    discard=True. An episode with no row of the index stream (e.g. camera frames but no action) is
    dropped: training cannot use it and it would break the diffusion_policy episode index. Returns a
    summary dict; a store without an interrupted episode is left unchanged."""
    if not store.writable:
        raise StoreError(f"{store.path}: open with mode='a' to recover")
    journal = store.header.get("open_episode")
    if not journal:
        return {"action": "none", "reason": "no interrupted episode"}
    if not isinstance(journal, dict) or not isinstance(journal.get("start_rows"), dict):
        raise StoreError(f"{store.path}/zarr.json: attributes.{ATTR}.open_episode is malformed: {str(journal)[:120]}")
    start_rows = journal["start_rows"]
    ends, times = {}, {}
    for name in store.streams:
        t_arr = store.group["time"][name]
        start = int(start_rows.get(name, 0))
        flushed = flushed_end(journal, t_arr.attrs.get("flushed"), start)
        end = max(start, min(flushed, t_arr.shape[0]))
        t = t_arr[start:end]
        # keep the longest prefix with valid, increasing timestamps
        bad = np.flatnonzero(~np.isfinite(t) | np.r_[False, np.diff(t) <= 0])
        if bad.size:
            end = start + int(bad[0])
            t = t[: bad[0]]
        ends[name] = end
        if t.size:
            times[name] = (float(t[0]), float(t[-1]))
    rows = {n: ends[n] - int(start_rows.get(n, 0)) for n in ends}
    reason = None
    if discard:
        reason = "asked to discard"
    elif rows[store.index_stream] == 0:
        reason = f"no rows of the index stream {store.index_stream!r}"
    if reason:
        header = dict(store.group.attrs[ATTR])
        header["open_episode"] = None
        store.group.attrs[ATTR] = header
        store.header = header
        return {"action": "discarded", "reason": reason, "rows": rows}
    meta = dict(journal["meta"])
    meta["extra"] = dict(meta.get("extra") or {}) | {"recovered_from_source": meta.get("source")}
    meta.update(source="recovered", success=meta.get("success"))
    meta["duration_s"] = max(t1 for _, t1 in times.values()) - min(t0 for t0, _ in times.values())
    index = write_episode_index(store, store.n_episodes, meta, ends)
    return {"action": "committed", "episode": index, "rows": rows}
