"""LeRobotDataset v3.0 <-> episode store (layout read from lerobot 0.4.4's own source).

    meta/info.json                                codebase_version "v3.0", fps, features, paths
    meta/stats.json                               per feature min/max/mean/std/count/q01..q99
    meta/tasks.parquet                            index = task string, column task_index
    meta/episodes/chunk-000/file-000.parquet      one row per episode: length, tasks, data and
                                                  video file indices, from/to timestamps, stats/*
    data/chunk-XXX/file-YYY.parquet               one row per frame: features + timestamp,
                                                  frame_index, episode_index, index, task_index
    videos/<key>/chunk-XXX/file-YYY.mp4           per camera, episodes back to back, constant fps

LeRobot has one clock: every frame of every feature is at `timestamp = frame_index / fps`, and
videos must be constant-rate. Export therefore resamples every stream onto a uniform grid at `fps`
(default: the index stream's nominal rate) starting at the index stream's first sample, with each
stream's declared interpolation (frames and integers held) and a staleness bound; the grid, every
resampling and the episodes' start times are recorded in info.json["robot_rl"] and the summary.
Per-episode metadata travels in the episodes table column "robot_rl/episode" (JSON).

Feature names: the index stream -> "action"; frames -> "observation.images.<stream>"; other
streams -> "observation.<stream>", or concatenated into "observation.state" with `state=`.
Floats are written as float32 (LeRobot's convention; `float_dtype=keep` keeps float64).

export_store(store, out, **options) options:
    fps             integer frame rate of the grid; default the index stream's nominal rate
    streams         streams to export; default all
    episodes        episode indices (list or "a:b"); default all committed
    state           streams concatenated into observation.state (list or "a,b"); default none
    max_staleness   seconds (number or dict per stream); default 3 nominal periods; "none" disables
    robot_type      info.json robot_type; default the first episode's rig, else "unknown"
    vcodec          libx264 (default; h264 decodes everywhere) | libsvtav1 (LeRobot's default)
    crf, gop        encoder quality (default 23) and keyframe interval (default 2, as LeRobot)
    pix_fmt         yuv420p (default) | yuv444p (odd frame sizes, better colour)
    float_dtype     float32 (default) | keep
    episodes_per_file  episodes per data parquet / mp4 file; default 100
    overwrite       replace an existing output folder; default false

import_store(src, out_store_path, **options) options:
    image_codec     store codec for frames: "auto" (jpeg) | "png" | "jpeg"; default auto
    jpeg_quality    default 90
    source          EpisodeMeta.source for datasets not written by us; default "imported"
    append          add the episodes to an existing store with the same streams; default false
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.core.errors import ConfigError, StoreError
from robot_rl.core.progress import progress_bar
from robot_rl.data.convert import _common, _grid
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter

FORMAT = "lerobot"
CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk folder (LeRobot's DEFAULT_CHUNK_SIZE)
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
EXPORT_OPTIONS = ("fps", "streams", "episodes", "state", "max_staleness", "robot_type", "vcodec", "crf", "gop",
                  "pix_fmt", "float_dtype", "episodes_per_file", "overwrite")
IMPORT_OPTIONS = ("image_codec", "jpeg_quality", "source", "append")


# -- statistics (LeRobot's stats.json / stats/* layout) ----------------------------------------
def _stats(x: np.ndarray, image: bool) -> dict[str, np.ndarray]:
    """min/max/mean/std/count/q01..q99 of one episode's feature: per dimension for vectors,
    per channel in [0, 1] with shape (C, 1, 1) for images (as LeRobot computes them)."""
    if image:
        x = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0  # (pixels, C)
        count = None
    else:
        x = x.reshape(len(x), -1).astype(np.float64)
        count = len(x)
    out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}
    for q, v in zip(QUANTILES, np.quantile(x, QUANTILES, axis=0)):
        out[f"q{int(round(q * 100)):02d}"] = v
    if image:
        out = {k: v.reshape(-1, 1, 1) for k, v in out.items()}
    out["count"] = np.array([count if count is not None else 0], dtype=np.int64)
    return out


def _aggregate(stats: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Count-weighted merge of per-episode stats (LeRobot's aggregate_feature_stats formula)."""
    counts = np.array([s["count"][0] for s in stats], dtype=np.float64)
    total = counts.sum()
    w = (counts / total).reshape((-1,) + (1,) * stats[0]["mean"].ndim)
    means = np.stack([s["mean"] for s in stats])
    mean = (means * w).sum(0)
    var = ((np.stack([s["std"] for s in stats]) ** 2 + (means - mean) ** 2) * w).sum(0)
    out = {"min": np.stack([s["min"] for s in stats]).min(0), "max": np.stack([s["max"] for s in stats]).max(0),
           "mean": mean, "std": np.sqrt(var), "count": np.array([int(total)], dtype=np.int64)}
    for key in stats[0]:
        if re.fullmatch(r"q\d\d", key):
            out[key] = (np.stack([s[key] for s in stats]) * w).sum(0)
    return out


