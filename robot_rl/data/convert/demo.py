"""A small multi-rate episode store written with the project's own EpisodeWriter, for converter
tests and demos: action at 10 Hz, joint_pos at 100 Hz (jittered clock), ee_quat at 100 Hz (slerp),
one 32x32 RGB camera at 30 Hz that starts a few ms late, and a gripper opening gripper_pos (1,) at 50 Hz."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robot_rl.core.rotations import quat_normalize
from robot_rl.data.schema import EpisodeMeta, StreamSpec
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter

DEMO_SPECS = (
    StreamSpec("action", "float32", (7,), 10.0, units="m,rad", frame="base", description="EE target"),
    StreamSpec("joint_pos", "float64", (7,), 100.0, units="rad", frame="joint"),
    StreamSpec("ee_quat", "float64", (4,), 100.0, frame="base", interp="slerp"),
    StreamSpec("gripper_pos", "float32", (1,), 50.0, units="m"),
    StreamSpec("cam_front_rgb", "uint8", (32, 32, 3), 30.0, codec="jpeg", interp="hold", latency_s=0.03),
)


def demo_frame(t: float) -> np.ndarray:
    """A smooth image (JPEG-friendly) whose content encodes the time, for checking alignment."""
    y, x = np.mgrid[0:32, 0:32]
    phase = 2 * np.pi * t
    r = 128 + 100 * np.sin(x / 6.0 + phase)
    g = 128 + 100 * np.cos(y / 6.0 - phase)
    b = np.full_like(r, 40 + 200 * (t % 1.0))
    return np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)


def demo_signals(name: str, t: np.ndarray) -> np.ndarray:
    if name == "action":
        return np.stack([np.sin(t + k) for k in range(7)], -1).astype(np.float32)
    if name == "joint_pos":
        return np.stack([0.5 * np.sin(2 * t + k) for k in range(7)], -1)
    if name == "ee_quat":
        angle = 0.8 * t
        return quat_normalize(np.stack([np.cos(angle / 2), np.sin(angle / 2) * 0.6, np.sin(angle / 2) * 0.8,
                                        np.zeros_like(t)], -1))
    if name == "gripper_pos":
        return (0.04 + 0.04 * np.sin(t))[:, None].astype(np.float32)
    if name == "cam_front_rgb":
        return np.stack([demo_frame(float(ti)) for ti in t])
    raise KeyError(name)


def demo_times(spec: StreamSpec, t0: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = int(round(seconds * spec.rate_hz))
    t = t0 + np.arange(n) / spec.rate_hz
    if spec.name == "joint_pos":  # a real 100 Hz bus: up to 2 ms of jitter
        t = t + rng.uniform(0, 0.002, n)
    if spec.name == "cam_front_rgb":  # the camera's first frame arrives after the first action
        t = t + 0.004
    return t


def write_demo_store(path: str | Path, episodes: int = 3, seconds: float | list[float] = (1.0, 1.5, 0.8),
                     seed: int = 0, t0: float = 100.0) -> EpisodeStore:
    """Create a store at `path` with `episodes` committed episodes (lengths cycle through `seconds`)."""
    rng = np.random.default_rng(seed)
    lengths = [seconds] if isinstance(seconds, (int, float)) else list(seconds)
    store = EpisodeStore.create(path, list(DEMO_SPECS))
    with EpisodeWriter(store, block_on_full=True) as writer:
        for e in range(episodes):
            dur = lengths[e % len(lengths)]
            writer.begin_episode(EpisodeMeta(task="reach" if e % 2 == 0 else "push", rig="demo",
                                             source="scripted", notes=f"demo {e}"))
            for spec in DEMO_SPECS:
                t = demo_times(spec, t0, dur, rng)
                for v, ti in zip(demo_signals(spec.name, t), t):
                    writer.append(spec.name, v, ti)
            writer.commit(success=e % 3 != 2, reward_labels=[0.0, 1.0])
            t0 += dur + 5.0
    return EpisodeStore.open(path)


def demo_store(cache_dir: str | Path) -> EpisodeStore:
    """The default demo store under `cache_dir`, written on first use (tests share one per session)."""
    path = Path(cache_dir) / "robot_rl_convert_demo.zarr"
    if not path.exists():
        tmp = path.with_name(path.name + ".tmp")
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        write_demo_store(tmp)
        tmp.rename(path)
    return EpisodeStore.open(path)
