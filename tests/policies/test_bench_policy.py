"""`robot-rl bench policy` runs end to end (with a tiny model and few repeats) and writes the JSON contract."""

import json

from robot_rl.bench import policy as bench

from .conftest import TINY


def test_bench_policy_writes_the_named_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "policy_config", lambda name: bench.PolicyConfig(**TINY))
    out = tmp_path / "bench.json"
    assert bench.main({"json": str(out), "repeats": 1, "device": "cpu", "seed": 0, "model": "tiny"}) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "policy"
    rows = {r["metric"]: r for r in data["rows"]}
    for obs in ("state", "images"):
        for base in ("ddim10", "ddpm100"):
            row = rows[f"latency_ms_p50_student_vs_{base}_{obs}"]
            assert row["baseline"] == f"latency_ms_p50_{base}_{obs}"
            assert row["ratio"] == row["baseline_value"] / row["value"]
    assert rows["policy_step_hz_2_cameras"]["unit"] == "Hz" and rows["policy_step_hz_2_cameras"]["value"] > 0
