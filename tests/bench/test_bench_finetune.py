"""bench finetune: thresholds and medians over seeds, the speed-up row's orientation, a missing algorithm
reported as not available, and a quick run through the real CLI writing JSON rows and the plot."""

import json
import math

from robot_rl.bench.finetune import (FinetuneBench, FinetuneBenchConfig, Run, algorithm_available, median_reached,
                                     rows_for, steps_to)
from robot_rl.cli import main


def test_steps_to_threshold_and_median_over_seeds():
    curve = [(0, 0.6), (1000, 0.85), (2000, 0.92), (3000, 0.96)]
    assert steps_to(curve, 0.9) == 2000 and steps_to(curve, 0.95) == 3000
    assert math.isnan(steps_to(curve, 0.99))
    assert median_reached([1000.0, 3000.0, float("nan")]) == 3000.0      # a miss counts as slowest
    assert math.isnan(median_reached([1000.0, float("nan"), float("nan")]))   # most seeds never got there


def test_rows_compare_final_success_with_bc_and_speed_up_with_rlpd():
    runs = [Run("bc", 0, [(0, 0.5)], heldout_success=0.4),
            Run("residual", 0, [(0, 0.5), (1000, 0.9), (2000, 0.95)], heldout_success=0.8),
            Run("residual", 1, [(0, 0.5), (2000, 0.9), (4000, 0.97)], heldout_success=0.7),
            Run("rlpd", 0, [(0, 0.0), (6000, 0.9), (8000, 0.9)]),
            Run("offline_residual", 0, [(0, 0.5), (2000, 0.7), (8000, 0.8)], offline_success=0.7),
            Run("offline_residual", 1, [(0, 0.5), (2000, 0.6), (8000, 0.9)], offline_success=0.6),
            Run("ppo", 0, status="not available", reason="missing")]
    rows = {r.metric: r for r in rows_for("lift", runs, rate_hz=20.0)}
    final = rows["final_success_residual_vs_bc_lift"]
    assert final.value == (0.95 + 0.97) / 2 and final.baseline_value == 0.5 and final.ratio == final.value / 0.5
    assert rows["env_steps_to_90_residual_lift"].value == 1500          # median over the two seeds
    speed = rows["env_steps_to_90_residual_vs_rlpd_lift"]
    assert speed.baseline_value == 6000 and speed.ratio == 6000 / speed.value   # > 1: residual needs fewer steps
    assert rows["robot_minutes_to_90_rlpd_lift"].value == 6000 / 20.0 / 60.0
    assert math.isnan(rows["env_steps_to_95_rlpd_lift"].value)
    assert not any("ppo" in m for m in rows)
    offline = rows["offline_success_vs_bc_lift"]
    assert offline.value == (0.7 + 0.6) / 2 and offline.baseline_value == 0.5
    heldout = rows["heldout_success_residual_vs_bc_lift"]
    assert heldout.value == (0.8 + 0.7) / 2 and heldout.baseline_value == 0.4
    assert "heldout_success_rlpd_vs_bc_lift" not in rows          # no held-out evaluation, no row
    assert "env_steps_to_90_residual_vs_rlpd_at_least_lift" not in rows   # RLPD got there: the ratio is exact


def test_an_rlpd_that_never_gets_there_bounds_the_speed_up_by_the_steps_it_ran():
    runs = [Run("filtered_bc", 0, [(0, 0.5), (5000, 0.8), (10000, 0.92)]),
            Run("rlpd", 0, [(0, 0.0), (15000, 0.0), (30000, 0.05)]),
            Run("rlpd", 1, [(0, 0.0), (25000, 0.1)])]
    rows = {r.metric: r for r in rows_for("lift", runs, rate_hz=10.0)}
    assert rows["env_steps_to_90_filtered_bc_vs_rlpd_lift"].ratio is None or math.isnan(
        rows["env_steps_to_90_filtered_bc_vs_rlpd_lift"].ratio)
    bound = rows["env_steps_to_90_filtered_bc_vs_rlpd_at_least_lift"]
    assert bound.baseline_value == 25000 and bound.ratio == 2.5      # the shorter RLPD run bounds it
    assert rows["env_steps_to_80_filtered_bc_vs_rlpd_at_least_lift"].ratio == 5.0
    assert "env_steps_to_95_filtered_bc_vs_rlpd_at_least_lift" not in rows   # neither got there: no bound


