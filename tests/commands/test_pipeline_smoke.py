"""The quick-profile pipeline end to end on the twin (the CI smoke test of the main job), and its resume."""

import json

import pytest

from robot_rl.cli import main

STAGES = ["collect", "bc", "offline", "online", "distill", "deploy"]
ROW_KEYS = {"name", "success_rate", "episodes", "env_steps", "latency_ms_p50", "latency_ms_p99"}


@pytest.mark.slow
def test_quick_pipeline_runs_every_stage_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["pipeline", "profile=quick", "task=reach", f"out={out}", f"stages=[{','.join(STAGES)}]"]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in res["stages"]] == STAGES
    for row in res["stages"]:
        assert ROW_KEYS <= set(row), row["name"]
        assert 0.0 <= row["success_rate"] <= 1.0 and row["episodes"] >= 1
    by = {s["name"]: s for s in res["stages"]}
    assert by["collect"]["env_steps"] > 0 and by["online"]["env_steps"] >= 200
    assert by["deploy"]["control_rate_hz"] > 0 and by["distill"]["latency_ms_p50"] > 0
    assert (out / "report.md").read_text().count("| ") > 6 * 7
    assert (out / "distill" / "checkpoints" / "student" / "model.safetensors").exists()
    capsys.readouterr()
    assert main(args) == 0     # resumes: nothing to redo
    assert capsys.readouterr().out.count("done earlier") == len(STAGES)
