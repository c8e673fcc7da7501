"""EpisodeWriter: records episodes into a store without ever blocking the caller on disk.

`append()` validates the sample, copies it and puts it on the queue of its stream's *lane*, a
background thread that buffers samples and writes whole chunks/shards (so each image shard is
encoded once). A full queue drops the sample and counts it; the count lands in the episode's
`dropped` metadata. A *committer* thread owns the store header: it journals the open episode at
`begin_episode`, and at `commit` waits for the lanes to flush, writes the episode index, then bumps
`n_episodes` (the commit point) in one atomic metadata write.

After a crash the journal (`open_episode` in the header) plus each lane's `flushed` journal
(attribute of `time/<stream>`: the end row flushed and the id of the episode those rows belong to)
let `recover()` commit or drop the interrupted episode. Each episode gets a fresh id at
`begin_episode`, so rows flushed for an episode that was later discarded (or dropped by recover)
can never be taken for rows of the next one.
"""

from __future__ import annotations

import datetime as _dt
import errno
import queue
import threading
import time
import uuid
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.core.errors import StoreError
from robot_rl.data import codecs
from robot_rl.data.schema import EpisodeMeta, StreamSpec
from robot_rl.data.recover import recover
from robot_rl.data.episode_store import ATTR, EpisodeStore, _is_url, write_episode_index

_STOP = object()


def _store_error(path, what: str, exc: BaseException) -> StoreError:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return StoreError(f"{path}: disk full while writing {what}; committed episodes are intact")
    if isinstance(exc, PermissionError):
        return StoreError(f"{path}: permission denied while writing {what}")
    return StoreError(f"{path}: failed writing {what}: {exc!r}")


