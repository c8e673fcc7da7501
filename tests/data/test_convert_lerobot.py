"""LeRobotDataset v3.0 export/import; the export is loaded by the real `lerobot` package when its
separate venv exists (lerobot pins torch < 2.11, so it cannot live in the project's venv)."""

import atexit
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

pq = pytest.importorskip("pyarrow.parquet", reason="the LeRobot converter needs pyarrow (and pandas)")

from robot_rl.core.errors import ConfigError, StoreError  # noqa: E402
from robot_rl.data.align import sample_at  # noqa: E402
from robot_rl.data.convert import lerobot as lr  # noqa: E402
from robot_rl.data.convert.demo import demo_store  # noqa: E402

LEROBOT_PYTHON = Path(os.environ.get("ROBOT_RL_LEROBOT_PYTHON",
                                     Path(__file__).resolve().parents[2] / ".venv-lerobot" / "bin" / "python"))

# Runs inside the lerobot venv: load our export as any LeRobot user would, compare with what we wrote.
# It starts when this module is collected and imports lerobot (~20 s of torch/datasets imports on
# 2 cores) while the other tests run, then waits for the go file naming the export to check.
LOADER = r"""
import json, os, sys, time
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
import lerobot
go, parent = sys.argv[1], os.getppid()
while not os.path.exists(go):  # the whole test suite may run before the converter tests: no deadline,
    if os.getppid() != parent:  # but never outlive pytest
        sys.exit("pytest is gone")
    time.sleep(0.05)
root, expected = json.load(open(go))
expected = json.load(open(expected))
ds = LeRobotDataset("robot_rl/demo", root=root)
out = {"version": getattr(lerobot, "__version__", "?"), "num_frames": ds.num_frames, "num_episodes": ds.num_episodes,
       "fps": ds.fps, "video_keys": ds.meta.video_keys, "action_err": 0.0, "image_err": 0.0, "tasks": []}
for i in range(len(ds)):
    item = ds[i]
    out["action_err"] = max(out["action_err"], float(np.abs(item["action"].numpy() - expected["action"][i]).max()))
    img = item["observation.images.cam_front_rgb"].numpy()  # (C, H, W) float in [0, 1]
    ref = np.asarray(expected["cam_front_rgb"][i], dtype=np.float64).transpose(2, 0, 1) / 255.0
    out["image_err"] = max(out["image_err"], float(np.abs(img - ref).mean()))
    out["tasks"].append(item["task"])
chunked = LeRobotDataset("robot_rl/demo", root=root, delta_timestamps={
    "action": [0.0, 0.1, 0.2], "observation.images.cam_front_rgb": [-0.1, 0.0]})
last = chunked[len(chunked) - 1]
out["chunk_shapes"] = [list(last["action"].shape), list(last["observation.images.cam_front_rgb"].shape)]
out["action_is_pad"] = last["action_is_pad"].tolist()
out["stats_keys"] = sorted(ds.meta.stats["action"])
print("RESULT " + json.dumps(out))
"""


