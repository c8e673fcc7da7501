"""`robot-rl bench twin` produces every contracted row (short durations; the numbers are the bench's job)."""

from __future__ import annotations

import json
import shutil

import pytest

from robot_rl.bench.twin import main


@pytest.mark.slow
def test_bench_twin_writes_all_rows(tmp_path):
    out = tmp_path / "twin.json"
    cfg = {"duration": 1.0, "repeats": 1, "rtf_seconds": 0.2, "tracking_periods": 0.1, "tracking_warmup": 0.3,
           "law_seconds": 0.3, "load_model": "diffusion_unet_small", "json": str(out)}
    assert main(cfg) == 0
    data = json.loads(out.read_text())
    names = {r["metric"] for r in data["rows"]}
    assert {"realtime_factor_no_cameras", "realtime_factor_2_cameras_128", "tick_us_p50", "tick_us_p99",
            "tick_us_max", "deadline_misses", "tracking_rms_mm_compliant", "tracking_rms_deg_precise",
            "loop_iteration_us_p99", "loaded_tick_us_p99", "loaded_tick_us_max", "loaded_deadline_misses",
            "loaded_loop_iteration_us_p99", "law_safety_us_p99", "load_policy_predictions_per_s"} <= names
    rows = {r["metric"]: r for r in data["rows"]}
    assert rows["tick_us_p50"]["value"] > 0
    assert rows["tracking_rms_mm_precise"]["baseline"] == "absolute-velocity damping"
    # loaded figures stand beside the idle ones; the law rows compare compiled with the Python reference
    assert rows["loaded_tick_us_p99"]["baseline"] == "tick_us_p99 (idle)"
    assert rows["loaded_tick_us_p99"]["baseline_value"] == rows["tick_us_p99"]["value"]
    assert rows["law_safety_us_p99"]["baseline"] == "law_safety_us_p99 (python)"
    if shutil.which("cyclictest"):
        assert {"cyclictest_latency_us_p99", "loaded_cyclictest_latency_us_max", "cyclictest_cycles_late"} <= names
