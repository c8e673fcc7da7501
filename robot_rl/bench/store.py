"""`robot-rl bench store`: recording, training-read and disk cost of the episode store, side by side
with the diffusion_policy replay-buffer layout measured in the same run.

Rows (values are medians over `repeats`):
  record_realtime_factor     seconds of session per second of wall time: a synthetic session (2 RGB
                             cameras 640x480 @ 30 Hz, 1 depth 640x480 uint16 @ 30 Hz, joint_pos and
                             ee_pose @ 1 kHz, actions @ 10 Hz) pushed as fast as possible through the real
                             EpisodeWriter (block_on_full=True), timed until the commit is durable.
  record_dropped_samples     samples dropped when the same session is paced at real time with the
                             default (non-blocking) writer.
  read_state_samples_per_s   state-only windows (n_obs 2, horizon 16) through a DataLoader with 2
                             workers (robot_rl: batch_loader, whole batches gathered in the worker),
                             vs the same windows read from the diffusion_policy layout by a
                             diffusion_policy-style reader (per-item fetch, default collation).
  read_images_samples_per_s  the same windows with 2 cameras at 96x96.
  disk_mb_per_hour           size on disk of one hour of a 2-camera 640x480 @ 30 Hz session (+ proprio
                             and actions, no depth), vs the same samples in the diffusion_policy layout.

The baseline layout: zarr format 2 with `data/<key>` + `meta/episode_ends`, images one frame per
chunk compressed with imagecodecs' JPEG 2000 numcodecs codec (level 50, as diffusion_policy's
real-robot conversion does), low-dim Blosc zstd. The read data is written by robot_rl's
diffusion_policy exporter from our store (the same decoded frames in both layouts); the disk
comparison writes the same raw frames to both. Frames are synthetic but camera-like: smooth
gradients, moving shapes, mild sensor noise.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_rl.bench import options
from robot_rl.core.results import BenchRow, report_bench
from robot_rl.data.schema import StreamSpec
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter

NAME = "store"
BASELINE = "diffusion_policy_layout"
CAMERA_HZ, PROPRIO_HZ, ACTION_HZ = 30.0, 1000.0, 10.0


# -- synthetic camera-like data ------------------------------------------------------------------
def scene_frames(n: int, h: int, w: int, seed: int = 0, depth: bool = False) -> np.ndarray:
    """n frames of a smooth gradient scene with two moving shapes and mild noise:
    (n, h, w, 3) uint8 RGB, or (n, h, w) uint16 depth in millimetres."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if depth:
        base = 700.0 + 600.0 * yy / h  # a table plane receding from the camera
    else:
        base = np.stack([40 + 160 * xx / w, 30 + 150 * yy / h, 60 + 120 * (xx + yy) / (w + h)], -1)
    frames = []
    for i in range(n):
        phase = 2 * np.pi * i / n
        img = base.copy()
        cx, cy = w * (0.5 + 0.3 * np.cos(phase)), h * (0.5 + 0.25 * np.sin(phase))
        disk = (xx - cx) ** 2 + (yy - cy) ** 2 < (0.12 * h) ** 2
        bx, by = int(w * (0.2 + 0.5 * i / n)), int(h * 0.65)
        box = (slice(by, by + h // 6), slice(bx, bx + w // 8))
        if depth:
            img[disk] -= 250.0
            img[box] -= 120.0
            img += rng.normal(0, 2.0, img.shape).astype(np.float32)
            frames.append(np.clip(img, 0, 65535).astype(np.uint16))
        else:
            img[disk] = (200, 60, 50)
            img[box] = (50, 90, 190)
            img += rng.normal(0, 2.0, img.shape).astype(np.float32)
            frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


class Session:
    """One synthetic recording session: timestamped samples of every stream, in time order."""

    def __init__(self, seconds: float, seed: int = 0, depth: bool = True, hw: tuple[int, int] = (480, 640)) -> None:
        pool = int(CAMERA_HZ)  # one second of frames, looped
        self.seconds = seconds
        self.cams = [scene_frames(pool, *hw, seed=seed + i) for i in range(2)]
        self.depth = scene_frames(pool, *hw, seed=seed + 7, depth=True) if depth else None
        rng = np.random.default_rng(seed)
        t_p = np.arange(0, seconds, 1 / PROPRIO_HZ)
        self.t_proprio = t_p
        self.joint_pos = np.sin(t_p[:, None] * np.linspace(0.3, 1.1, 7)) + rng.normal(0, 1e-4, (len(t_p), 7))
        self.ee_pose = np.cos(t_p[:, None] * np.linspace(0.2, 0.9, 7)) + rng.normal(0, 1e-4, (len(t_p), 7))
        self.t_action = np.arange(0, seconds, 1 / ACTION_HZ) + 1e-4
        self.action = np.sin(self.t_action[:, None] * np.linspace(0.5, 1.5, 7)).astype(np.float32)
        self.t_camera = np.arange(0, seconds, 1 / CAMERA_HZ) + 2e-4

    def streams(self) -> list[StreamSpec]:
        h, w = self.cams[0].shape[1:3]
        out = [StreamSpec("action", "float32", (7,), ACTION_HZ),
               StreamSpec("joint_pos", "float64", (7,), PROPRIO_HZ, units="rad"),
               StreamSpec("ee_pose", "float64", (7,), PROPRIO_HZ, units="m"),
               StreamSpec("cam0", "uint8", (h, w, 3), CAMERA_HZ, codec="jpeg", interp="hold"),
               StreamSpec("cam1", "uint8", (h, w, 3), CAMERA_HZ, codec="jpeg", interp="hold")]
        if self.depth is not None:  # lossless zstd: 10x faster than PNG on 16-bit depth, and smaller
            out.append(StreamSpec("depth", "uint16", (h, w), CAMERA_HZ, units="mm", codec="zstd", interp="hold"))
        return out

    def events(self):
        """(t, stream, value) in time order."""
        pool = len(self.cams[0])
        ev = [(t, "joint_pos", self.joint_pos[i]) for i, t in enumerate(self.t_proprio)]
        ev += [(t, "ee_pose", self.ee_pose[i]) for i, t in enumerate(self.t_proprio)]
        ev += [(t, "action", self.action[i]) for i, t in enumerate(self.t_action)]
        for i, t in enumerate(self.t_camera):
            ev += [(t, "cam0", self.cams[0][i % pool]), (t, "cam1", self.cams[1][i % pool])]
            if self.depth is not None:
                ev.append((t, "depth", self.depth[i % pool]))
        ev.sort(key=lambda e: e[0])
        return ev


# -- recording -----------------------------------------------------------------------------------
def record(path: Path, session: Session, events, paced: bool) -> tuple[float, float, int]:
    """Record `events` into a new store at `path`. Returns (wall seconds until the commit is durable,
    CPU seconds of this process meanwhile, samples dropped by the writer)."""
    store = EpisodeStore.create(path, session.streams())
    dropped = 0
    with EpisodeWriter(store, block_on_full=not paced) as writer:
        t0, cpu0 = time.perf_counter(), time.process_time()
        writer.begin_episode({"task": "bench", "source": "scripted"})
        for t, stream, value in events:
            if paced:
                ahead = t - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            dropped += not writer.append(stream, value, t)
        writer.commit(success=True)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    recorded = sum(store.episode_meta(0)["dropped"].values())
    if recorded != dropped:
        raise RuntimeError(f"{path}: writer recorded {recorded} dropped samples, append() reported {dropped}")
    return elapsed, cpu, dropped


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# -- the diffusion_policy layout (baseline) ------------------------------------------------------
def export_baseline(store_path: Path, out: Path, **options) -> dict:
    """The store's episodes written by robot_rl's diffusion_policy exporter (zarr format 2, one frame
    per chunk, JPEG 2000 level 50 as diffusion_policy's real-robot data, low-dim Blosc zstd)."""
    from robot_rl.data.convert.diffusion_policy import export_store

    return export_store(EpisodeStore.open(store_path), out, image_codec="jpeg2k", **options)


def write_dp_layout(path: Path, data: dict[str, np.ndarray], episode_ends: np.ndarray) -> None:
    """Raw arrays in the same layout as export_baseline (for samples that are not in a store):
    data/<key> with (N, H, W, 3) frames one per chunk in JPEG 2000 level 50, others Blosc zstd."""
    import numcodecs
    import zarr
    from imagecodecs.numcodecs import Jpeg2k

    from robot_rl.data.convert.diffusion_policy import register_image_codecs

    register_image_codecs()
    blosc = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    for key, arr in data.items():
        chunks = (1, *arr.shape[1:]) if arr.ndim == 4 else arr.shape
        root.create_array(f"data/{key}", shape=arr.shape, dtype=arr.dtype, chunks=chunks,
                          compressors=Jpeg2k(level=50) if arr.ndim == 4 else blosc)[:] = arr
    root.create_array("meta/episode_ends", shape=episode_ends.shape, dtype="int64", compressors=None)[:] = episode_ends


# -- training read -------------------------------------------------------------------------------
def read_spec(cameras: int, hw=(96, 96)):
    from robot_rl.core.spec import FeatureSpec, PolicySpec

    obs = [FeatureSpec("state", (8,))] + [FeatureSpec(f"cam{i}", (3, *hw), kind="rgb", normalize="image")
                                          for i in range(cameras)]
    return PolicySpec(obs=tuple(obs), action=FeatureSpec("action", (7,)), n_obs_steps=2, horizon=16, n_action_steps=8)


def write_read_data(tmp: Path, episodes: int, steps: int, hw=(96, 96), seed: int = 0) -> tuple[Path, Path]:
    """10 Hz training data (state (8,), action (7,), two 96x96 cameras) in our store, and the same
    episodes exported to the diffusion_policy layout. Returns (store path, baseline path)."""
    rng = np.random.default_rng(seed)
    cams = [scene_frames(steps, *hw, seed=seed + i) for i in range(2)]
    streams = [StreamSpec("action", "float32", (7,), ACTION_HZ), StreamSpec("state", "float32", (8,), ACTION_HZ)]
    streams += [StreamSpec(f"cam{i}", "uint8", (*hw, 3), ACTION_HZ, codec="jpeg", interp="hold") for i in range(2)]
    ours = tmp / "read_ours.zarr"
    store = EpisodeStore.create(ours, streams)
    with EpisodeWriter(store, block_on_full=True) as writer:
        for _ in range(episodes):
            ep = {"state": rng.normal(size=(steps, 8)).cumsum(0).astype(np.float32) * 0.01,
                  "action": rng.normal(size=(steps, 7)).cumsum(0).astype(np.float32) * 0.01,
                  "cam0": cams[0], "cam1": cams[1]}
            writer.begin_episode({"source": "scripted", "success": True})
            for k in range(steps):
                for key, values in ep.items():
                    writer.append(key, values[k], k / ACTION_HZ)
            writer.commit()
    export_baseline(ours, tmp / "read_dp.zarr")
    return ours, tmp / "read_dp.zarr"


class DPLayoutWindows:
    """Windowed reader of the diffusion_policy layout with the same windows and items as
    WindowDataset: low-dim arrays loaded in memory, images sliced per item from the zarr v2 arrays
    (opened in each worker)."""

    def __init__(self, path: Path, spec) -> None:
        import zarr

        from robot_rl.data.sampler import window_starts

        self.path, self.spec = str(path), spec
        root = zarr.open_group(self.path, mode="r", zarr_format=2)
        self.low = {f.key: np.asarray(root[f"data/{f.stream}"][:], dtype=np.float32)
                    for f in (*spec.low_dim, spec.action)}
        ends = np.asarray(root["meta/episode_ends"][:])
        starts = np.concatenate([[0], ends[:-1]])
        win = [(s, e, w) for s, e in zip(starts, ends)
               for w in window_starts(int(e - s), spec.horizon, spec.n_obs_steps - 1, spec.n_action_steps - 1)]
        self.windows = np.asarray(win, dtype=np.int64).reshape(-1, 3)
        self._arrays, self._pid = {}, None

    def __len__(self) -> int:
        return len(self.windows)

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_arrays": {}, "_pid": None}

    def __getitem__(self, i: int):
        import torch
        import zarr

        from robot_rl.data.convert.diffusion_policy import register_image_codecs
        from robot_rl.data.sampler import window_steps

        if self._pid != os.getpid():
            register_image_codecs()
            root = zarr.open_group(self.path, mode="r", zarr_format=2)
            self._arrays = {f.key: root[f"data/{f.stream}"] for f in self.spec.images}
            self._pid = os.getpid()
        start, end, w = self.windows[i]
        rows = start + window_steps(w, end - start, self.spec.horizon)
        obs = rows[: self.spec.n_obs_steps]
        item = {f.key: torch.from_numpy(self.low[f.key][obs]) for f in self.spec.low_dim}
        for f in self.spec.images:
            frames = np.asarray(self._arrays[f.key][obs[0]: obs[-1] + 1])[obs - obs[0]]
            item[f.key] = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))
        item["action"] = torch.from_numpy(self.low["action"][rows])
        return item


