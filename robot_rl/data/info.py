"""Summary of an episode store for people: episodes, streams, rates, durations, success, size."""

from __future__ import annotations

import collections
import os

import numpy as np

from robot_rl.data.episode_store import EpisodeStore, _is_url
from robot_rl.data.validate import losses


def size_on_disk(path) -> int:
    """Bytes used by the store (local directory walk, or the fsspec filesystem's du)."""
    if _is_url(path):
        import fsspec

        fs, root = fsspec.core.url_to_fs(str(path))
        return int(fs.du(root))
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total


def store_info(store: EpisodeStore) -> dict:
    metas = store.meta_list()
    successes = [m.get("success") for m in metas if m.get("success") is not None]
    streams = {}
    for name, spec in store.streams.items():
        ends = store.ends(name)
        streams[name] = {
            "dtype": spec.dtype, "shape": list(spec.shape), "rate_hz": spec.rate_hz, "units": spec.units,
            "codec": spec.codec, "samples": int(ends[-1]) if len(ends) else 0,
        }
    durations = [float(m.get("duration_s", 0.0)) for m in metas]
    return {
        "path": str(store.path),
        "episodes": store.n_episodes,
        "success_rate": float(np.mean(successes)) if successes else None,
        "labelled": len(successes),
        "sources": dict(collections.Counter(m.get("source", "") for m in metas)),
        "tasks": dict(collections.Counter(m.get("task", "") for m in metas)),
        "total_duration_s": float(np.sum(durations)),
        "mean_duration_s": float(np.mean(durations)) if durations else 0.0,
        "dropped_samples": int(sum(sum(m.get("dropped", {}).values()) for m in metas)),
        "missing_samples": int(sum(sum((m.get("extra") or {}).get("missing", {}).values()) for m in metas)),
        "rejected_samples": int(sum(sum(sum(r.values()) if isinstance(r, dict) else r
                                        for r in ((m.get("extra") or {}).get("rejected") or {}).values())
                                    for m in metas)),
        "lossy_episodes": [i for i, m in enumerate(metas) if losses(m)],
        "interrupted_episode": bool(store.header.get("open_episode")),
        "size_bytes": size_on_disk(store.path),
        "streams": streams,
    }


def format_info(info: dict) -> str:
    sr = "n/a" if info["success_rate"] is None else f"{info['success_rate']:.1%} of {info['labelled']} labelled"
    lines = [
        f"store       {info['path']}",
        f"episodes    {info['episodes']}   (sources {info['sources']}, tasks {info['tasks']})",
        f"duration    {info['total_duration_s']:.1f} s total, {info['mean_duration_s']:.2f} s mean",
        f"success     {sr}",
        f"dropped     {info['dropped_samples']} samples (write queue full)",
        f"missing     {info['missing_samples']} samples (sent but never arrived)",
        f"rejected    {info['rejected_samples']} samples (NaN, bad stamp or shape)",
        f"size        {info['size_bytes'] / 1e6:.2f} MB",
    ]
    if info["lossy_episodes"]:
        shown = info["lossy_episodes"][:20]
        lines.append(f"WARNING     {len(info['lossy_episodes'])} episode(s) lost samples: {shown}"
                     f"{' ...' if len(shown) < len(info['lossy_episodes']) else ''} (`robot-rl data validate` lists them)")
    if info["interrupted_episode"]:
        lines.append("WARNING     an interrupted episode is pending: run `robot-rl data recover`")
    lines.append(f"{'stream':24s} {'dtype':8s} {'shape':16s} {'rate Hz':>8s} {'units':8s} {'codec':6s} {'samples':>10s}")
    for name, s in info["streams"].items():
        lines.append(f"{name:24s} {s['dtype']:8s} {str(tuple(s['shape'])):16s} {s['rate_hz']:8.1f} "
                     f"{s['units']:8s} {s['codec']:6s} {s['samples']:10d}")
    return "\n".join(lines)
