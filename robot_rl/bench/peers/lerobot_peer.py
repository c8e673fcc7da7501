"""LeRobot measured side by side with robot_rl, on the same episodes and observation shapes.

LeRobot pins an older torch, so it lives in its own venv (`lerobot.venv`, default `.venv-lerobot`
in the repository; `lerobot.create_venv=true` makes it with `python -m venv` + `pip install
lerobot`, only when asked). Its side runs there as a subprocess (lerobot_worker.py) that exchanges
JSON and npz files with this module.

Rows (medians over `repeats`; ratio > 1: robot_rl better):
  record_frames_per_s          E episodes x T frames (2 cameras 96x96 RGB, state (8,), action (7,),
                               10 Hz) recorded as fast as possible until durable: EpisodeWriter
                               (JPEG frames) vs LeRobotDataset.create + add_frame + save_episode +
                               finalize with lerobot-record's defaults (PNG image writer threads,
                               4 per camera; libsvtav1 video encoded at save_episode)
  disk_kb_per_frame            size on disk of those recordings, per frame (lower is better)
  read_state_samples_per_s     training windows (2 observation steps, 16 actions) through a shuffled
  read_images_samples_per_s    2-worker DataLoader: WindowDataset on our store vs LeRobotDataset with
                               delta_timestamps on the LeRobot copy of the same store written by
                               robot_rl's exporter (libsvtav1, crf 30, keyframe every 2 frames)
  latency_ms_p50_<ours>_vs_lerobot_<method>_<obs>
                               batch-1 latency on one CPU thread, same observation shapes as `bench
                               policy` (state: 20 dims; images: 2 cameras 96x96 + 10-dim proprio):
                               our one-step student / DDIM-10 teacher / DDPM-100 teacher (the policy
                               bench's rows of the same run) vs LeRobot's DiffusionPolicy, randomly
                               initialised: `ddpm100` its defaults (U-Net 512/1024/2048, DDPM 100
                               steps), `ddim10` the same with DDIM 10 steps, `ddim10_unet256` DDIM 10
                               with our U-Net widths 256/512/1024 (those of the policy bench's model)
  latency_ms_p50/p99_lerobot_<method>_<obs>, lerobot_params_M_<method>_<obs>: LeRobot alone
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.bench import options
from robot_rl.bench.peers import lerobot_worker as protocol
from robot_rl.core.errors import RobotRLError
from robot_rl.core.results import BenchRow
from robot_rl.data.writer import EpisodeWriter

NAME = "lerobot"
WORKER = Path(__file__).with_name("lerobot_worker.py")
FPS = 10
CAMERAS = ("cam0", "cam1")


@dataclass
class LeRobotPeerConfig:
    """The LeRobot peer's options (configs/bench.yaml's `lerobot:` section; bench all adds model and keep)."""

    venv: str | None = None           # its virtual environment; None: .venv-lerobot in the repository
    create_venv: bool = False         # make the venv when missing (python -m venv + pip install <pip_spec>; several GB)
    pip_spec: str = "lerobot"
    episodes: int = 8                 # episodes x steps frames at 10 Hz, 2 cameras 96x96 + state (8,) + action (7,)
    steps: int = 150
    read_samples: int = 1024          # image windows per robot_rl read measurement (state: 8x; LeRobot: 1/4, >= 16 batches)
    workers: int = 2                  # DataLoader workers on both sides
    threads: int = 1                  # torch threads of the latency measurements
    vcodec: str = "libsvtav1"         # LeRobot's recording default; also the codec of the exported copy it reads
    crf: int = 30                     # the exported copy's quality (LeRobot's recording default)
    image_writer_threads_per_camera: int = 4   # lerobot-record's default
    streaming_encoding: bool = False           # lerobot-record's default
    ddpm100: bool = True              # also time LeRobot's default 100-step DDPM sampler (~10x the DDIM-10 time)
    timeout_s: float = 3600.0
    model: Any = "diffusion_unet"     # the policy bench's model: its U-Net widths for the ddim10_unet<w> network
    keep: str | None = None           # a folder to keep the exchanged request and result in


class PeerUnavailable(RobotRLError):
    """The peer cannot be measured on this machine; the message says why."""


def repo_root() -> Path:
    from robot_rl.core.config import config_dir

    return config_dir().parent


def venv_python(venv: str | Path | None) -> Path:
    venv = Path(venv) if venv else repo_root() / ".venv-lerobot"
    return venv / "bin" / "python"


def ensure_venv(venv: str | Path | None, create: bool, pip_spec: str) -> Path:
    """The LeRobot venv's python; made (venv + pip install) only when `create` is true."""
    python = venv_python(venv)
    if python.exists():
        return python
    root = python.parent.parent
    if not create:
        raise PeerUnavailable(f"no LeRobot venv at {root} (give one with lerobot.venv=<path>, or make it with "
                              f"lerobot.create_venv=true)")
    print(f"bench lerobot: creating {root} and installing {pip_spec} (several GB) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", *pip_spec.split()], check=True)
    return python


