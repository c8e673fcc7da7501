"""diffusion_policy / UMI replay buffer <-> episode store.

The replay buffer (real-stanford/diffusion_policy `ReplayBuffer`, also used by UMI) is a zarr
*format 2* group:

    data/<key>          (N, *shape), every key the same length N, episodes concatenated on axis 0
    meta/episode_ends   int64 (E,), cumulative exclusive ends
    images              uint8 (N, H, W, C), chunks (1, H, W, C), compressor imagecodecs_jpegxl or
                        imagecodecs_jpeg2k (readers call imagecodecs.numcodecs.register_codecs())
    low-dim             Blosc zstd

Because every key shares one index, export resamples all streams onto one grid per episode: the
index stream's own timestamps (default) or a uniform `rate_hz` grid, each stream with its declared
interpolation (images and integers held), bounded by `max_staleness`. `data/timestamp` carries the
grid times; the root attribute `robot_rl` records the source streams, the grid and every
resampling, and the episodes' metadata, so that import restores them.

export_store(store, out, **options) options:
    streams          streams to export (list or "a,b"); default all
    episodes         episode indices (list, or "a:b"); default all committed
    rate_hz          uniform grid rate; default None = the index stream's timestamps
    index_stream     stream whose timestamps define the grid; default the store's index stream
    max_staleness    seconds (number, or dict per stream); default 3 nominal periods per stream;
                     "none" disables the bound
    image_codec      "jpegxl" (default, UMI) | "jpeg2k" (diffusion_policy real-robot data) | "zstd"
                     (lossless Blosc, one frame per chunk); only uint8 (H, W, 3|1) frames use jpeg*
    image_level      codec level: jpegxl quality 0-100 (default 90; 100 lossless), jpeg2k PSNR
                     (default 50)
    rename           dict stream -> data key, e.g. {cam_front_rgb: camera0_rgb, ee_pos: robot0_eef_pos} to
                     match a diffusion_policy / UMI task's shape_meta; default: keys = stream names
    timestamps       write data/timestamp (float64 grid times); default true
    overwrite        replace an existing output; default false

import_store(src, out_store_path, **options) reads a buffer folder or a UMI-style `.zarr.zip`; options:
    keys             data keys to import; default all (not "timestamp")
    rate_hz          the buffer's step rate (Hz): the stream rates, and the step times when it has no
                     data/timestamp; default: our export's grid rate, else the median step of
                     data/timestamp; required when neither exists (no rate is guessed)
    timestamp_key    key holding per-step times; default "timestamp" (used when present)
    index_stream     default: the exported one, else "action" if present, else the first key
                     (streams are named after the keys, or the exported stream names)
    interp           dict key -> hold|linear|slerp for foreign buffers (default: linear for floats,
                     hold for images and integers)
    image_codec      store codec for frames: "auto" (jpeg for uint8 RGB, png otherwise), "png", "jpeg"
    jpeg_quality     store JPEG quality; default 90
    source           EpisodeMeta.source for foreign buffers; default "imported"
                     (their start_time: the first data/timestamp if it is a Unix time, else "unknown")
    task             EpisodeMeta.task for foreign buffers; default ""
    append           add the episodes to an existing store with the same streams; default false
"""

from __future__ import annotations

import math
import re
import shlex
import time
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
from imagecodecs.numcodecs import Jpeg2k, Jpegxl

from robot_rl.core.errors import ConfigError, StoreError
from robot_rl.core.progress import progress_bar
from robot_rl.data.convert import _common, _grid
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter

FORMAT = "diffusion_policy"
ATTR = "robot_rl"
EXPORT_OPTIONS = ("streams", "episodes", "rate_hz", "index_stream", "max_staleness", "image_codec", "image_level",
                  "rename", "timestamps", "overwrite")
IMPORT_OPTIONS = ("keys", "rate_hz", "timestamp_key", "index_stream", "interp", "image_codec", "jpeg_quality",
                  "source", "task", "append")
LOWDIM_CHUNK_BYTES = 2 << 20  # diffusion_policy's get_optimal_chunks targets ~2 MB


def register_image_codecs() -> None:
    """What every replay-buffer reader does first: make imagecodecs' numcodecs codecs known."""
    if numcodecs.registry.codec_registry.get("imagecodecs_jpegxl") is None:
        from imagecodecs.numcodecs import register_codecs

        register_codecs()


def _lowdim_compressor():
    return numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)


# .zarray must name only parameters that diffusion_policy's and UMI's own codec module
# (diffusion_policy/codecs/imagecodecs_numcodecs.py, registered by their dataset readers) accepts:
# numcodecs builds the codec with cls(**config), and those constructors take no others (no planar,
# bitspersample, mct or squeeze), while imagecodecs' classes write every parameter they have.
class _ListedConfig:
    """Mixin for an imagecodecs numcodecs codec: its written config lists only `config_keys`."""

    config_keys: tuple[str, ...] = ()

    def get_config(self) -> dict:
        return {"id": self.codec_id, **{k: getattr(self, k) for k in self.config_keys}}


