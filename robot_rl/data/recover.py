"""Recovery of an episode left open by a recording process that died (kill -9, power loss)."""

from __future__ import annotations

import numpy as np

from robot_rl.core.errors import StoreError
from robot_rl.data.store import ATTR, EpisodeStore


def recover(store: EpisodeStore, discard: bool = False) -> dict:
    """Commit what was flushed of the interrupted episode (marked source='recovered'; success as
    journaled, i.e. unknown unless the operator labelled it before the crash), or drop it with discard=True. Returns a summary dict; a store without an interrupted
    episode is left unchanged."""
    from robot_rl.data.writer import write_episode_index

    if not store.writable:
        raise StoreError(f"{store.path}: open with mode='a' to recover")
    journal = store.header.get("open_episode")
    if not journal:
        return {"action": "none", "reason": "no interrupted episode"}
    start_rows = journal["start_rows"]
    ends, times = {}, {}
    for name in store.streams:
        t_arr = store.group["time"][name]
        flushed = int(t_arr.attrs.get("flushed", 0))
        start = int(start_rows.get(name, 0))
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
    rows = sum(ends[n] - int(start_rows.get(n, 0)) for n in ends)
    if discard or rows == 0:
        header = dict(store.group.attrs[ATTR])
        header["open_episode"] = None
        store.group.attrs[ATTR] = header
        store.header = header
        return {"action": "discarded", "rows": rows}
    meta = dict(journal["meta"])
    meta["extra"] = dict(meta.get("extra") or {}) | {"recovered_from_source": meta.get("source")}
    meta.update(source="recovered", success=meta.get("success"))
    meta["duration_s"] = max(t1 for _, t1 in times.values()) - min(t0 for t0, _ in times.values())
    index = write_episode_index(store, store.n_episodes, meta, ends)
    return {"action": "committed", "episode": index, "rows": {n: ends[n] - int(start_rows.get(n, 0)) for n in ends}}
