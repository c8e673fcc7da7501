"""The episode store: one zarr (v3) group holding many episodes of multi-rate streams.

Layout (all episodes concatenated on axis 0, diffusion_policy-style episode index):

    <store>/zarr.json            attrs["robot_rl"] = {format, version, streams, index_stream,
                                                      n_episodes, open_episode}
    data/<stream>                values, (N_stream, *shape)
    time/<stream>                float64 timestamps in seconds, (N_stream,)
    meta/episode_ends            int64 (E,): cumulative exclusive ends of the index stream
    meta/ends/<stream>           int64 (E,): cumulative exclusive ends of each stream
    meta/episode_info            str (E,): JSON of each episode's EpisodeMeta

`n_episodes` in the root attributes is the commit point: readers only see episodes below it, so a
crash while recording never exposes a half-written episode. Rows past the last committed end belong
to the open (or an interrupted) episode; `recover()` commits or drops them.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import zarr
import zarr.errors

from robot_rl.core.errors import StoreError
from robot_rl.data import codecs
from robot_rl.data.schema import StreamSpec

FORMAT = "robot_rl.episode_store"
VERSION = 1
ATTR = "robot_rl"


def _is_url(path: str | Path) -> bool:
    return "://" in str(path)


def _creation_dir(target: Path) -> Path:
    """A fresh temporary directory beside `target` to build a store in; also removes those left by
    creating processes that died (their pid is in the name)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.creating-"
    for stale in target.parent.glob(prefix + "*"):
        pid = stale.name[len(prefix):].split("-")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return target.parent / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _open_group(path: str | Path, mode: str, storage_options: dict | None = None) -> zarr.Group:
    kwargs = {"storage_options": storage_options} if storage_options and _is_url(path) else {}
    try:
        return zarr.open_group(str(path), mode=mode, zarr_format=3, **kwargs)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        raise StoreError(f"{path}: no episode store here (no zarr v3 group)") from None
    except PermissionError as e:
        raise StoreError(f"{path}: permission denied ({e})") from None


