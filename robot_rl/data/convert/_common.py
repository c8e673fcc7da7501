"""Helpers shared by the converters: option checking, output folders, episode selection, import."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from robot_rl.core.errors import ConfigError, StoreError
from robot_rl.data.schema import EpisodeMeta, StreamSpec
from robot_rl.data.episode_store import EpisodeStore, _is_url


def check_options(fmt: str, action: str, options: Mapping[str, Any], known: Iterable[str]) -> dict:
    """Reject unknown option names (a typo must not silently fall back to a default)."""
    known = set(known)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"{fmt} {action}: unknown option(s) {unknown}; known options are {sorted(known)}")
    return dict(options)


def as_list(value: Any, what: str) -> list | None:
    """A list option given as a list, a tuple or a comma-separated string (from the command line)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigError(f"option {what}={value!r}: expected a list or a comma-separated string")


def as_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"option {what}={value!r}: expected true or false")


def select_streams(store: EpisodeStore, streams: Any) -> list[str]:
    names = as_list(streams, "streams")
    if names is None:
        return list(store.streams)
    for name in names:
        store._check_stream(name)
    return names


def select_episodes(store: EpisodeStore, episodes: Any) -> list[int]:
    """All committed episodes, or a list of indices / a 'a:b' range."""
    if episodes is None:
        return list(range(store.n_episodes))
    if isinstance(episodes, str) and ":" in episodes:
        lo, _, hi = episodes.partition(":")
        return list(range(store.n_episodes))[slice(int(lo) if lo else None, int(hi) if hi else None)]
    out = []
    for e in as_list(episodes if not isinstance(episodes, int) else [episodes], "episodes"):
        try:
            out.append(store._check_episode(int(e)))
        except ValueError:
            raise ConfigError(f"option episodes: {e!r} is not an episode index") from None
    return out


def _is_episode_store(path: Path) -> bool:
    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return isinstance(attrs.get("robot_rl"), dict) and attrs["robot_rl"].get("format") == "robot_rl.episode_store"


def fresh_output(out: str | Path, overwrite: bool, what: str, source: str | Path | None = None) -> Path:
    """A temporary sibling folder to write into; `publish()` moves it into place when complete,
    so an interrupted export never leaves a half-written dataset under the final name. Recorded
    data is never replaced: the output may not be (or contain) the source or any episode store."""
    out = Path(out)
    if source is not None and not _is_url(source):
        src = Path(source).resolve()
        if out.resolve() == src or src.is_relative_to(out.resolve()) or out.resolve().is_relative_to(src):
            raise StoreError(f"{out}: is the source store {source} or overlaps it; export elsewhere")
    if out.exists() and not overwrite:
        raise StoreError(f"{out}: already exists; choose another output or pass overwrite=true to replace this {what}")
    if out.exists() and _is_episode_store(out):
        raise StoreError(f"{out}: is an episode store; an export never replaces recorded data")
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()
    return tmp


@contextmanager
def staged_output(out: str | Path, overwrite: bool, what: str, source: str | Path | None = None) -> Iterator[Path]:
    """Write into a temporary folder; on success move it to `out`, on error remove it."""
    tmp = fresh_output(out, overwrite, what, source)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(tmp, out)


def publish(tmp: Path, out: str | Path) -> Path:
    out = Path(out)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(tmp, out)
    return out


def image_codec_for(dtype: np.dtype, shape: tuple[int, ...], jpeg: bool = True) -> str:
    """Store codec for an imported array: jpeg for uint8 RGB/gray frames (lossy, small), png for
    other uint8/uint16 frames (lossless), zstd for everything else."""
    if len(shape) == 3 and dtype == np.uint8 and shape[2] in (1, 3):
        return "jpeg" if jpeg else "png"
    if len(shape) in (2, 3) and dtype in (np.uint8, np.uint16) and (len(shape) == 2 or shape[2] in (1, 3, 4)):
        return "png"
    return "zstd"


