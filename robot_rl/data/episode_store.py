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

Opening a store checks its layout (`layout_problems`: the header, every array's dtype and shape
against it, and the episode index against the arrays), which costs a few small reads; checks that
read every value (`robot_rl.data.validate`) run in `robot-rl data validate` and when training loads
the data. A store that fails either is refused with a StoreError naming the file, stream and rows.
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
    except (ValueError, TypeError, KeyError) as e:  # zarr.json that is not JSON or not zarr metadata
        raise StoreError(f"{path}/zarr.json: not valid zarr v3 group metadata ({type(e).__name__}: {e})") from None


@dataclass
class Problem:
    """One integrity problem: `where` names the array (and entry or rows), `what` says what is wrong."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def problems_error(path, problems: list[Problem]) -> StoreError:
    """A StoreError listing `problems` of the store at `path` (the first few; validate lists all)."""
    shown = "; ".join(str(p) for p in problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
    return StoreError(f"{path}: corrupt episode store: {shown}; run `robot-rl data validate {path}` for every problem")


def _array(group: zarr.Group, name: str, dtype, tail: tuple, problems: list[Problem]) -> zarr.Array | None:
    """group[name] if it is an array of `dtype` with (rows, *tail) shape, else None with a problem."""
    try:
        arr = group[name]
    except KeyError:
        problems.append(Problem(name, "array is missing"))
        return None
    except (ValueError, TypeError) as e:
        problems.append(Problem(f"{name}/zarr.json", f"unreadable array metadata ({type(e).__name__}: {e})"))
        return None
    if not isinstance(arr, zarr.Array):
        problems.append(Problem(name, "is a group, not an array"))
        return None
    if arr.dtype != np.dtype(dtype) or tuple(arr.shape[1:]) != tuple(tail):
        problems.append(Problem(name, f"holds {arr.dtype} rows of shape {tuple(arr.shape[1:])}, the header "
                                      f"declares {np.dtype(dtype)} rows of shape {tuple(tail)}"))
        return None
    return arr


def stream_layout_problems(store: "EpisodeStore", name: str) -> list[Problem]:
    """Cheap checks of one stream: its arrays match the header, and the committed ends in
    meta/ends/<name> are non-decreasing and within the data. Caches the ends on success."""
    spec, n, problems = store.streams[name], store.n_episodes, []
    values = _array(store.group, f"data/{name}", spec.dtype, spec.shape, problems)
    times = _array(store.group, f"time/{name}", "float64", (), problems)
    ends_arr = _array(store.group, f"meta/ends/{name}", "int64", (), problems)
    if problems:
        return problems
    ends = np.asarray(ends_arr[:n], dtype=np.int64)
    if len(ends) < n:
        return [Problem(f"meta/ends/{name}", f"{len(ends)} entries for {n} committed episodes")]
    starts = np.r_[0, ends[:-1]]
    if np.any(ends < starts):
        k = int(np.flatnonzero(ends < starts)[0])
        return [Problem(f"meta/ends/{name}[{k}]", f"end {ends[k]} of episode {k} is before its start {starts[k]}")]
    for label, arr in (("data", values), ("time", times)):
        past = np.flatnonzero(ends > arr.shape[0])
        if past.size:
            k = int(past[0])
            problems.append(Problem(f"meta/ends/{name}[{k}]", f"episode {k} ends at row {ends[k]}, past the data: "
                                                              f"{label}/{name} has {arr.shape[0]} rows"))
    if not problems:
        store._ends[name] = ends
    return problems


def layout_problems(store: "EpisodeStore") -> list[Problem]:
    """Cheap integrity checks run at every open (a few metadata reads and the small index arrays):
    each stream's layout, arrays of streams the header does not list, meta/episode_ends against the
    index stream's ends and meta/episode_info's length."""
    problems: list[Problem] = []
    n = store.n_episodes
    for name in store.streams:
        problems += stream_layout_problems(store, name)
    for group in ("data", "time"):
        try:
            extra = sorted(set(store.group[group].array_keys()) - set(store.streams))
        except (KeyError, ValueError, TypeError) as e:
            problems.append(Problem(group, f"unreadable group ({type(e).__name__}: {e})"))
            continue
        problems += [Problem(f"{group}/{x}", "array of a stream missing from the header (zarr.json "
                             f"attributes.{ATTR}.streams)") for x in extra]
    index_ends = _array(store.group, "meta/episode_ends", "int64", (), problems)
    try:
        n_info = store.group["meta/episode_info"].shape[0]
        if n_info < n:
            problems.append(Problem("meta/episode_info", f"{n_info} entries for {n} committed episodes"))
    except (KeyError, ValueError, TypeError) as e:
        problems.append(Problem("meta/episode_info", f"missing or unreadable ({type(e).__name__}: {e})"))
    ends = store._ends.get(store.index_stream)
    if index_ends is not None and ends is not None:
        got = np.asarray(index_ends[:n], dtype=np.int64)
        if len(got) < n:
            problems.append(Problem("meta/episode_ends", f"{len(got)} entries for {n} committed episodes"))
        elif not np.array_equal(got, ends):
            k = int(np.flatnonzero(got != ends)[0])
            problems.append(Problem(f"meta/episode_ends[{k}]", f"= {got[k]}, but meta/ends/{store.index_stream}[{k}] "
                                                               f"= {ends[k]} (the index stream's end of episode {k})"))
    return problems


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

    def __init__(self, group: zarr.Group, path: str | Path, writable: bool, check: bool = True) -> None:
        self.group = group
        self.path = path
        self.writable = writable
        self.check = check
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
            if local:
                os.mkdir(build)  # an unwritable place fails here with the OS's reason, not as "no store"
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
    def open(cls, path: str | Path, mode: str = "r", storage_options: dict | None = None,
             check: bool = True) -> "EpisodeStore":
        """Open an existing store; mode 'r' (read-only) or 'a' (append episodes). Raises StoreError if
        the layout checks fail (check=False skips them: `data validate` reports them itself)."""
        if mode not in ("r", "a"):
            raise StoreError(f"{path}: mode must be 'r' or 'a', got {mode!r}")
        if not _is_url(path) and not Path(path).exists():
            raise StoreError(f"{path}: does not exist")
        group = _open_group(path, "r" if mode == "r" else "r+", storage_options)
        return cls(group, path, writable=mode == "a", check=check)

    def _load_header(self) -> None:
        where = f"{self.path}/zarr.json: attributes.{ATTR}"
        header = self.group.attrs.get(ATTR)
        if header is None:
            raise StoreError(f"{self.path}: not a robot_rl episode store (zarr.json has no attributes.{ATTR}); "
                             "an older robot_rl killed while creating a store left such a directory: it holds no "
                             "episodes, delete it and create the store again")
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            got = header.get("format") if isinstance(header, dict) else header
            raise StoreError(f"{self.path}: not a robot_rl episode store ({where}.format is {str(got)[:80]!r}, "
                             f"expected {FORMAT!r})")

        def field(name, ok, expected):
            value = header.get(name)
            if not ok(value):
                raise StoreError(f"{where}.{name} is {str(value)[:80]!r}: expected {expected}")
            return value

        is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        version = field("version", lambda v: is_int(v) and v >= 1, "a positive integer")
        if version > VERSION:
            raise StoreError(f"{self.path}: store version {version} is newer than supported ({VERSION})")
        raw = field("streams", lambda v: isinstance(v, dict) and v and all(isinstance(d, dict) for d in v.values()),
                    "a mapping of stream names to stream specs")
        streams = {}
        for name, d in raw.items():
            try:
                streams[name] = StreamSpec.from_dict(d)
            except (StoreError, TypeError, ValueError) as e:
                raise StoreError(f"{where}.streams.{name} is {str(d)[:160]}: {e}") from None
            if streams[name].name != name:
                raise StoreError(f"{where}.streams.{name}: spec is named {streams[name].name!r}")
        self.index_stream: str = field("index_stream", lambda v: v in streams, f"one of the streams {sorted(streams)}")
        self.n_episodes: int = field("n_episodes", lambda v: is_int(v) and v >= 0, "a non-negative integer")
        field("open_episode", lambda v: v is None or isinstance(v, dict), "null or the journal of an open episode")
        self.header = header
        self.streams: dict[str, StreamSpec] = streams
        self._ends: dict[str, np.ndarray] = {}
        if self.check:
            problems = layout_problems(self)
            if problems:
                raise problems_error(self.path, problems)

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

    def meta_list(self) -> list[dict]:
        """All committed episodes' metadata (one read)."""
        raw = self.group["meta/episode_info"][: self.n_episodes]
        metas = []
        for i, r in enumerate(raw):
            try:
                metas.append(json.loads(str(r)))
            except json.JSONDecodeError:
                raise StoreError(f"{self.path}: meta/episode_info[{i}] is not valid JSON: {str(r)[:80]!r}") from None
        return metas


def write_episode_index(store: EpisodeStore, index: int, meta: dict, ends: dict[str, int]) -> int:
    """Append episode `index` to the index arrays, then publish it (the commit point)."""
    group = store.group
    for name, end in ends.items():
        arr = group["meta/ends"][name]
        arr.resize((index + 1,))
        arr[index] = end
    arr = group["meta/episode_ends"]
    arr.resize((index + 1,))
    arr[index] = ends[store.index_stream]
    info = group["meta/episode_info"]
    info.resize((index + 1,))
    info[index] = json.dumps(meta, default=str)
    header = dict(group.attrs[ATTR])
    header.update(n_episodes=index + 1, open_episode=None)
    group.attrs[ATTR] = header
    store.n_episodes = index + 1
    store.header = header
    store._ends.clear()
    return index