@dataclass
class Episode:
    """A committed episode: per-stream row ranges into the store's arrays."""

    store: "EpisodeStore"
    index: int
    meta: dict

    def rows(self, stream: str) -> tuple[int, int]:
        return self.store.episode_rows(self.index, stream)

    def read(self, stream: str, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Values and timestamps of `stream`, rows [start, stop) relative to the episode start."""
        return self.store.read(stream, self.index, start, stop)

    def times(self, stream: str) -> np.ndarray:
        lo, hi = self.rows(stream)
        return self.store.group["time"][stream][lo:hi]

    def length(self, stream: str) -> int:
        lo, hi = self.rows(stream)
        return hi - lo


class EpisodeStore:
    """Reader (and factory for the writer) of an episode store at a local path or fsspec URL."""

    def __init__(self, group: zarr.Group, path: str | Path, writable: bool) -> None:
        self.group = group
        self.path = path
        self.writable = writable
        self._load_header()

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, streams: Sequence[StreamSpec], index_stream: str | None = None,
               exist_ok: bool = False, storage_options: dict | None = None,
               jpeg_quality: int = 90) -> "EpisodeStore":
        """Create an empty store with the given streams. `index_stream` (default: `action` if
        present, else the first stream) defines `meta/episode_ends` for diffusion_policy tools."""
        if not streams:
            raise StoreError(f"{path}: a store needs at least one stream")
        names = [s.name for s in streams]
        if len(set(names)) != len(names):
            raise StoreError(f"{path}: duplicate stream names {names}")
        index_stream = index_stream or ("action" if "action" in names else names[0])
        if index_stream not in names:
            raise StoreError(f"{path}: index_stream {index_stream!r} is not one of the streams {names}")
        if not _is_url(path) and Path(path).exists():
            if not exist_ok:
                raise StoreError(f"{path}: already exists; open it with EpisodeStore.open(path, mode='a')")
            store = cls.open(path, mode="a")
            if sorted(store.streams) != sorted(names):
                raise StoreError(f"{path}: exists with streams {sorted(store.streams)}, not {sorted(names)}")
            return store
        local = not _is_url(path)
        # a local store is built under a temporary name and renamed into place, so a process killed
        # while creating it leaves no half-made store at `path` (an object store has no rename: its
        # header, written last, is what makes it a store)
        build = path
        try:
            build = _creation_dir(Path(path)) if local else path
            root = _open_group(build, "w", storage_options)
            for spec in streams:
                root.create_array(f"data/{spec.name}", shape=(0, *spec.shape), dtype=spec.dtype,
                                  fill_value=0, **codecs.value_array_kwargs(spec, jpeg_quality))
                root.create_array(f"time/{spec.name}", shape=(0,), dtype="float64", fill_value=np.nan,
                                  **codecs.time_array_kwargs(spec))
                root.create_array(f"meta/ends/{spec.name}", shape=(0,), dtype="int64", chunks=(4096,), fill_value=0)
            root.create_array("meta/episode_ends", shape=(0,), dtype="int64", chunks=(4096,), fill_value=0)
            root.create_array("meta/episode_info", shape=(0,), dtype=str, chunks=(1024,))
            root.attrs[ATTR] = {
                "format": FORMAT, "version": VERSION, "index_stream": index_stream,
                "streams": {s.name: s.to_dict() for s in streams}, "n_episodes": 0, "open_episode": None,
            }
            if local:
                os.rename(build, path)
                root = _open_group(path, "r+")
        except OSError as e:
            if local and build != path:
                shutil.rmtree(build, ignore_errors=True)
                if Path(path).exists():  # another process created it meanwhile
                    return cls.create(path, streams, index_stream, exist_ok, storage_options, jpeg_quality)
            raise StoreError(f"{path}: cannot create store ({e.strerror or e})") from None
        except BaseException:
            if local and build != path:
                shutil.rmtree(build, ignore_errors=True)
            raise
        return cls(root, path, writable=True)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r", storage_options: dict | None = None) -> "EpisodeStore":
        """Open an existing store; mode 'r' (read-only) or 'a' (append episodes)."""
        if mode not in ("r", "a"):
            raise StoreError(f"{path}: mode must be 'r' or 'a', got {mode!r}")
        if not _is_url(path) and not Path(path).exists():
            raise StoreError(f"{path}: does not exist")
        group = _open_group(path, "r" if mode == "r" else "r+", storage_options)
        return cls(group, path, writable=mode == "a")

    def _load_header(self) -> None:
        header = self.group.attrs.get(ATTR)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise StoreError(f"{self.path}: not a robot_rl episode store (missing attrs[{ATTR!r}].format={FORMAT!r})")
        if int(header.get("version", 0)) > VERSION:
            raise StoreError(f"{self.path}: store version {header.get('version')} is newer than supported ({VERSION})")
        self.header = header
        self.streams: dict[str, StreamSpec] = {
            name: StreamSpec.from_dict(d) for name, d in header["streams"].items()
        }
        self.index_stream: str = header["index_stream"]
        self.n_episodes: int = int(header["n_episodes"])
        self._ends: dict[str, np.ndarray] = {}

    def refresh(self) -> None:
        """Re-read the header to see episodes committed since opening."""
        self.group = zarr.open_group(self.group.store, mode="r" if not self.writable else "r+", zarr_format=3)
        self._load_header()

    def __len__(self) -> int:
        return self.n_episodes

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.path)!r}, episodes={self.n_episodes}, streams={list(self.streams)})"

    # -- index -------------------------------------------------------------------------------
    def _check_stream(self, stream: str) -> StreamSpec:
        try:
            return self.streams[stream]
        except KeyError:
            raise StoreError(f"{self.path}: unknown stream {stream!r}; streams are {sorted(self.streams)}") from None

    def ends(self, stream: str) -> np.ndarray:
        """Cumulative exclusive end row of each committed episode in `stream`, int64 (E,)."""
        self._check_stream(stream)
        if stream not in self._ends:
            ends = self.group["meta/ends"][stream][: self.n_episodes]
            if len(ends) != self.n_episodes:
                raise StoreError(
                    f"{self.path}: meta/ends/{stream} has {len(ends)} entries for {self.n_episodes} "
                    f"committed episodes; run `robot-rl data validate`"
                )
            self._ends[stream] = np.asarray(ends, dtype=np.int64)
        return self._ends[stream]

    @property
    def episode_ends(self) -> np.ndarray:
        """diffusion_policy-compatible ends of the index stream."""
        return self.ends(self.index_stream)

    def _check_episode(self, episode: int) -> int:
        if not isinstance(episode, (int, np.integer)):
            raise StoreError(f"{self.path}: episode index must be an int, got {episode!r}")
        if episode < 0:
            episode += self.n_episodes
        if not 0 <= episode < self.n_episodes:
            raise StoreError(f"{self.path}: episode {episode} does not exist (store has {self.n_episodes})")
        return int(episode)

    def episode_rows(self, episode: int, stream: str) -> tuple[int, int]:
        episode = self._check_episode(episode)
        ends = self.ends(stream)
        return (int(ends[episode - 1]) if episode else 0), int(ends[episode])

    def episode_meta(self, episode: int) -> dict:
        episode = self._check_episode(episode)
        raw = self.group["meta/episode_info"][episode]
        try:
            return json.loads(str(raw))
        except json.JSONDecodeError:
            raise StoreError(f"{self.path}: meta/episode_info[{episode}] is not valid JSON: {str(raw)[:80]!r}") from None

    def episode(self, episode: int) -> Episode:
        episode = self._check_episode(episode)
        return Episode(self, episode, self.episode_meta(episode))

    def episodes(self) -> Iterable[Episode]:
        for i in range(self.n_episodes):
            yield self.episode(i)

    # -- data --------------------------------------------------------------------------------
    def values(self, stream: str) -> zarr.Array:
        """The lazily read value array of `stream` (all episodes; rows past the last end are uncommitted)."""
        self._check_stream(stream)
        return self.group["data"][stream]

    def times(self, stream: str) -> zarr.Array:
        self._check_stream(stream)
        return self.group["time"][stream]

    def read(self, stream: str, episode: int, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.episode_rows(episode, stream)
        n = hi - lo
        stop = n if stop is None else min(stop, n)
        if not 0 <= start <= stop:
            raise StoreError(f"{self.path}: rows [{start}, {stop}) out of range for {stream} episode {episode} ({n} rows)")
        return self.values(stream)[lo + start: lo + stop], self.times(stream)[lo + start: lo + stop]

    def writer(self, **kwargs):
        """An EpisodeWriter appending to this store (opened with mode='a' or created)."""
        from robot_rl.data.writer import EpisodeWriter

        if not self.writable:
            raise StoreError(f"{self.path}: opened read-only; use EpisodeStore.open(path, mode='a')")
        return EpisodeWriter(self, **kwargs)

    def meta_list(self) -> list[dict]:
        """All committed episodes' metadata (one read)."""
        raw = self.group["meta/episode_info"][: self.n_episodes]
        return [json.loads(str(r)) for r in raw]