def spec_from_array(name: str, dtype: Any, shape: tuple[int, ...], rate_hz: float, original: Mapping | None = None,
                    image_codec: str = "auto", **fields: Any) -> StreamSpec:
    """A StreamSpec for imported data: the original spec (round trip) with the new rate, or one
    inferred from dtype/shape (images hold, continuous signals linear)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise StoreError(f"stream {name}: dtype {dtype} cannot be imported (numeric or bool only)")
    if original:
        d = dict(original) | {"name": name, "rate_hz": float(rate_hz), "dtype": dtype.name, "shape": list(shape)}
        if d.get("codec") in ("jpeg", "png"):
            try:
                return StreamSpec.from_dict(d)
            except StoreError:
                d["codec"] = "zstd"
        return StreamSpec.from_dict(d)
    is_frame = len(shape) >= 2
    if image_codec == "auto":
        codec = image_codec_for(dtype, shape) if is_frame else "zstd"
    else:
        codec = image_codec if is_frame else "zstd"
    interp = fields.pop("interp", None) or ("hold" if is_frame or dtype.kind in "biu" else "linear")
    if interp == "slerp" and shape != (4,):
        interp = "linear"
    return StreamSpec(name=name, dtype=dtype.name, shape=tuple(shape), rate_hz=float(rate_hz), codec=codec,
                      interp=interp, **fields)


def create_import_store(out: str | Path, specs: list[StreamSpec], index_stream: str | None, append: bool,
                        jpeg_quality: int = 90) -> EpisodeStore:
    if append and Path(out).exists():
        store = EpisodeStore.open(out, mode="a")
        have = {n: (s.dtype, s.shape) for n, s in store.streams.items()}
        want = {s.name: (s.dtype, s.shape) for s in specs}
        if have != want:
            raise StoreError(f"{out}: append=true but the store's streams {have} differ from the imported {want}")
        return store
    if Path(out).exists():
        raise StoreError(f"{out}: already exists; import into a new path, or pass append=true to add episodes to it")
    return EpisodeStore.create(out, specs, index_stream=index_stream, jpeg_quality=jpeg_quality)


@contextmanager
def importing(out: str | Path, specs: list[StreamSpec], index_stream: str | None, append: bool,
              jpeg_quality: int = 90) -> Iterator[EpisodeStore]:
    """The target store of an import; a store this import created is removed again if it fails,
    so a failed import never leaves a half-filled store behind (an appended-to store keeps the
    episodes committed before the error, like any recording)."""
    existed = Path(out).exists()
    store = create_import_store(out, specs, index_stream, append, jpeg_quality)
    try:
        yield store
    except BaseException:
        if not existed and not _is_url(out):
            shutil.rmtree(out, ignore_errors=True)
        raise
    store.refresh()


UNKNOWN_START_TIME = "unknown"
_UNIX_TIME_MIN = 1e9  # 2001-09-09: smaller first times count from the episode (or session) start


def start_time_from(t0: float) -> str:
    """An imported episode's start_time (ISO 8601, UTC) from its first timestamp (s), if that is a Unix
    time (diffusion_policy's real-robot buffers and ROS header stamps use the wall clock); "unknown"
    when the source counts from its own start (simulation, LeRobot) or has no times: never the
    import time, which would date old data as new."""
    t0 = float(t0)
    if _UNIX_TIME_MIN <= t0 <= time.time() + 86400.0:
        return _dt.datetime.fromtimestamp(t0, _dt.timezone.utc).isoformat(timespec="milliseconds")
    return UNKNOWN_START_TIME


def write_episode(writer, meta: Mapping | EpisodeMeta, streams: Mapping[str, tuple[Any, np.ndarray]],
                  where: str) -> None:
    """Append one episode: streams maps name -> (values indexable by row, float64 times). A meta without
    start_time gets one from the first time (`start_time_from`)."""
    meta = EpisodeMeta.from_dict(dict(meta)) if not isinstance(meta, EpisodeMeta) else meta
    if not meta.start_time:
        firsts = [float(t[0]) for _, t in streams.values() if len(t)]
        meta.start_time = start_time_from(min(firsts)) if firsts else UNKNOWN_START_TIME
    writer.begin_episode(meta)
    try:
        for name, (values, times) in streams.items():
            times = np.asarray(times, dtype=np.float64)
            bad = np.flatnonzero(np.diff(times) <= 0)
            if len(bad):
                k = int(bad[0])
                raise StoreError(f"{where}: stream {name}: timestamps not increasing at row {k + 1} "
                                 f"({times[k]!r} then {times[k + 1]!r})")
            for i in range(len(times)):
                writer.append(name, values[i], times[i])
        if not any(len(t) for _, t in streams.values()):
            raise StoreError(f"{where}: episode has no samples")
        writer.commit(success=meta.success)
    except BaseException:
        if writer.recording:
            writer.discard()
        raise


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