# -- export ---------------------------------------------------------------------------------------
def _features(store, streams, state, float_dtype, fps, vopts):
    """LeRobot features and how each is made from streams: {key: (feature, [(stream, lo, hi)])}."""
    out: dict[str, tuple[dict, list]] = {}
    index = store.index_stream

    def dtype_of(spec):
        d = np.dtype(spec.dtype)
        return "float32" if d.kind == "f" and float_dtype == "float32" else d.name

    for name in streams:
        spec = store.streams[name]
        if spec.is_image:
            if np.dtype(spec.dtype) != np.uint8 or not (len(spec.shape) == 2 or spec.shape[-1] in (1, 3)):
                raise StoreError(f"{store.path}: stream {name} ({spec.dtype} {spec.shape}) cannot be a LeRobot video "
                                 f"(uint8 RGB or gray only); leave it out with streams=...")
            h, w = spec.shape[:2]
            feature = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                       "info": {"video.height": h, "video.width": w, "video.codec": vopts["codec_name"],
                                "video.pix_fmt": vopts["pix_fmt"], "video.is_depth_map": False, "video.fps": fps,
                                "video.channels": 3, "has_audio": False}}
            out[f"observation.images.{name}"] = (feature, [(name, None, None)])
        elif name not in state:
            size = int(np.prod(spec.shape))
            key = "action" if name == index else f"observation.{name}"
            names = [f"{name}_{i}" for i in range(size)] if size > 1 else [name]
            out[key] = ({"dtype": dtype_of(spec), "shape": [size], "names": names}, [(name, 0, size)])
    if state:
        parts, names, lo = [], [], 0
        dtypes = {dtype_of(store.streams[s]) for s in state}
        for s in state:
            spec = store.streams[s]
            if spec.is_image:
                raise ConfigError(f"state={state}: {s} is a frame stream; state concatenates low-dim streams")
            size = int(np.prod(spec.shape))
            parts.append((s, lo, lo + size))
            names += [f"{s}_{i}" for i in range(size)] if size > 1 else [s]
            lo += size
        dtype = "float32" if "float32" in dtypes or len(dtypes) > 1 else dtypes.pop()
        out["observation.state"] = ({"dtype": dtype, "shape": [lo], "names": names}, parts)
    return out


def _column(values: np.ndarray, dtype: str):
    import pyarrow as pa

    values = np.ascontiguousarray(values.astype(dtype, copy=False))
    if values.ndim == 1 or values.shape[1] == 1:  # LeRobot stores shape (1,) features as scalars
        return pa.array(values.reshape(-1))
    flat = pa.array(values.reshape(-1))  # child field named "item", as `datasets` writes Sequence(length=D)
    return pa.FixedSizeListArray.from_arrays(flat, type=pa.list_(flat.type, values.shape[1]))