# -- the episodes, and robot_rl's side -----------------------------------------------------------
def make_episodes(episodes: int, steps: int, hw: int = 96, seed: int = 0) -> dict[str, np.ndarray]:
    """state (E, T, 8), action (E, T, 7) float32 random walks, cam0/cam1 (E, T, hw, hw, 3) uint8
    camera-like frames (store bench's synthetic scene)."""
    from robot_rl.bench.store import scene_frames

    rng = np.random.default_rng(seed)
    out = {"state": (rng.normal(size=(episodes, steps, 8)).cumsum(1) * 0.01).astype(np.float32),
           "action": (rng.normal(size=(episodes, steps, 7)).cumsum(1) * 0.01).astype(np.float32)}
    for i, cam in enumerate(CAMERAS):
        out[cam] = np.stack([scene_frames(steps, hw, hw, seed=seed + 10 * e + i) for e in range(episodes)])
    return out


def record_ours(path: Path, episodes: dict[str, np.ndarray]) -> float:
    """Seconds from the first append until the last episode's commit is durable (EpisodeWriter,
    block_on_full=True: nothing dropped), at FPS timestamps."""
    from robot_rl.data.schema import StreamSpec
    from robot_rl.data.episode_store import EpisodeStore

    n_eps, steps = episodes["action"].shape[:2]
    streams = [StreamSpec("action", "float32", (7,), FPS), StreamSpec("state", "float32", (8,), FPS)]
    streams += [StreamSpec(cam, "uint8", episodes[cam].shape[2:], FPS, codec="jpeg", interp="hold")
                for cam in CAMERAS]
    store = EpisodeStore.create(path, streams)
    with EpisodeWriter(store, block_on_full=True) as writer:
        t0 = time.perf_counter()
        for e in range(n_eps):
            writer.begin_episode({"task": "bench", "source": "scripted", "success": True})
            for k in range(steps):
                for key in ("state", "action", *CAMERAS):
                    writer.append(key, episodes[key][e, k], k / FPS)
            writer.commit()
        return time.perf_counter() - t0


def read_ours(store_path: Path, cameras: int, samples: int, batch: int, workers: int, seed: int) -> float:
    """Samples/s of WindowDataset windows through robot_rl's batch loader."""
    from robot_rl.bench.store import read_spec, samples_per_s
    from robot_rl.data.dataset import WindowDataset
    from robot_rl.data.sampler import WindowSampler

    dataset = WindowDataset(WindowSampler(store_path, read_spec(cameras)))
    return samples_per_s(dataset, samples, batch, batched=True, workers=workers, seed=seed)


