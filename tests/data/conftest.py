import numpy as np
import pytest

from robot_rl.data.schema import EpisodeMeta, StreamSpec
from robot_rl.data.episode_store import EpisodeStore


def small_specs():
    return [
        StreamSpec("action", "float32", (7,), 10.0),
        StreamSpec("joint_pos", "float64", (7,), 100.0, units="rad", frame="joint"),
        StreamSpec("ee_quat", "float64", (4,), 100.0, frame="base", interp="slerp"),
        StreamSpec("cam_front_rgb", "uint8", (32, 32, 3), 30.0, codec="jpeg", interp="hold"),
        StreamSpec("cam_front_depth", "uint16", (32, 32), 30.0, units="mm", codec="png", interp="hold"),
    ]


def record_episode(writer, seconds=1.0, t0=0.0, success=True, task="reach"):
    """One synthetic episode with every stream at its own rate; returns the values appended."""
    writer.begin_episode(EpisodeMeta(task=task, source="scripted", rig="test"))
    sent = {}
    for name, spec in writer.store.streams.items():
        n = int(seconds * spec.rate_hz)
        t = t0 + np.arange(n) / spec.rate_hz
        if name == "ee_quat":
            v = np.tile([1.0, 0, 0, 0], (n, 1))
        elif spec.dtype == "uint8":
            v = (np.arange(n)[:, None, None, None] * 7 + np.zeros((1, *spec.shape))).astype(np.uint8)
        elif spec.dtype == "uint16":
            v = (1000 + np.arange(n)[:, None, None] + np.zeros((1, *spec.shape))).astype(np.uint16)
        else:
            v = (np.arange(n)[:, None] + np.arange(spec.shape[0])[None] / 10).astype(spec.dtype)
        for value, ti in zip(v, t):
            writer.append(name, value, ti)
        sent[name] = (v, t)
    writer.commit(success=success)
    return sent


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "demo.zarr"


@pytest.fixture
def store(store_path):
    return EpisodeStore.create(store_path, small_specs())