class _Jpegxl(_ListedConfig, Jpegxl):
    # lossless written explicitly: imagecodecs reads a missing one as True, diffusion_policy as False
    config_keys = ("level", "lossless")


class _Jpeg2k(_ListedConfig, Jpeg2k):
    # verbose an int: the jpeg2k_decode of UMI's pinned imagecodecs (2023.9.18) raises on None
    config_keys = ("level", "verbose")


def _frame_compressor(spec, codec: str, level: Any):
    """The compressor for a frame array (chunks of one frame), and its name for the summary."""
    rgb = np.dtype(spec.dtype) == np.uint8 and len(spec.shape) == 3 and spec.shape[2] in (1, 3)
    if codec == "zstd" or not rgb:
        return numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE), "blosc_zstd"
    if codec == "jpegxl":
        level = 90 if level is None else int(level)
        return _Jpegxl(level=level, lossless=level >= 100, numthreads=1), f"imagecodecs_jpegxl(level={level})"
    if codec == "jpeg2k":
        level = 50 if level is None else int(level)
        return _Jpeg2k(level=level, verbose=0), f"imagecodecs_jpeg2k(level={level})"
    raise ConfigError(f"{FORMAT} export: image_codec={codec!r}; expected jpegxl, jpeg2k or zstd")


def export_store(store: EpisodeStore, out: str | Path, **options: Any) -> dict:
    """Write the store's committed episodes as a diffusion_policy replay buffer at `out`."""
    opts = _common.check_options(FORMAT, "export", options, EXPORT_OPTIONS)
    t_start = time.perf_counter()
    streams = _common.select_streams(store, opts.get("streams"))
    episodes = _common.select_episodes(store, opts.get("episodes"))
    index_stream = opts.get("index_stream") or store.index_stream
    store._check_stream(index_stream)
    rate_hz = opts.get("rate_hz")
    rate_hz = None if rate_hz in (None, "index") else float(rate_hz)
    staleness = _grid.staleness_bounds(store, streams, opts.get("max_staleness"))
    codec = str(opts.get("image_codec", "jpegxl")).lower()
    write_times = _common.as_bool(opts.get("timestamps", True), "timestamps")
    if not episodes:
        raise StoreError(f"{store.path}: no committed episodes to export")
    rename = opts.get("rename") or {}
    if not isinstance(rename, dict) or any(s not in streams for s in rename):
        raise ConfigError(f"{FORMAT} export: rename={rename!r} must map exported streams {streams} to data keys")
    key_of = {s: str(rename.get(s, s)) for s in streams}
    if len(set(key_of.values())) != len(key_of) or (write_times and "timestamp" in key_of.values()):
        raise ConfigError(f"{FORMAT} export: data keys {sorted(key_of.values())} collide (or one is 'timestamp')")

    grids = [_grid.episode_grid(store, e, streams, index_stream, rate_hz) for e in episodes]
    for g in grids:
        if len(g.times) == 0:
            raise StoreError(f"{store.path}: episode {g.episode} has no grid time where every exported stream "
                             f"has data (streams {streams}); export fewer streams")
    ends = np.cumsum([len(g.times) for g in grids]).astype(np.int64)
    n = int(ends[-1])

    overwrite = _common.as_bool(opts.get("overwrite", False), "overwrite")
    with _common.staged_output(out, overwrite, "replay buffer", store.path) as tmp:
        register_image_codecs()
        root = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        arrays, keys = {}, {}
        for name in streams:
            spec = store.streams[name]
            if spec.is_image:
                compressor, cname = _frame_compressor(spec, codec, opts.get("image_level"))
                chunks = (1, *spec.shape)
            else:
                compressor, cname = _lowdim_compressor(), "blosc_zstd"
                chunks = (max(1, min(n, LOWDIM_CHUNK_BYTES // spec.sample_nbytes)), *spec.shape)
            arrays[name] = root.create_array(f"data/{key_of[name]}", shape=(n, *spec.shape), chunks=chunks, dtype=spec.dtype,
                                             compressors=compressor, fill_value=0)
            keys[key_of[name]] = {"stream": name, "spec": spec.to_dict(), "interp": _grid.effective_interp(spec),
                          "max_staleness_s": staleness[name], "source_rate_hz": spec.rate_hz, "compressor": cname}
        if write_times:
            arrays["timestamp"] = root.create_array("data/timestamp", shape=(n,), chunks=(min(n, 1 << 18),),
                                                    dtype="float64", compressors=_lowdim_compressor(), fill_value=0)
        root.create_array("meta/episode_ends", shape=(len(ends),), chunks=(len(ends),), dtype="int64",
                          compressors=None, fill_value=0)[:] = ends

        lo = 0
        for g in progress_bar(grids, desc="export diffusion_policy", unit="ep", leave=False):
            hi = lo + len(g.times)
            for name in streams:
                if store.streams[name].is_image:
                    rows = _grid.hold_rows(store, g.episode, name, g.times, staleness[name])
                    pos = lo
                    for block in _grid.iter_rows(store, name, rows):
                        arrays[name][pos:pos + len(block)] = block
                        pos += len(block)
                else:
                    arrays[name][lo:hi] = _grid.lowdim_on_grid(store, g.episode, name, g.times, staleness[name])
            if write_times:
                arrays["timestamp"][lo:hi] = g.times
            lo = hi

        header = {
            "format": "robot_rl.diffusion_policy_export", "version": 1, "source_store": str(store.path),
            "index_stream": index_stream, "resampled": True,
            "grid": {"kind": "index_stream_timestamps" if rate_hz is None else "uniform", "rate_hz": rate_hz,
                     "index_stream": index_stream, **_grid.grid_summary(grids)},
            "keys": keys, "timestamp_key": "timestamp" if write_times else None,
            "episodes": [{"source_episode": g.episode, **store.episode_meta(g.episode)} for g in grids],
        }
        root.attrs[ATTR] = header
    return {
        "format": FORMAT, "out": str(out), "episodes": len(grids), "steps": n,
        "keys": {key_of[s]: {"shape": list(store.streams[s].shape), "dtype": store.streams[s].dtype, **{
            f: v for f, v in keys[key_of[s]].items() if f != "spec"}} for s in streams},
        "grid": header["grid"], "seconds": round(time.perf_counter() - t_start, 3),
    }


def _open_replay_buffer(src: str | Path) -> zarr.Group:
    src = Path(src)
    if not src.exists():
        raise StoreError(f"{src}: does not exist")
    register_image_codecs()
    try:
        # UMI ships its buffers as <name>.zarr.zip (a zarr ZipStore)
        where = zarr.storage.ZipStore(str(src), mode="r") if src.is_file() and src.suffix == ".zip" else str(src)
        root = zarr.open_group(where, mode="r", zarr_format=2)
    except Exception as e:  # zarr raises several types for "not a v2 group"
        raise StoreError(f"{src}: not a diffusion_policy replay buffer (no zarr format 2 group: {e})") from None
    for need in ("data", "meta", "meta/episode_ends"):
        if need not in root:
            raise StoreError(f"{src}: not a diffusion_policy replay buffer (missing {need})")
    return root


def import_store(src: str | Path, out_store_path: str | Path, **options: Any) -> EpisodeStore:
    """Read a replay buffer (ours or one written by diffusion_policy / UMI) into a new store."""
    opts = _common.check_options(FORMAT, "import", options, IMPORT_OPTIONS)
    root = _open_replay_buffer(src)
    header = root.attrs.get(ATTR) or {}
    ends = np.asarray(root["meta/episode_ends"][:], dtype=np.int64)
    if ends.ndim != 1 or np.any(np.diff(np.concatenate([[0], ends])) < 0):
        raise StoreError(f"{src}: meta/episode_ends must be non-decreasing cumulative ends, got {ends[:10].tolist()}")
    n = int(ends[-1]) if len(ends) else 0
    data = root["data"]
    timestamp_key = opts.get("timestamp_key", header.get("timestamp_key") or "timestamp")
    all_keys = sorted(k for k, _ in data.arrays())
    keys = _common.as_list(opts.get("keys"), "keys") or [k for k in all_keys if k != timestamp_key]
    for k in keys:
        if k not in all_keys:
            raise StoreError(f"{src}: data/{k} does not exist; keys are {all_keys}")
    for k in keys + ([timestamp_key] if timestamp_key in all_keys else []):
        if data[k].shape[0] < n:
            raise StoreError(f"{src}: data/{k} has {data[k].shape[0]} rows but meta/episode_ends ends at {n}")
    if not keys:
        raise StoreError(f"{src}: no data keys to import")

    has_times = timestamp_key in all_keys
    steps = _steps_within_episodes(src, data, timestamp_key, ends) if has_times else np.zeros(0)
    rate_hz = opts.get("rate_hz")
    if rate_hz is None:
        rate_hz = (header.get("grid") or {}).get("rate_hz") or (1.0 / float(np.median(steps)) if len(steps) else None)
    if rate_hz is None:  # nothing times the steps: a guessed rate would silently stretch or squeeze time
        command = shlex.join(["robot-rl", "data", "import", str(src), str(out_store_path), f"format={FORMAT}",
                              "options.rate_hz=10"])
        raise ConfigError(f"{src}: no data/{timestamp_key}{' with two steps in an episode' if has_times else ''}, "
                          f"so the step rate is unknown; pass the rate the buffer was recorded at (rate_hz), e.g. "
                          f"`{command}` (10 Hz is diffusion_policy's real-robot rate)")
    try:
        rate_hz = round(float(rate_hz), 6)
    except (TypeError, ValueError):
        raise ConfigError(f"{FORMAT} import: rate_hz={rate_hz!r} is not a number") from None
    if not (rate_hz > 0 and math.isfinite(rate_hz)):
        raise ConfigError(f"{FORMAT} import: rate_hz={rate_hz} must be a positive number (steps per second)")
    interp = opts.get("interp") or {}
    if not isinstance(interp, dict):
        raise ConfigError(f"{FORMAT} import: interp must be a mapping key -> hold|linear|slerp, got {interp!r}")
    exported = header.get("keys") or {}
    specs, stream_of = [], {}
    for k in keys:
        arr = data[k]
        original = (exported.get(k) or {}).get("spec")
        stream_of[k] = (exported.get(k) or {}).get("stream") or _stream_name(k)
        specs.append(_common.spec_from_array(
            stream_of[k], arr.dtype, tuple(arr.shape[1:]), rate_hz, original, image_codec=opts.get("image_codec", "auto"),
            **({"interp": interp[k]} if k in interp else {})))
    names = list(stream_of.values())
    if len(set(names)) != len(names):
        raise StoreError(f"{src}: data keys {keys} map to colliding stream names {names}")
    index_stream = opts.get("index_stream") or header.get("index_stream")
    index_stream = index_stream if index_stream in names else ("action" if "action" in names else names[0])
    metas = header.get("episodes") or []
    append = _common.as_bool(opts.get("append", False), "append")
    with _common.importing(out_store_path, specs, index_stream, append, int(opts.get("jpeg_quality", 90))) as store, \
            EpisodeWriter(store, block_on_full=True) as writer:
        lo = 0
        bar = progress_bar(ends.tolist(), desc="import diffusion_policy", unit="ep", leave=False)
        for e, hi in enumerate(bar):
            if hi == lo:
                continue  # diffusion_policy allows empty episodes; the store does not
            times = np.asarray(data[timestamp_key][lo:hi], dtype=np.float64) if has_times else \
                np.arange(hi - lo) / rate_hz
            meta = dict(metas[e]) if e < len(metas) else {
                "source": opts.get("source", "imported"), "task": opts.get("task", "")}
            meta.pop("source_episode", None)
            meta.setdefault("extra", {})["imported_from"] = {"format": FORMAT, "path": str(src), "episode": e}
            streams = {stream_of[k]: (_RowReader(data[k], lo, hi), times) for k in keys}
            _common.write_episode(writer, meta, streams, f"{src} episode {e}")
            lo = hi
    return store


def _stream_name(key: str) -> str:
    """A valid stream name for a foreign data key (stream names are identifiers)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", key)
    return name if name[:1].isalpha() else f"k_{name}"


def _steps_within_episodes(src, data, timestamp_key: str, ends: np.ndarray) -> np.ndarray:
    """The time steps of data/<timestamp_key> inside episodes (not across their boundaries); a
    StoreError naming the row where they do not increase."""
    times = np.asarray(data[timestamp_key][: int(ends[-1]) if len(ends) else 0], dtype=np.float64)
    inside = np.ones(max(0, len(times) - 1), bool)
    inside[ends[(ends > 0) & (ends < len(times))] - 1] = False
    steps = np.diff(times)
    bad = np.flatnonzero(inside & ~(steps > 0))
    if len(bad):
        k = int(bad[0])
        raise StoreError(f"{src}: data/{timestamp_key}: timestamps not increasing at row {k + 1} "
                         f"({times[k]!r} then {times[k + 1]!r})")
    return steps[inside]


class _RowReader:
    """Rows [lo, hi) of a zarr array, read in blocks (frames decode in batches, not one by one)."""

    def __init__(self, arr, lo: int, hi: int, block: int = 256) -> None:
        self.arr, self.lo, self.hi = arr, lo, hi
        itemsize = int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize
        self.block = max(1, min(block, (64 << 20) // max(1, itemsize)))
        self._start, self._cache = -1, None

    def __getitem__(self, i: int) -> np.ndarray:
        if not (self._start <= i < self._start + (0 if self._cache is None else len(self._cache))):
            self._start = i
            self._cache = self.arr[self.lo + i: min(self.hi, self.lo + i + self.block)]
        return self._cache[i - self._start]