def latency_request(cfg: LeRobotPeerConfig, repeats: int) -> dict:
    """The policy bench's observation/action shapes in LeRobot terms. LeRobot's diffusion policy
    needs an image or an environment state, so the 20 state dims go in as 10 state + 10 environment
    state (both are concatenated into the global conditioning, as our state vector is)."""
    from robot_rl.bench.policy import bench_specs

    specs = bench_specs()
    obs = {}
    for name, spec in specs.items():
        low = sum(int(np.prod(f.shape)) for f in spec.low_dim)
        images = list(spec.images)
        if images:
            obs[name] = {"state_dim": low, "env_state_dim": 0, "cameras": len(images),
                         "image_shape": list(images[0].shape)}
        else:
            obs[name] = {"state_dim": low // 2, "env_state_dim": low - low // 2, "cameras": 0}
    spec = next(iter(specs.values()))
    return {"obs": obs, "action_dim": int(spec.action.shape[0]), "n_obs_steps": spec.n_obs_steps,
            "horizon": spec.horizon, "n_action_steps": spec.n_action_steps, "methods": latency_methods(cfg, repeats)}


# -- the worker ----------------------------------------------------------------------------------
def run_worker(python: Path, request: dict, work: Path, timeout_s: float) -> dict:
    """Run lerobot_worker.py in the LeRobot venv on `request`; its validated result."""
    protocol.validate_request(request)
    req_path = work / "request.json"
    req_path.write_text(json.dumps(request, indent=2))
    env = dict(os.environ, OMP_NUM_THREADS=str(request["threads"]), MKL_NUM_THREADS=str(request["threads"]),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(work / "hf"), SVT_LOG="1",
               PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)  # nothing of robot_rl's venv leaks into LeRobot's
    proc = subprocess.Popen([str(python), str(WORKER), str(req_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    tail: deque[str] = deque(maxlen=30)

    def drain() -> None:  # progress lines through, the rest kept for an error message
        for line in proc.stderr:
            tail.append(line.rstrip())
            if line.startswith("  lerobot peer:"):
                print(line.rstrip(), flush=True)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise PeerUnavailable(f"{WORKER.name} did not finish within lerobot.timeout_s={timeout_s:g} s") from None
    reader.join(timeout=10)
    if code != 0:
        raise PeerUnavailable(f"{WORKER.name} in {python} exited with {code}:\n" + "\n".join(tail))
    path = Path(request["result"])
    try:
        return protocol.validate_result(json.loads(path.read_text()), request)
    except (OSError, json.JSONDecodeError, ValueError) as e:
        raise PeerUnavailable(f"{path}: {e}") from None


# -- rows ----------------------------------------------------------------------------------------
def _ms(seconds, q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1e3, q))


def latency_methods(cfg: LeRobotPeerConfig, repeats: int) -> dict[str, dict]:
    """ddim10 (LeRobot's default network, DDIM 10), ddim10_unet<w> (the U-Net widths of our policy
    bench's model, first width w: 256 for diffusion_unet), ddpm100 (LeRobot's defaults): 3 * `repeats`
    timed calls of the 10-step samplers as the policy bench, max(1, repeats // 3) of the 100-step one
    (100 forwards of a 250 M network per call)."""
    from robot_rl.bench.policy import policy_config

    ours = list(policy_config(cfg.model).down_dims)
    methods = {"ddim10": {"scheduler": "DDIM", "steps": 10, "calls": 3 * repeats, "warmup": 1, "down_dims": None},
               f"ddim10_unet{ours[0]}": {"scheduler": "DDIM", "steps": 10, "calls": 3 * repeats, "warmup": 1,
                                         "down_dims": ours}}
    if cfg.ddpm100:  # ~10x ddim10's 100 forwards per call (~1.5 min here): 1 call per 3 repeats
        methods["ddpm100"] = {"scheduler": "DDPM", "steps": 100, "calls": max(1, repeats // 3), "warmup": 0,
                              "down_dims": None}
    return methods


def compared_with(method: dict) -> tuple[str, ...]:
    """Which of our samplers (policy bench row names) a LeRobot latency method is compared with:
    its default network against our student and our sampler with the same steps, our widths against
    our sampler only."""
    ours = {10: "ddim10", 100: "ddpm100"}.get(method["steps"])
    if ours is None:
        return ()
    return (ours,) if method.get("down_dims") else ("student", ours)


def rows_from(result: dict, ours: dict[str, Any], policy: dict[str, float], request: dict) -> list[BenchRow]:
    """BenchRows from the worker's result, our measurements and the policy bench's rows (metric ->
    value; empty when that bench did not run)."""
    version = result["lerobot_version"]
    rows: list[BenchRow] = []
    if "record" in result:
        rec = result["record"]
        base = f"lerobot {version} LeRobotDataset ({rec.get('vcodec', '?')})"
        theirs = rec["frames"] / statistics.median(rec["seconds"])
        rows.append(BenchRow.compare("record_frames_per_s", ours["record_frames"] / statistics.median(ours["record_s"]),
                                     "frames/s", base, theirs, higher_is_better=True))
        rows.append(BenchRow.compare("disk_kb_per_frame", ours["disk_bytes"] / 1e3 / ours["record_frames"], "kB",
                                     base, rec["disk_bytes"] / 1e3 / rec["frames"], higher_is_better=False))
    for kind, entry in result.get("read", {}).items():
        base = f"lerobot {version} LeRobotDataset ({entry.get('video_backend', '?')} decode)" if kind == "images" \
            else f"lerobot {version} LeRobotDataset"
        rows.append(BenchRow.compare(f"read_{kind}_samples_per_s", statistics.median(ours[f"read_{kind}"]),
                                     "samples/s", base, statistics.median(entry["samples_per_s"]), True))
    lat = result.get("latency", {})
    methods = request["latency"]["methods"] if request.get("latency") else {}
    for obs in request["latency"]["obs"] if request.get("latency") else ():
        for method, spec in methods.items():
            theirs = _ms(lat[protocol.latency_key(method, obs)]["seconds"], 50)
            for mine in compared_with(spec):
                our_value = policy.get(f"latency_ms_p50_{mine}_{obs}")
                if our_value is not None:
                    rows.append(BenchRow.compare(f"latency_ms_p50_{mine}_vs_lerobot_{method}_{obs}", our_value, "ms",
                                                 f"lerobot {version} DiffusionPolicy {method}", theirs,
                                                 higher_is_better=False))
        for method in methods:
            entry = lat[protocol.latency_key(method, obs)]
            rows.append(BenchRow(f"latency_ms_p50_lerobot_{method}_{obs}", _ms(entry["seconds"], 50), "ms"))
            rows.append(BenchRow(f"latency_ms_p99_lerobot_{method}_{obs}", _ms(entry["seconds"], 99), "ms"))
            rows.append(BenchRow(f"lerobot_params_M_{method}_{obs}", entry["parameters"] / 1e6, "M"))
    return rows


def make_request(cfg: LeRobotPeerConfig, work: Path, batch: dict[str, int], samples: dict[str, int], repeats: int,
                 seed: int) -> dict:
    """The worker's request for the files in `work` (episodes.npz, lerobot_state/, lerobot_images/):
    record, read (state and images windows of the store bench's spec) and latency."""
    from robot_rl.bench.store import read_spec

    return {
        "protocol": protocol.PROTOCOL, "result": str(work / "result.json"), "work_dir": str(work / "lerobot"),
        "threads": cfg.threads, "repeats": repeats, "seed": seed,
        "record": {"episodes": str(work / "episodes.npz"), "fps": FPS, "cameras": list(CAMERAS),
                   "vcodec": cfg.vcodec, "image_writer_threads_per_camera": cfg.image_writer_threads_per_camera,
                   "streaming_encoding": cfg.streaming_encoding},
        "read": {"datasets": {"state": str(work / "lerobot_state"), "images": str(work / "lerobot_images")},
                 "n_obs_steps": read_spec(0).n_obs_steps, "horizon": read_spec(0).horizon,
                 "workers": cfg.workers, "batch_size": dict(batch),
                 "samples": {k: max(1, v // 4) for k, v in samples.items()}},  # the slower reader: 1/4, >= 16 batches
        "latency": latency_request(cfg, repeats),
    }


def measure(cfg, policy_rows: dict[str, float] | None = None) -> list[BenchRow]:
    """cfg: LeRobotPeerConfig's keys beside the common repeats and seed.
    policy_rows: the policy bench's rows of this run (metric -> value), for the latency ratios.
    Raises PeerUnavailable (with the reason) when LeRobot cannot be measured here."""
    from robot_rl.bench.store import read_spec
    from robot_rl.data.convert.lerobot import export_store
    from robot_rl.data.sampler import WindowSampler
    from robot_rl.data.episode_store import EpisodeStore

    cfg, common = options(cfg, LeRobotPeerConfig, NAME)
    python = ensure_venv(cfg.venv, cfg.create_venv, cfg.pip_spec)
    repeats, seed = int(common["repeats"]), int(common["seed"])
    n_eps, steps, read_samples, workers, keep = cfg.episodes, cfg.steps, cfg.read_samples, cfg.workers, cfg.keep
    work = Path(tempfile.mkdtemp(prefix="bench_lerobot_"))
    try:
        print(f"bench lerobot: {n_eps} episodes x {steps} frames, 2 cameras 96x96, venv python {python}", flush=True)
        episodes = make_episodes(n_eps, steps, seed=seed)
        np.savez(work / "episodes.npz", **episodes)
        ours: dict[str, Any] = {"record_s": [], "record_frames": n_eps * steps}
        for r in range(repeats):
            ours["record_s"].append(record_ours(work / f"ours_{r}.zarr", episodes))
            print(f"  robot_rl: record repeat {r}: {n_eps * steps} frames in {ours['record_s'][-1]:.2f} s", flush=True)
        store_path = work / "ours_0.zarr"
        ours["disk_bytes"] = sum(f.stat().st_size for f in store_path.rglob("*") if f.is_file())
        store = EpisodeStore.open(store_path)
        export = {"vcodec": cfg.vcodec, "crf": cfg.crf, "gop": 2}
        export_store(store, work / "lerobot_images", **export)
        export_store(store, work / "lerobot_state", streams=["action", "state"], **export)
        windows = len(WindowSampler(store_path, read_spec(0)))  # small (quick) runs: batches fit one pass
        batch = {"state": min(256, windows), "images": min(32, windows)}
        samples = {"state": 8 * read_samples, "images": read_samples}
        for kind, cams in (("state", 0), ("images", 2)):
            ours[f"read_{kind}"] = [read_ours(store_path, cams, samples[kind], batch[kind], workers, seed + r)
                                    for r in range(repeats)]
            print(f"  robot_rl: read {kind}: {', '.join(f'{v:.0f}' for v in ours[f'read_{kind}'])} samples/s",
                  flush=True)
        request = make_request(cfg, work, batch, samples, repeats, seed)
        result = run_worker(python, request, work, cfg.timeout_s)
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            for name in ("request.json", "result.json"):
                shutil.copy(work / name, Path(keep) / f"lerobot_{name}")
        return rows_from(result, ours, policy_rows or {}, request)
    finally:
        shutil.rmtree(work, ignore_errors=True)