def samples_per_s(dataset, n_samples: int, batch_size: int, batched: bool, workers: int = 2, seed: int = 0) -> float:
    """Samples/s of a shuffled 2-worker DataLoader over `n_samples`, after the first batch (worker
    start-up). batched: the dataset gathers whole batches (robot_rl's batch_loader); else per-item
    fetching with default collation (how the diffusion_policy dataset is read)."""
    import torch
    from torch.utils.data import DataLoader

    from robot_rl.data.dataset import batch_loader

    if batched:
        loader = batch_loader(dataset, batch_size, shuffle=True, num_workers=workers, drop_last=True, seed=seed,
                              persistent_workers=True)
    else:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
                            generator=torch.Generator().manual_seed(seed), persistent_workers=True)
    n_samples = max(n_samples, 16 * batch_size)  # batches prefetched during start-up are <= 4 of >= 16
    it = iter(loader)
    next(it)
    n, t0 = 0, time.perf_counter()
    while n < n_samples:
        try:
            n += len(next(it)["action"])
        except StopIteration:
            it = iter(loader)
    rate = n / (time.perf_counter() - t0)
    del it, loader  # stops the workers
    return rate


# -- main ----------------------------------------------------------------------------------------
@dataclass
class StoreBenchConfig:
    """`robot-rl bench store`'s options (configs/bench.yaml's `store:` section)."""

    seconds: float = 20.0             # length of the synthetic recording session
    read_samples: int = 1024          # image windows timed per measurement (state reads 8x that, the slower
                                      # baseline image reader 1/4; every measurement spans at least 16 batches)


