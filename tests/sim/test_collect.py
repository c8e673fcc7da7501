"""`robot-rl collect` records labelled scripted episodes into a store that validates."""

from __future__ import annotations

from robot_rl.cli import main
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.validate import validate


def test_collect_writes_a_valid_store_with_labelled_episodes_and_camera_streams(tmp_path):
    store = tmp_path / "reach.zarr"
    rc = main(["collect", "task=reach", "episodes=2", f"store={store}", "noise=0.0", "cameras=true",
               "task.params.time_limit=1.5", f"out={tmp_path / 'run'}", "progress=false", "policy_hz=10"])
    assert rc == 0
    assert validate(store) == []
    s = EpisodeStore.open(store)
    assert len(s) == 2
    metas = s.meta_list()
    assert all(m["success"] is True and m["source"] == "scripted" and m["task"] == "reach" for m in metas)
    for name in ("action", "joint_pos", "ee_pos", "ee_quat", "ee_target_pos", "safety_counts", "cam_front_rgb",
                 "cam_wrist_rgb"):
        assert name in s.streams
    frames, t = s.read("cam_front_rgb", 0)
    assert frames.shape[1:] == (128, 128, 3) and (t[1:] > t[:-1]).all()
    assert s.streams["ee_quat"].interp == "slerp"
    assert (tmp_path / "run" / "results.json").is_file()


def test_collect_appends_to_an_existing_store(tmp_path):
    store = tmp_path / "r.zarr"
    args = ["collect", "task=reach", "episodes=1", f"store={store}", "progress=false", f"out={tmp_path / 'run'}",
            "task.params.time_limit=1.0"]
    assert main(args) == 0
    assert main(args + ["seed=1"]) == 0
    assert len(EpisodeStore.open(store)) == 2