class _Lane(threading.Thread):
    """Owns data/<stream> and time/<stream>: buffers samples and writes them in whole blocks."""

    def __init__(self, writer: "EpisodeWriter", spec: StreamSpec, start_row: int) -> None:
        super().__init__(name=f"episode-writer-{spec.name}", daemon=True)
        self.writer = writer
        self.spec = spec
        # write_empty_chunks: skip zarr's per-chunk "all fill value?" scan, which costs more than
        # the JPEG encode of a frame (an all-zero frame is then stored like any other)
        self.values = writer.store.group["data"][spec.name].with_config({"write_empty_chunks": True})
        self.times = writer.store.group["time"][spec.name]
        self.allocated = int(self.values.shape[0])
        self.block = codecs.block_rows(spec)
        self.queue: queue.Queue = queue.Queue()
        self.buf_start = start_row
        self.buf_v: list[np.ndarray] = []
        self.buf_t: list[float] = []
        self.oldest = 0.0
        self.episode: str | None = None  # id of the episode whose samples are being buffered
        self.error: BaseException | None = None

    def run(self) -> None:
        interval = self.writer.flush_interval_s
        while True:
            try:
                item = self.queue.get(timeout=interval)
            except queue.Empty:
                item = None
            try:
                if item is _STOP:
                    self._flush()
                    return
                if item is None:
                    pass
                elif item[0] == "sample":
                    _, value, t = item
                    if not self.buf_v:
                        self.oldest = time.monotonic()
                    self.buf_v.append(value)
                    self.buf_t.append(t)
                    self.writer._release(value.nbytes)
                    if (self.buf_start + len(self.buf_v)) % self.block == 0:
                        self._flush()
                elif item[0] == "flush":
                    self._flush()
                    item[1].set()
                elif item[0] == "begin":
                    self.episode = item[1]
                elif item[0] == "reset":
                    self.buf_v.clear()
                    self.buf_t.clear()
                    self.buf_start = item[1]
                    self.episode = None
                if self.buf_v and time.monotonic() - self.oldest > interval:
                    self._flush()
            except BaseException as e:  # keep serving markers so commit() can report the error
                self.error = self.error or e
                self.buf_v.clear()
                self.buf_t.clear()
                if item is not None and item is not _STOP and item[0] == "flush":
                    item[1].set()
                if item is _STOP:
                    return

    def _flush(self) -> None:
        n = len(self.buf_v)
        if n == 0:
            return
        lo, hi = self.buf_start, self.buf_start + n
        if hi > self.allocated:
            grow = max(hi, self.allocated + max(self.block, self.allocated // 4))
            grow = -(-grow // self.block) * self.block
            self.values.resize((grow, *self.spec.shape))
            self.times.resize((grow,))
            self.allocated = grow
        self.values[lo:hi] = np.stack(self.buf_v)
        self.times[lo:hi] = np.asarray(self.buf_t, dtype=np.float64)
        self.times.attrs["flushed"] = {"episode": self.episode, "end": hi}  # journal for recovery
        self.buf_v.clear()
        self.buf_t.clear()
        self.buf_start = hi


class EpisodeWriter:
    """Appends episodes to an EpisodeStore (see module docstring).

    max_queue_bytes: memory budget of samples waiting for disk; beyond it samples are dropped and
    counted (block_on_full=True waits instead, for offline conversion). flush_interval_s: the longest
    a sample stays in memory, which bounds what a crash of the process can lose.
    on_interrupted: what to do with an episode left open by a crashed writer: "error" (default),
    "commit" (keep what was flushed, marked recovered) or "discard".
    """

    def __init__(self, store: EpisodeStore, max_queue_bytes: int = 512 << 20, block_on_full: bool = False,
                 flush_interval_s: float = 1.0, on_interrupted: str = "error") -> None:
        if not store.writable:
            raise StoreError(f"{store.path}: opened read-only; use EpisodeStore.open(path, mode='a')")
        self.store = store
        self.path = store.path
        self.max_queue_bytes = int(max_queue_bytes)
        self.block_on_full = block_on_full
        self.flush_interval_s = float(flush_interval_s)
        self._lock_file = self._acquire_lock()
        if store.header.get("open_episode"):
            if on_interrupted == "error":
                self._release_lock()
                raise StoreError(
                    f"{self.path}: holds an interrupted episode (a recording process died); run "
                    f"`robot-rl data recover {self.path}` or open the writer with on_interrupted='commit'|'discard'"
                )
            recover(store, discard=on_interrupted == "discard")
            store.refresh()
        self._queued_bytes = 0
        self._bytes_lock = threading.Condition()
        self._committed_rows = {name: self._committed_end(name) for name in store.streams}
        self._rows = dict(self._committed_rows)
        self._lanes = {name: _Lane(self, spec, self._rows[name]) for name, spec in store.streams.items()}
        for lane in self._lanes.values():
            lane.start()
        self._jobs: queue.Queue = queue.Queue()
        self._committer = threading.Thread(target=self._commit_loop, name="episode-writer-commit", daemon=True)
        self._committer.start()
        self._n_episodes = store.n_episodes
        self._meta: EpisodeMeta | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def _acquire_lock(self):
        if _is_url(self.path):
            return None  # object stores have no locks: one writer per store is the caller's contract
        import fcntl

        f = open(Path(self.path) / ".writer.lock", "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise StoreError(f"{self.path}: another process is writing to this store") from None
        return f

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _committed_end(self, stream: str) -> int:
        ends = self.store.ends(stream)
        return int(ends[-1]) if len(ends) else 0

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Flush everything. An episode still open stays journaled and can be recovered."""
        if self._closed:
            return
        self._closed = True
        if self._meta is not None:
            warnings.warn(f"{self.path}: closing with episode open; its data is kept for `robot-rl data recover`")
        for lane in self._lanes.values():
            lane.queue.put(_STOP)
        for lane in self._lanes.values():
            lane.join()
        self._jobs.put(_STOP)
        self._committer.join()
        self._release_lock()

    # -- recording ---------------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        return self._meta is not None

    def begin_episode(self, meta: EpisodeMeta | dict | None = None) -> None:
        self._check_open()
        if self._meta is not None:
            raise StoreError(f"{self.path}: begin_episode() while an episode is open; commit() or discard() first")
        meta = EpisodeMeta.from_dict(meta) if isinstance(meta, dict) else (meta or EpisodeMeta())
        if not meta.start_time:
            meta.start_time = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
        self._meta = meta
        self._dropped = {name: 0 for name in self.store.streams}
        self._t_first: dict[str, float] = {}
        self._t_last: dict[str, float] = {}
        episode_id = uuid.uuid4().hex
        for lane in self._lanes.values():
            lane.queue.put(("begin", episode_id))
        self._jobs.put(("begin", meta.to_dict(), dict(self._committed_rows), episode_id))

    def append(self, stream: str, value: Any, t: float) -> bool:
        """Queue one sample of `stream` taken at time `t` (seconds). Returns False if it was dropped
        because the write queue is full. Raises StoreError on a wrong stream, dtype, shape or time."""
        if self._meta is None:
            raise StoreError(f"{self.path}: append({stream!r}) with no open episode; call begin_episode() first")
        lane = self._lanes.get(stream)
        if lane is None:
            raise StoreError(f"{self.path}: unknown stream {stream!r}; streams are {sorted(self._lanes)}")
        if lane.error is not None:
            raise _store_error(self.path, f"data/{stream}", lane.error)
        spec = lane.spec
        arr = np.asarray(value)
        if arr.shape != spec.shape:
            raise StoreError(f"{self.path}: stream {stream}: sample shape {arr.shape} != declared {spec.shape}")
        if arr.dtype != spec.dtype and not np.can_cast(arr.dtype, spec.dtype, "same_kind"):
            raise StoreError(f"{self.path}: stream {stream}: dtype {arr.dtype} cannot be stored as {spec.dtype}")
        t = float(t)
        last = self._t_last.get(stream)
        if not np.isfinite(t) or (last is not None and t <= last):
            raise StoreError(
                f"{self.path}: stream {stream}: timestamp {t!r} is not finite and increasing (previous {last!r})"
            )
        arr = np.array(arr, dtype=spec.dtype, copy=True)
        if not self._reserve(arr.nbytes):
            self._dropped[stream] += 1
            return False
        self._t_last[stream] = t
        self._t_first.setdefault(stream, t)
        self._rows[stream] += 1
        lane.queue.put(("sample", arr, t))
        return True

    def commit(self, success: bool | None = None, wait: bool = True, **meta_updates: Any) -> Future:
        """Make the open episode visible. Returns a Future with its index; with wait=True (default)
        it returns after the episode is durable. Meta fields (e.g. reward_labels, notes) may be given."""
        if self._meta is None:
            raise StoreError(f"{self.path}: commit() with no open episode")
        if not self._t_last:
            raise StoreError(f"{self.path}: commit() of an episode with no samples; use discard()")
        meta = self._meta
        if success is not None:
            meta.success = bool(success)
        for key, value in meta_updates.items():
            if key in EpisodeMeta.__dataclass_fields__:
                setattr(meta, key, value)
            else:
                meta.extra[key] = value
        meta.dropped = {k: v for k, v in self._dropped.items() if v}
        meta.duration_s = max(self._t_last.values()) - min(self._t_first.values())
        events = {}
        for name, lane in self._lanes.items():
            events[name] = threading.Event()
            lane.queue.put(("flush", events[name]))
        future: Future = Future()
        ends = dict(self._rows)
        self._jobs.put(("commit", meta.to_dict(), ends, events, future))
        self._committed_rows = ends
        self._meta = None
        if wait:
            future.result()
        return future

    def journal(self, **meta_updates: Any) -> None:
        """Update the open episode's journaled metadata (e.g. success, extra) without waiting, so that
        `recover()` after a crash commits what was known until then (an operator's label, loss counts)."""
        if self._meta is None:
            raise StoreError(f"{self.path}: journal() with no open episode")
        self._jobs.put(("journal", dict(meta_updates)))

    def discard(self) -> None:
        """Drop the open episode; nothing of it becomes visible."""
        if self._meta is None:
            raise StoreError(f"{self.path}: discard() with no open episode")
        for name, lane in self._lanes.items():
            lane.queue.put(("reset", self._committed_rows[name]))
        self._rows = dict(self._committed_rows)
        self._meta = None
        self._jobs.put(("discard",))

    def wait(self) -> None:
        """Block until every queued commit is durable."""
        done = threading.Event()
        self._jobs.put(("barrier", done))
        done.wait()

    # -- internals ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: writer is closed")

    def _reserve(self, nbytes: int) -> bool:
        with self._bytes_lock:
            while self._queued_bytes + nbytes > self.max_queue_bytes:
                if not self.block_on_full:
                    return False
                self._bytes_lock.wait()
            self._queued_bytes += nbytes
            return True

    def _release(self, nbytes: int) -> None:
        with self._bytes_lock:
            self._queued_bytes -= nbytes
            self._bytes_lock.notify_all()

    def _set_header(self, **fields: Any) -> None:
        header = dict(self.store.group.attrs[ATTR])
        header.update(fields)
        self.store.group.attrs[ATTR] = header

    def _commit_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            kind = job[0]
            try:
                if kind == "begin":
                    _, meta, start_rows, episode_id = job
                    self._set_header(open_episode={"id": episode_id, "meta": meta, "start_rows": start_rows})
                elif kind == "discard":
                    self._set_header(open_episode=None)
                elif kind == "journal":
                    entry = self.store.group.attrs[ATTR].get("open_episode")
                    if entry:  # else committed or discarded meanwhile
                        self._set_header(open_episode={**entry, "meta": {**entry["meta"], **job[1]}})
                elif kind == "barrier":
                    job[1].set()
                elif kind == "commit":
                    _, meta, ends, events, future = job
                    for event in events.values():
                        event.wait()
                    failed = [n for n, lane in self._lanes.items() if lane.error is not None]
                    if failed:
                        lane = self._lanes[failed[0]]
                        future.set_exception(_store_error(self.path, f"data/{failed[0]}", lane.error))
                        continue
                    index = write_episode_index(self.store, self._n_episodes, meta, ends)
                    self._n_episodes += 1
                    future.set_result(index)
            except BaseException as e:
                if kind == "commit":
                    job[-1].set_exception(_store_error(self.path, "the episode index", e))
                else:
                    for lane in self._lanes.values():
                        lane.error = lane.error or e
