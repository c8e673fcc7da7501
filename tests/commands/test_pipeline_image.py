"""`robot-rl pipeline obs=image profile=quick` end to end (CI): every stage from cameras + proprioception, with no
privileged stream in any policy's inputs. Find it with `pytest -m pixels`."""

import json

import pytest

from robot_rl.cli import main
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.learning.spec_builder import PRIVILEGED_STREAMS, checkpoint_spec

STAGES = ["collect", "bc", "offline", "online", "distill", "deploy"]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """One run directory: the full run below resumes after the collect and bc stages the first test ran."""
    return tmp_path_factory.mktemp("pipeline_image") / "run"


def pipeline(out, stages):
    return main(["pipeline", "obs=image", "profile=quick", f"out={out}", f"stages=[{','.join(stages)}]",
                 "progress=false"])


def assert_image_policy(ckpt):
    spec = checkpoint_spec(ckpt)
    read = {s for f in spec.obs for s in f.streams}
    assert {"cam_front_rgb", "cam_wrist_rgb"} <= read and not read & set(PRIVILEGED_STREAMS), (ckpt, read)


@pytest.mark.slow
@pytest.mark.pixels
def test_image_pipeline_collects_with_cameras_and_trains_an_image_policy(out):
    assert pipeline(out, ["collect", "bc"]) == 0
    assert {"cam_front_rgb", "cam_wrist_rgb"} <= set(EpisodeStore.open(out / "demos.zarr").streams)
    assert_image_policy(out / "bc" / "checkpoints" / "best")
    res = json.loads((out / "results.json").read_text())
    assert res["obs"] == "image" and not res["skipped"]
    bc = next(s for s in res["stages"] if s["name"] == "bc")
    assert 0.0 <= bc["success_rate"] <= 1.0 and bc["episodes"] >= 1 and "obs=image" in bc["command"]


@pytest.mark.slow
@pytest.mark.pixels
def test_image_pipeline_runs_all_six_stages(out):
    assert pipeline(out, STAGES) == 0
    res = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in res["stages"]] == STAGES and not res["skipped"]
    for row in res["stages"]:
        assert 0.0 <= row["success_rate"] <= 1.0 and row["episodes"] >= 1, row["name"]
        assert "obs=image" in row["command"], row["name"]
    for ckpt in ("bc/checkpoints/best", "offline/policy", "online/policy", "distill/checkpoints/student"):
        assert_image_policy(out / ckpt)
    assert (out / "report.md").exists()