def _start_loader():
    """Start the real-lerobot check when this module is collected, so that its ~20 s of torch and
    datasets imports overlap the other converter tests; None when the lerobot venv is missing."""
    if not LEROBOT_PYTHON.exists():
        return None
    work = Path(tempfile.mkdtemp(prefix="robot_rl_lerobot_loader_"))
    (work / "load.py").write_text(LOADER)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(work / "hf"))
    proc = subprocess.Popen([str(LEROBOT_PYTHON), str(work / "load.py"), str(work / "go.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def stop():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        shutil.rmtree(work, ignore_errors=True)

    atexit.register(stop)  # also when the test is deselected or collection only
    return proc, work, stop


_LOADER = _start_loader()


@pytest.fixture(scope="module")
def lerobot_loader():
    yield _LOADER
    if _LOADER is not None:
        _LOADER[2]()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_store(tmp_path_factory.getbasetemp())  # read-only, shared by the converter tests


@pytest.fixture(scope="module")
def exported(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("lr_out") / "demo_lerobot"
    return out, lr.export_store(demo, out)


def _expected(demo, fps=10):
    """What the export should hold: every stream resampled on a uniform fps grid per episode."""
    action, frames, t0s = [], [], []
    for e in range(demo.n_episodes):
        ta = demo.read("action", e)[1]
        tc = demo.read("cam_front_rgb", e)[1]
        grid = ta[0] + np.arange(int(np.floor((ta[-1] - ta[0]) * fps + 1e-6)) + 1) / fps
        grid = grid[grid >= tc[0]]
        a, ta = demo.read("action", e)
        action.append(sample_at(a, ta, grid, "linear"))
        img, ti = demo.read("cam_front_rgb", e)
        frames.append(img[np.searchsorted(ti, grid, side="right") - 1])
        t0s.append(grid[0])
    return np.concatenate(action), np.concatenate(frames), t0s


def test_export_layout(demo, exported):
    out, summary = exported
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10
    assert info["total_episodes"] == demo.n_episodes and info["total_frames"] == summary["frames"]
    assert info["features"]["observation.images.cam_front_rgb"]["dtype"] == "video"
    assert info["features"]["action"]["shape"] == [7]
    assert info["robot_rl"]["resampled"] and info["robot_rl"]["grid"]["fps"] == 10
    assert info["robot_rl"]["features"]["observation.ee_quat"]["streams"][0]["interp"] == "slerp"
    assert summary["resampled"] and summary["features"]["observation.joint_pos"]["interp"] == ["linear"]
    assert (out / "videos/observation.images.cam_front_rgb/chunk-000/file-000.mp4").is_file()
    schema = pq.read_schema(out / "data/chunk-000/file-000.parquet")
    action_type = schema.field("action").type  # what `datasets` writes for Sequence(float32, length=7)
    assert action_type.list_size == 7 and str(action_type.value_type) == "float"
    assert str(schema.field("observation.gripper_pos").type) == "float"  # shape (1,) -> scalar column
    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["length"] for e in episodes] == [e["dataset_to_index"] - e["dataset_from_index"] for e in episodes]
    assert episodes[1]["videos/observation.images.cam_front_rgb/from_timestamp"] == pytest.approx(episodes[0]["length"] / 10)
    assert np.asarray(episodes[0]["stats/observation.images.cam_front_rgb/mean"]).shape == (3, 1, 1)
    tasks = pq.read_table(out / "meta/tasks.parquet").to_pandas()
    assert sorted(tasks.index) == ["push", "reach"]
    stats = json.loads((out / "meta/stats.json").read_text())
    assert stats["action"]["count"] == [summary["frames"]] and len(stats["action"]["q50"]) == 7
    action, _, _ = _expected(demo)
    got = np.stack(pq.read_table(out / "data/chunk-000/file-000.parquet").column("action").to_pylist())
    np.testing.assert_allclose(got, action, atol=1e-6)


def test_round_trip(demo, exported, tmp_path):
    out, summary = exported
    back = lr.import_store(out, tmp_path / "back.zarr")
    assert back.n_episodes == demo.n_episodes and sorted(back.streams) == sorted(demo.streams)
    assert back.streams["ee_quat"].interp == "slerp" and back.streams["joint_pos"].units == "rad"
    assert back.streams["action"].rate_hz == 10.0 and back.streams["joint_pos"].dtype == "float64"
    action, frames, t0s = _expected(demo)
    lo = 0
    for e in range(demo.n_episodes):
        assert back.episode_meta(e)["task"] == demo.episode_meta(e)["task"]
        assert back.episode_meta(e)["success"] == demo.episode_meta(e)["success"]
        a, t = back.read("action", e)
        np.testing.assert_allclose(t, t0s[e] + np.arange(len(t)) / 10, atol=1e-9)
        np.testing.assert_allclose(a, action[lo:lo + len(a)], atol=1e-6)
        img, _ = back.read("cam_front_rgb", e)
        assert np.abs(img.astype(int) - frames[lo:lo + len(a)].astype(int)).mean() < 12  # h264, then JPEG
        lo += len(a)


def test_state_option_concatenates_and_splits_back(demo, tmp_path):
    out = tmp_path / "state_ds"
    summary = lr.export_store(demo, out, state="joint_pos,gripper_pos", streams="action,joint_pos,gripper_pos")
    assert summary["features"]["observation.state"]["shape"] == [8]
    assert summary["video_keys"] == []
    info = json.loads((out / "meta/info.json").read_text())
    assert info["video_path"] is None and info["features"]["observation.state"]["names"][-1] == "gripper_pos"
    back = lr.import_store(out, tmp_path / "back.zarr")
    assert sorted(back.streams) == ["action", "gripper_pos", "joint_pos"]
    assert back.streams["gripper_pos"].shape == (1,)


def test_bad_input_errors(demo, exported, tmp_path):
    out, _ = exported
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="empty: not a LeRobot dataset"):
        lr.import_store(tmp_path / "empty", tmp_path / "x.zarr")
    old = tmp_path / "old"
    (old / "meta").mkdir(parents=True)
    (old / "meta/info.json").write_text(json.dumps({"codebase_version": "v2.1", "fps": 30, "features": {}}))
    with pytest.raises(StoreError, match="info.json: codebase_version 'v2.1'"):
        lr.import_store(old, tmp_path / "x.zarr")
    with pytest.raises(ConfigError, match="fps=7.5"):
        lr.export_store(demo, tmp_path / "y", fps=7.5)
    with pytest.raises(ConfigError, match="unknown option"):
        lr.export_store(demo, tmp_path / "y", video=False)
    with pytest.raises(StoreError, match="already exists"):
        lr.export_store(demo, out)
    with pytest.raises(ConfigError, match="index stream 'action'"):
        lr.export_store(demo, tmp_path / "z", streams="joint_pos")


def test_real_lerobot_loads_the_export(demo, exported, lerobot_loader):
    if lerobot_loader is None:
        pytest.skip(f"{LEROBOT_PYTHON} missing: the real-lerobot check needs a separate venv "
                    f"(see docs/interop.md: python3.11 -m venv .venv-lerobot; pip install lerobot ...)")
    proc, work, _ = lerobot_loader
    out, summary = exported
    action, frames, _ = _expected(demo)
    (work / "expected.json").write_text(json.dumps({"action": action.tolist(), "cam_front_rgb": frames.tolist()}))
    (work / "go.tmp").write_text(json.dumps([str(out), str(work / "expected.json")]))
    os.replace(work / "go.tmp", work / "go.json")
    stdout, stderr = proc.communicate(timeout=300)
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, stderr[-3000:]
    got = json.loads(lines[0][len("RESULT "):])
    print(f"lerobot {got['version']} loaded the export")
    assert got["num_frames"] == summary["frames"] and got["num_episodes"] == demo.n_episodes and got["fps"] == 10
    assert got["video_keys"] == ["observation.images.cam_front_rgb"]
    assert got["action_err"] < 1e-6
    assert got["image_err"] < 8 / 255  # h264 of 32x32 frames, decoded by lerobot at the exact timestamps
    assert got["tasks"][0] == demo.episode_meta(0)["task"]
    assert got["chunk_shapes"] == [[3, 7], [2, 3, 32, 32]] and got["action_is_pad"] == [False, True, True]
    assert {"mean", "std", "min", "max", "count", "q01", "q99"} <= set(got["stats_keys"])