def test_seeds_are_a_count_or_one_jobs_list():
    assert FinetuneBench(FinetuneBenchConfig(seeds=3)).seeds == [0, 1, 2]
    assert FinetuneBench(FinetuneBenchConfig(seeds=[2, 4])).seeds == [2, 4]


def test_an_algorithm_that_does_not_exist_is_not_available():
    ok, why = algorithm_available("no_such_algorithm")
    assert not ok and "not in this version" in why
    assert algorithm_available("residual") == (True, "")


def test_quick_bench_runs_the_methods_through_the_cli(tmp_path):
    out, js = tmp_path / "bench", tmp_path / "finetune.json"
    assert main(["bench", "finetune", "quick=true", f"out={out}", f"json={js}", "device=cpu",
                 "finetune.methods=[bc,residual,rlpd,offline_residual]"]) == 0
    rows = {r["metric"]: r for r in json.loads(js.read_text())["rows"]}
    assert {"final_success_residual_vs_bc_lift", "final_success_rlpd_vs_bc_lift", "final_success_bc_lift",
            "env_steps_to_90_residual_vs_rlpd_lift"} <= set(rows)
    assert rows["final_success_residual_vs_bc_lift"]["baseline"] == "final_success_bc_lift"
    assert rows["heldout_success_residual_vs_bc_lift"]["baseline"] == "heldout_success_bc_lift"
    assert (out / "lift" / "residual" / "seed0" / "heldout" / "results.json").is_file()
    assert (out / "finetune_curves.png").stat().st_size > 0
    curves = json.loads((out / "finetune_curves.json").read_text())["runs"]["lift"]
    assert [r["method"] for r in curves] == ["bc", "residual", "rlpd", "offline_residual"]
    assert all(r["status"] == "ok" and r["curve"][-1][0] >= 40 for r in curves[1:])
    assert (out / "lift" / "offline_residual" / "seed0" / "offline" / "results.json").is_file()   # a 0-step stage runs

    # report_only: the same table from the finished runs; a method never run is "not run", nothing starts
    assert main(["bench", "finetune", "quick=true", f"out={out}", f"json={js}", "device=cpu",
                 "finetune.methods=[bc,residual,ppo]", "finetune.report_only=true"]) == 0
    again = json.loads((out / "finetune_curves.json").read_text())["runs"]["lift"]
    assert again[:2] == curves[:2] and again[2] == {"method": "ppo", "seed": 0, "status": "not run",
                                                   "reason": again[2]["reason"], "curve": []}
    assert not (out / "lift" / "ppo").exists()


def test_obs_reaches_every_stage_the_bench_runs(tmp_path, monkeypatch):
    """finetune.obs=image: the demos, the BC base, every fine-tuning run and every evaluation get obs=image."""
    bench = FinetuneBench(FinetuneBenchConfig(obs="image", heldout_episodes=1), out=tmp_path)
    ran: list[list[str]] = []

    def stage(out, args, finished=lambda results: True):
        ran.append([str(a) for a in args])
        return {"success_rate": 0.5, "env_steps": 0, "curve": [], "policy": str(tmp_path / "policy")}

    monkeypatch.setattr(bench, "_stage", stage)
    store, base = bench.prepare("lift")
    for method in ("bc", "residual", "offline_residual"):
        assert bench.run_method(method, "lift", store, base, 0).status == "ok"
    assert {a[0] for a in ran} == {"collect", "train", "finetune", "eval"}
    assert all("obs=image" in a for a in ran), [a for a in ran if "obs=image" not in a]


def test_bench_obs_is_state_or_image(capsys):
    assert main(["bench", "finetune", "finetune.obs=depth"]) == 1
    assert "finetune.obs='depth': expected one of state, image" in capsys.readouterr().err