def main(cfg) -> int:
    """cfg: StoreBenchConfig's keys beside the common json, repeats, seed."""
    from robot_rl.data.dataset import WindowDataset
    from robot_rl.data.sampler import WindowSampler

    opts, common = options(cfg, StoreBenchConfig, NAME)
    seconds, read_samples = opts.seconds, opts.read_samples
    repeats, seed = int(common["repeats"]), int(common["seed"])
    medians: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        medians.setdefault(name, []).append(float(value))

    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        tmp = Path(tmp)
        print(f"bench store: synthesising a {seconds:g} s session ...", flush=True)
        session = Session(seconds, seed)
        events = session.events()
        for r in range(repeats):
            elapsed, cpu, _ = record(tmp / f"fast{r}.zarr", session, events, paced=False)
            add("rtf", seconds / elapsed)
            _, _, dropped = record(tmp / f"paced{r}.zarr", session, events, paced=True)
            add("dropped", dropped)
            print(f"  record repeat {r}: {seconds:g} s session durable after {elapsed:.2f} s "
                  f"({cpu / seconds:.2f} CPU s per session s, load average {os.getloadavg()[0]:.1f}); "
                  f"{dropped} dropped when paced at real time", flush=True)
        # disk: the same raw samples of a 2-camera session (no depth) in both layouts. Ours: the first
        # recorded session. Baseline: one second of it (camera frames loop a 1 s pool, so each second
        # holds the same content; JPEG 2000 encoding of 640x480 is too slow for more).
        ours = tmp / "fast0.zarr"
        parts = ("cam0", "cam1", "joint_pos", "ee_pose", "action")
        our_bytes = sum(dir_bytes(ours / d / s) for d in ("data", "time") for s in parts) + dir_bytes(ours / "meta")
        our_mb_h = our_bytes / 1e6 * 3600.0 / seconds
        second = {"cam0": session.cams[0], "cam1": session.cams[1],
                  "joint_pos": session.joint_pos[: int(PROPRIO_HZ)], "ee_pose": session.ee_pose[: int(PROPRIO_HZ)],
                  "action": session.action[: int(ACTION_HZ)], "timestamp": session.t_proprio[: int(PROPRIO_HZ)]}
        write_dp_layout(tmp / "disk_dp.zarr", second, np.asarray([int(PROPRIO_HZ)], dtype=np.int64))
        dp_mb_h = dir_bytes(tmp / "disk_dp.zarr") / 1e6 * 3600.0
        import zarr

        our_img = np.asarray(EpisodeStore.open(ours).values("cam0")[:4])
        dp_img = np.asarray(zarr.open_group(str(tmp / "disk_dp.zarr"), mode="r", zarr_format=2)["data/cam0"][:4])
        print(f"  image quality (PSNR vs the raw frames): ours JPEG q90 {psnr(our_img, session.cams[0][:4]):.1f} dB, "
              f"baseline JPEG 2000 level 50 {psnr(dp_img, session.cams[0][:4]):.1f} dB", flush=True)

        print("bench store: writing the training-read data in both layouts ...", flush=True)
        ours_path, dp_path = write_read_data(tmp, episodes=8, steps=150, seed=seed)
        for cameras, key in ((0, "state"), (2, "images")):
            spec = read_spec(cameras)
            ours_ds = WindowDataset(WindowSampler(ours_path, spec))
            dp_ds = DPLayoutWindows(dp_path, spec)
            batch = 256 if cameras == 0 else 32
            n = read_samples * (8 if cameras == 0 else 1)
            for r in range(repeats):
                add(f"read_{key}", samples_per_s(ours_ds, n, batch, batched=True, seed=seed + r))
                add(f"read_{key}_dp", samples_per_s(dp_ds, n if cameras == 0 else n // 4, batch, batched=False,
                                                    seed=seed + r))
                print(f"  read {key} repeat {r}: {medians[f'read_{key}'][-1]:.0f} vs baseline "
                      f"{medians[f'read_{key}_dp'][-1]:.0f} samples/s", flush=True)

    med = {k: statistics.median(v) for k, v in medians.items()}
    rows = [
        BenchRow("record_realtime_factor", med["rtf"], "x"),
        BenchRow("record_dropped_samples", med["dropped"], "samples"),
        BenchRow.compare("read_state_samples_per_s", med["read_state"], "samples/s", BASELINE,
                         med["read_state_dp"], higher_is_better=True),
        BenchRow.compare("read_images_samples_per_s", med["read_images"], "samples/s", BASELINE,
                         med["read_images_dp"], higher_is_better=True),
        BenchRow.compare("disk_mb_per_hour", our_mb_h, "MB/h", BASELINE, dp_mb_h, higher_is_better=False),
    ]
    report_bench(NAME, rows, common["json"])
    return 0
