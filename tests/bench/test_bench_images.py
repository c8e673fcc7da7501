"""`robot-rl bench images quick=true` runs end to end and writes every row of its JSON contract."""

import json

import pytest

from robot_rl.bench.images import ImagesBenchConfig
from robot_rl.cli import main
from robot_rl.core.errors import ConfigError

CANDIDATE_ROWS = {  # metric -> (unit, the baseline it is compared with)
    "bc_train_samples_per_s_candidate": ("samples/s", "bc_train_samples_per_s_resnet18"),
    "student_step_hz_candidate": ("Hz", "student_step_hz_resnet18"),
    "bc_train_samples_per_s_no_crop": ("samples/s", "bc_train_samples_per_s_resnet18"),
    "student_step_hz_no_crop": ("Hz", "student_step_hz_resnet18"),
    "rollout_steps_per_s_candidate": ("steps/s", "rollout_steps_per_s_resnet18"),
    "env_steps_per_s_2_cameras": ("steps/s", "env_steps_per_s_no_cameras"),
    "loader_samples_per_s": ("samples/s", "loader_samples_per_s_uncached"),
    "critic_update_ms_frozen_features": ("ms", "critic_update_ms_trainable_encoder"),
}
LOWER_IS_BETTER = {"critic_update_ms_frozen_features"}   # times: the ratio is baseline / value


def test_quick_run_writes_each_measurement_against_its_baseline_from_the_same_run(tmp_path):
    out = tmp_path / "images.json"
    assert main(["bench", "images", "quick=true", f"json={out}", "images.variants.no_crop.crop_ratio=1.0",
                 "progress=false"]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "images"
    rows = {r["metric"]: r for r in data["rows"]}
    assert set(rows) == set(CANDIDATE_ROWS) | {"bc_train_samples_per_s_resnet18", "student_step_hz_resnet18",
                                               "rollout_steps_per_s_resnet18", "critic_update_ms_trainable_encoder"}
    for metric, (unit, baseline) in CANDIDATE_ROWS.items():
        row = rows[metric]
        assert row["unit"] == unit and row["baseline"] == baseline and row["value"] > 0
        faster = (row["baseline_value"] / row["value"] if metric in LOWER_IS_BETTER
                  else row["value"] / row["baseline_value"])
        assert row["ratio"] == faster   # > 1: faster than the baseline
        if baseline in rows:
            assert row["baseline_value"] == rows[baseline]["value"]


def test_a_critic_row_option_below_one_is_refused_naming_it():
    with pytest.raises(ConfigError, match=r"bench images\.critic_batch_size=0: must be >= 1"):
        ImagesBenchConfig(critic_batch_size=0)