def export_store(store: EpisodeStore, out: str | Path, **options: Any) -> dict:
    """Write the store's committed episodes as a LeRobotDataset v3.0 folder at `out`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from robot_rl.data.convert._video import Mp4Writer

    opts = _common.check_options(FORMAT, "export", options, EXPORT_OPTIONS)
    t_start = time.perf_counter()
    streams = _common.select_streams(store, opts.get("streams"))
    index = store.index_stream
    if index not in streams:
        raise ConfigError(f"{FORMAT} export: the index stream {index!r} (LeRobot's action) must be exported")
    episodes = _common.select_episodes(store, opts.get("episodes"))
    if not episodes:
        raise StoreError(f"{store.path}: no committed episodes to export")
    rate = store.streams[index].rate_hz
    fps = opts.get("fps")
    if fps is None:
        if abs(rate - round(rate)) > 1e-9:
            raise ConfigError(f"{store.path}: index stream {index} runs at {rate} Hz; LeRobot needs an integer fps, "
                              f"pass fps=<int>")
        fps = int(round(rate))
    if float(fps) != int(fps) or int(fps) <= 0:
        raise ConfigError(f"{FORMAT} export: fps={fps!r} must be a positive integer")
    fps = int(fps)
    state = _common.as_list(opts.get("state"), "state") or []
    for s in state:
        store._check_stream(s)
        if s not in streams:
            raise ConfigError(f"state stream {s!r} is not among the exported streams {streams}")
    float_dtype = str(opts.get("float_dtype", "float32"))
    if float_dtype not in ("float32", "keep"):
        raise ConfigError(f"{FORMAT} export: float_dtype={float_dtype!r}; expected float32 or keep")
    vcodec = str(opts.get("vcodec", "libx264"))
    vopts = {"vcodec": vcodec, "codec_name": {"libx264": "h264", "libsvtav1": "av1"}.get(vcodec, vcodec),
             "pix_fmt": str(opts.get("pix_fmt", "yuv420p")), "crf": int(opts.get("crf", 23)),
             "gop": int(opts.get("gop", 2))}
    per_file = int(opts.get("episodes_per_file", 100))
    if per_file < 1:
        raise ConfigError(f"{FORMAT} export: episodes_per_file={per_file} must be >= 1")
    staleness = _grid.staleness_bounds(store, streams, opts.get("max_staleness"))
    features = _features(store, streams, state, float_dtype, fps, vopts)
    video_keys = [k for k, (f, _) in features.items() if f["dtype"] == "video"]
    metas = {e: store.episode_meta(e) for e in episodes}
    tasks = sorted({m.get("task") or "unspecified" for m in metas.values()})
    task_index = {t: i for i, t in enumerate(tasks)}

    grids = [_grid.episode_grid(store, e, streams, index, float(fps)) for e in episodes]
    for g in grids:
        if len(g.times) == 0:
            raise StoreError(f"{store.path}: episode {g.episode} has no {fps} Hz grid time where every exported "
                             f"stream has data; export fewer streams")

    overwrite = _common.as_bool(opts.get("overwrite", False), "overwrite")
    with _common.staged_output(out, overwrite, "LeRobot dataset", store.path) as tmp:
        ep_rows, all_stats, total = [], [], 0
        data_tables: list = []
        writers: dict[str, Mp4Writer] = {}
        try:
            for k, g in enumerate(progress_bar(grids, desc="export lerobot", unit="ep", leave=False)):
                file_no = k // per_file
                chunk, file_index = divmod(file_no, CHUNKS_SIZE)
                if k % per_file == 0:
                    _flush_data(tmp, data_tables, chunk_file_of(file_no - 1) if k else None, pq, pa)
                    for w in writers.values():
                        w.close()
                    writers.clear()
                n = len(g.times)
                meta = metas[g.episode]
                task = meta.get("task") or "unspecified"
                cols = {}
                stats = {}
                row = {"episode_index": k, "tasks": [task], "length": n, "data/chunk_index": chunk,
                       "data/file_index": file_index, "dataset_from_index": total, "dataset_to_index": total + n}
                for key, (feature, parts) in features.items():
                    if feature["dtype"] == "video":
                        name = parts[0][0]
                        if key not in writers:
                            writers[key] = Mp4Writer(tmp / VIDEO_PATH.format(video_key=key, chunk_index=chunk,
                                                                             file_index=file_index),
                                                     fps, feature["shape"][0], feature["shape"][1], vcodec,
                                                     vopts["pix_fmt"], vopts["crf"], vopts["gop"])
                        w = writers[key]
                        start = w.frames
                        rows = _grid.hold_rows(store, g.episode, name, g.times, staleness[name])
                        sample = []
                        for block in _grid.iter_rows(store, name, rows):
                            w.write(block)
                            sample.append(block[:: max(1, n // 20)])  # stats from ~20 frames, as LeRobot samples
                        frames = np.concatenate(sample)
                        frames = frames[..., None] if frames.ndim == 3 else frames
                        stats[key] = _stats(np.repeat(frames, 3, -1) if frames.shape[-1] == 1 else frames, image=True)
                        stats[key]["count"] = np.array([len(frames)], dtype=np.int64)
                        row |= {f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file_index,
                                f"videos/{key}/from_timestamp": start / fps, f"videos/{key}/to_timestamp": (start + n) / fps}
                    else:
                        value = np.concatenate([
                            _grid.lowdim_on_grid(store, g.episode, s, g.times, staleness[s]).reshape(n, -1)
                            .astype(feature["dtype"]) for s, _, _ in parts], axis=1)
                        cols[key] = _column(value, feature["dtype"])
                        stats[key] = _stats(value, image=False)
                frame_index = np.arange(n, dtype=np.int64)
                defaults = {"timestamp": (frame_index / fps).astype(np.float32), "frame_index": frame_index,
                            "episode_index": np.full(n, k, np.int64), "index": total + frame_index,
                            "task_index": np.full(n, task_index[task], np.int64)}
                for key, value in defaults.items():
                    cols[key] = _column(value, value.dtype.name)
                    stats[key] = _stats(value, image=False)
                data_tables.append(pa.table(cols))
                row |= {f"stats/{f}/{s}": v.tolist() for f, st in stats.items() for s, v in st.items()}
                row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                        "robot_rl/episode": _common.dumps({"source_episode": g.episode, "t0": float(g.times[0]),
                                                           "meta": meta, "dropped_head_rows": g.dropped_head,
                                                           "dropped_tail_rows": g.dropped_tail})}
                ep_rows.append(row)
                all_stats.append(stats)
                total += n
            _flush_data(tmp, data_tables, chunk_file_of((len(grids) - 1) // per_file), pq, pa)
        finally:  # an ffmpeg encoder must not outlive the export, whatever happened
            for w in writers.values():
                w.close()

        pq.write_table(pa.Table.from_pylist(ep_rows), _mkparent(tmp / EPISODES_PATH.format(chunk_index=0,
                                                                                            file_index=0)))
        import pandas as pd

        pd.DataFrame({"task_index": list(range(len(tasks)))}, index=tasks).to_parquet(
            _mkparent(tmp / "meta/tasks.parquet"))
        keys = list(all_stats[0])
        agg = {key: {s: v.tolist() for s, v in _aggregate([st[key] for st in all_stats]).items()} for key in keys}
        (tmp / "meta/stats.json").write_text(json.dumps(agg, indent=2))
        info_features = {key: feature for key, (feature, _) in features.items()}
        info_features |= {"timestamp": {"dtype": "float32", "shape": [1], "names": None},
                          **{k: {"dtype": "int64", "shape": [1], "names": None} for k in DEFAULT_FEATURES[1:]}}
        robot_rl = {
            "format": "robot_rl.lerobot_export", "version": 1, "source_store": str(store.path), "resampled": True,
            "grid": {"kind": "uniform", "fps": fps, "start": "index stream first sample", "index_stream": index,
                     **_grid.grid_summary(grids)},
            "features": {key: {"streams": [{"stream": s, "lo": lo, "hi": hi, "spec": store.streams[s].to_dict(),
                                            "interp": _grid.effective_interp(store.streams[s]),
                                            "source_rate_hz": store.streams[s].rate_hz,
                                            "max_staleness_s": staleness[s]} for s, lo, hi in parts]}
                         for key, (_, parts) in features.items()},
            "index_stream": index,
        }
        info = {
            "codebase_version": CODEBASE_VERSION, "robot_type": opts.get("robot_type") or
            (metas[episodes[0]].get("rig") or "unknown"), "total_episodes": len(grids), "total_frames": total,
            "total_tasks": len(tasks), "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200, "fps": fps, "splits": {"train": f"0:{len(grids)}"},
            "data_path": DATA_PATH, "video_path": VIDEO_PATH if video_keys else None, "features": info_features,
            "robot_rl": robot_rl,
        }
        (tmp / "meta/info.json").write_text(json.dumps(info, indent=4))
    return {"format": FORMAT, "out": str(out), "episodes": len(grids), "frames": total, "fps": fps,
            "resampled": True, "grid": robot_rl["grid"], "video_keys": video_keys, "vcodec": vcodec,
            "features": {k: {"dtype": f["dtype"], "shape": f["shape"],
                             "from": [p["stream"] for p in robot_rl["features"][k]["streams"]],
                             "interp": [p["interp"] for p in robot_rl["features"][k]["streams"]]}
                         for k, (f, _) in features.items()},
            "tasks": tasks, "seconds": round(time.perf_counter() - t_start, 3)}


def chunk_file_of(file_no: int) -> tuple[int, int]:
    return divmod(file_no, CHUNKS_SIZE)


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _flush_data(root: Path, tables: list, chunk_file, pq, pa) -> None:
    if not tables or chunk_file is None:
        return
    chunk, file_index = chunk_file
    pq.write_table(pa.concat_tables(tables), _mkparent(root / DATA_PATH.format(chunk_index=chunk,
                                                                               file_index=file_index)))
    tables.clear()


# -- import ---------------------------------------------------------------------------------------
def _stream_name(key: str) -> str:
    for prefix in ("observation.images.", "observation."):
        if key.startswith(prefix) and len(key) > len(prefix):
            key = key[len(prefix):]
            break
    name = re.sub(r"[^A-Za-z0-9_]", "_", key)
    return name if name[:1].isalpha() else f"f_{name}"


def _read_info(src: Path) -> dict:
    if not src.exists():
        raise StoreError(f"{src}: does not exist")
    path = src / "meta" / "info.json"
    if not path.is_file():
        raise StoreError(f"{src}: not a LeRobot dataset (no meta/info.json)")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise StoreError(f"{path}: not valid JSON ({e})") from None
    version = info.get("codebase_version")
    if version != CODEBASE_VERSION:
        raise StoreError(f"{path}: codebase_version {version!r} is not {CODEBASE_VERSION!r}; convert it with "
                         f"lerobot's v2.1 -> v3.0 converter first")
    for need in ("fps", "features", "data_path"):
        if need not in info:
            raise StoreError(f"{path}: missing {need!r}")
    return info


def _read_parquets(folder: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = sorted(folder.glob("*/*.parquet"))
    if not paths:
        raise StoreError(f"{folder}: no parquet files (expected chunk-XXX/file-YYY.parquet)")
    return pa.concat_tables([pq.read_table(p) for p in paths])


def import_store(src: str | Path, out_store_path: str | Path, **options: Any) -> EpisodeStore:
    """Read a LeRobotDataset v3.0 folder (ours or one recorded by lerobot) into a new store."""
    from robot_rl.data.convert._video import read_frames

    opts = _common.check_options(FORMAT, "import", options, IMPORT_OPTIONS)
    src = Path(src)
    info = _read_info(src)
    fps = float(info["fps"])
    ours = info.get("robot_rl") or {}
    mapping = ours.get("features") or {}
    episodes = _read_parquets(src / "meta" / "episodes").to_pylist()
    episodes.sort(key=lambda r: r["episode_index"])
    data = _read_parquets(src / "data")
    for col in DEFAULT_FEATURES[:4]:
        if col not in data.column_names:
            raise StoreError(f"{src}/data: column {col!r} missing")
    features = {k: f for k, f in info["features"].items() if k not in DEFAULT_FEATURES}
    video_keys = [k for k, f in features.items() if f.get("dtype") == "video"]
    image_keys = [k for k, f in features.items() if f.get("dtype") == "image"]
    if image_keys:
        raise StoreError(f"{src}: image features {image_keys} (PNG in parquet) are not supported; re-export with videos")

    # streams: ours carry their original specs and how they were packed; foreign ones are inferred
    specs, unpack = [], {}
    for key, f in features.items():
        parts = (mapping.get(key) or {}).get("streams")
        if parts:
            for p in parts:
                spec = p["spec"]
                specs.append(_common.spec_from_array(p["stream"], spec["dtype"], tuple(spec["shape"]), fps, spec))
                unpack.setdefault(key, []).append((p["stream"], p["lo"], p["hi"], tuple(spec["shape"])))
            continue
        name = _stream_name(key)
        shape = tuple(f["shape"])
        dtype = "uint8" if f["dtype"] == "video" else f["dtype"]
        if dtype not in ("float32", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"):
            raise StoreError(f"{src}/meta/info.json: feature {key} dtype {f['dtype']!r} cannot be imported")
        specs.append(_common.spec_from_array(name, dtype, shape, fps, image_codec=opts.get("image_codec", "auto")))
        unpack[key] = [(name, None, None, shape)]
    index_stream = ours.get("index_stream") or ("action" if "action" in features else specs[0].name)
    if index_stream not in {s.name for s in specs}:
        index_stream = specs[0].name

    ep_col = data.column("episode_index").to_numpy()
    order = np.argsort(ep_col, kind="stable")
    frame_cache: dict[tuple[str, int, int], list] = {}
    append = _common.as_bool(opts.get("append", False), "append")
    with _common.importing(out_store_path, specs, index_stream, append, int(opts.get("jpeg_quality", 90))) as store, \
            EpisodeWriter(store, block_on_full=True) as writer:
        for row in progress_bar(episodes, desc="import lerobot", unit="ep", leave=False):
            e = int(row["episode_index"])
            sel = order[np.searchsorted(ep_col[order], e, "left"): np.searchsorted(ep_col[order], e, "right")]
            if len(sel) == 0:
                continue
            rows = data.take(sel)
            frame_index = rows.column("frame_index").to_numpy()
            extra = json.loads(row["robot_rl/episode"]) if row.get("robot_rl/episode") else None
            times = (extra["t0"] + frame_index / fps) if extra else \
                rows.column("timestamp").to_numpy().astype(np.float64)
            streams = {}
            for key, parts in unpack.items():
                if key in video_keys:
                    values = _episode_frames(src, info, key, row, frame_index, fps, frame_cache, read_frames)
                else:
                    values = _column_values(rows.column(key), len(frame_index))
                for name, lo, hi, shape in parts:
                    v = values if lo is None else values[:, lo:hi]
                    if key in video_keys and len(shape) == 2:  # gray frames were written as RGB video
                        v = v[..., 0]
                    elif key in video_keys and shape[-1] == 1:
                        v = v[..., :1]
                    streams[name] = (v.reshape((len(frame_index), *shape)).astype(store.streams[name].dtype), times)
            meta = dict(extra["meta"]) if extra else {"source": opts.get("source", "imported"),
                                                     "task": (row.get("tasks") or [""])[0]}
            meta.setdefault("extra", {})["imported_from"] = {"format": FORMAT, "path": str(src), "episode": e}
            _common.write_episode(writer, meta, streams, f"{src} episode {e}")
    return store


def _column_values(col, n: int) -> np.ndarray:
    """(n, D) values of a parquet column: scalars, fixed-size lists or lists of equal length."""
    import pyarrow as pa

    col = col.combine_chunks()
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        flat = col.flatten().to_numpy(zero_copy_only=False)
        if flat.size % max(n, 1):
            raise StoreError(f"column {col.type}: {flat.size} values do not split into {n} equal rows")
        return flat.reshape(n, -1)
    return col.to_numpy(zero_copy_only=False).reshape(n, 1)


def _episode_frames(src: Path, info: dict, key: str, row: dict, frame_index: np.ndarray, fps: float,
                    cache: dict, read_frames) -> np.ndarray:
    """The episode's frames of video `key`: frames from round(from_timestamp * fps) on, in its mp4."""
    chunk, file_index = int(row[f"videos/{key}/chunk_index"]), int(row[f"videos/{key}/file_index"])
    ident = (key, chunk, file_index)
    if ident not in cache:
        cache.clear()  # episodes are stored file by file: keep one decoded file at a time
        path = src / info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file_index)
        cache[ident] = list(read_frames(path))
    frames = cache[ident]
    start = int(round(float(row[f"videos/{key}/from_timestamp"]) * fps))
    idx = start + frame_index
    if len(idx) and idx[-1] >= len(frames):
        raise StoreError(f"{src}: video {key} chunk {chunk} file {file_index} has {len(frames)} frames; episode "
                         f"{row['episode_index']} needs frame {int(idx[-1])}")
    return np.stack([frames[i] for i in idx])
