"""`robot-rl report` turns result files written by the project's own writers into tables with their provenance."""

from __future__ import annotations

import json

import pytest

from robot_rl.cli import main
from robot_rl.core.results import BenchRow, recording_command, success_interval, write_bench_json, write_results
from robot_rl.learning.evaluate import EvalResult


def _pct(interval) -> str:
    return f"{100 * interval[0]:.1f}-{100 * interval[1]:.1f} %"


def _table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| run |") and not line.startswith("| metric |")]


@pytest.fixture()
def collect_run(tmp_path):
    """A real `robot-rl collect` run: 3 scripted reach episodes."""
    out = tmp_path / "collect"
    assert main(["collect", "task=reach", "episodes=3", f"store={tmp_path / 'r.zarr'}", f"out={out}",
                 "task.params.time_limit=1.0", "progress=false"]) == 0
    return out


def _eval_run(tmp_path, successes: int, episodes: int):
    out = tmp_path / "eval"
    result = EvalResult(success_rate=successes / episodes, episodes=episodes, env_steps=31 * episodes,
                        mean_time_to_success_s=2.5, latency_ms_p50=4.25, latency_ms_p99=5.5,
                        success_ci95=success_interval(successes, episodes))
    with recording_command(["eval", "policy=runs/train/x/checkpoints/best", "task=lift", f"episodes={episodes}"]):
        write_results(out / "results.json", stage="eval", policy="runs/train/x/checkpoints/best", task="lift",
                      **result.to_dict())
    return out


def test_runs_give_one_row_each_with_the_wilson_interval_and_the_command_that_made_them(collect_run, tmp_path,
                                                                                          capsys):
    ev = _eval_run(tmp_path, 43, 50)
    assert main(["report", str(collect_run), str(ev / "results.json")]) == 0
    out = capsys.readouterr().out
    collect_row, eval_row = _table_rows(out)
    recorded = json.loads((collect_run / "results.json").read_text())
    assert collect_row[:6] == [str(collect_run), "collect", "reach", f"{100 * recorded['success_rate']:.1f} %",
                               _pct(success_interval(round(3 * recorded["success_rate"]), 3)), "3"]
    assert eval_row == [str(ev), "eval", "lift", "86.0 %", _pct(success_interval(43, 50)), "50", "1,550", "2.50",
                        "4.25 / 5.50"]
    assert f"- {collect_run}: `robot-rl collect task=reach episodes=3" in out
    assert f"- {ev}: `robot-rl eval policy=runs/train/x/checkpoints/best task=lift episodes=50` on " in out


def test_a_pipeline_run_gives_a_row_per_stage_with_each_stage_command(tmp_path, capsys):
    stages = [{"name": "collect", "command": "robot-rl collect task=lift episodes=50", "success_rate": 0.9,
               "episodes": 50, "env_steps": 3362},
              {"name": "deploy", "command": "robot-rl deploy policy=p twin=true", "success_rate": 0.9,
               "episodes": 10, "env_steps": 109, "latency_ms_p50": 2.5, "latency_ms_p99": 6.25,
               "mean_time_to_success_s": 2.52}]
    write_results(tmp_path / "pipe" / "results.json", stage="pipeline", task="lift", stages=stages)
    assert main(["report", str(tmp_path / "pipe")]) == 0
    out = capsys.readouterr().out
    rows = _table_rows(out)
    assert [r[1] for r in rows] == ["collect", "deploy"] and rows[0][6] == "3,362"
    assert rows[1][3:] == ["90.0 %", _pct(success_interval(9, 10)), "10", "109", "2.52", "2.50 / 6.25"]
    assert "(deploy): `robot-rl deploy policy=p twin=true`" in out


def test_a_finetune_result_uses_its_evaluation_episodes_for_the_interval(tmp_path, capsys):
    write_results(tmp_path / "ft" / "results.json", stage="finetune", algo="residual", task={"name": "insert"},
                  success_rate=0.95, eval_episodes=20, env_steps=12000)
    assert main(["report", str(tmp_path / "ft"), "markdown=false"]) == 0
    out = capsys.readouterr().out
    assert "|" not in out
    line = next(x for x in out.splitlines() if x.startswith(str(tmp_path / "ft")))
    assert line.split()[1:6] == ["finetune", "insert", "95.0", "%", _pct(success_interval(19, 20)).split()[0]]


def test_a_benchmark_json_gives_its_rows_ratios_and_command(tmp_path, capsys):
    path = tmp_path / "bench_policy.json"
    with recording_command(["bench", "policy", f"json={path}"]):
        write_bench_json(path, "policy", [BenchRow.compare("latency_state_ms", 54.7, "ms", "DDIM-10", 560.0,
                                                           higher_is_better=False)])
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"**bench policy ({path})**" in out
    assert _table_rows(out) == [["latency_state_ms", "54.7", "ms", "DDIM-10", "560", f"{560 / 54.7:.2f}"]]
    assert f"Made by: `robot-rl bench policy json={path}` on " in out


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing", "missing: no such file or folder"),
    (lambda d: d, "no results.json in it"),
    (lambda d: (d / "bad.json").write_text("{not json") and d / "bad.json", "bad.json: not readable JSON"),
    (lambda d: (d / "other.json").write_text('{"a": 1}') and d / "other.json",
     "other.json: neither a run's results.json"),
], ids=["missing", "folder-without-results", "broken-json", "unrelated-json"])
def test_a_path_that_is_not_a_result_is_a_clear_error(tmp_path, capsys, make, message):
    assert main(["report", str(make(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert err.startswith("robot-rl report: error: ") and message in err


def test_report_without_paths_says_what_it_takes(capsys):
    assert main(["report"]) == 1
    assert "name one or more run folders" in capsys.readouterr().err
