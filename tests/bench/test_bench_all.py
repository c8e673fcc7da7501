"""`robot-rl bench all`: one run, one report; peers disabled or unavailable here."""

import json

import pytest

from robot_rl.bench.all import NOT_AVAILABLE, Section, load_benchmark, write_report
from robot_rl.cli import main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """`bench all quick=true` over the twin benchmark (the quickest real one), peers off."""
    out = tmp_path_factory.mktemp("bench_all")
    code = main(["bench", "all", "quick=true", "all.benches=[twin]", "all.peers=[]", f"out={out}",
                 f"json={out / 'copy' / 'all.json'}"])
    return code, out


@pytest.mark.slow
def test_quick_run_writes_one_report_holding_every_row_of_the_benchmark(quick_run):
    code, out = quick_run
    assert code == 0
    twin = json.loads((out / "twin.json").read_text())
    report = json.loads((out / "bench_all.json").read_text())
    assert report["benchmark"] == "all" and report["quick"] is True
    assert report["sections"]["twin"]["status"] == "ok" and report["sections"]["twin"]["seconds"] > 0
    assert [r["metric"] for r in report["rows"]] == [f"twin/{r['metric']}" for r in twin["rows"]]
    assert [r["value"] for r in report["rows"]] == [r["value"] for r in twin["rows"]]
    assert json.loads((out / "copy" / "all.json").read_text()) == report
    md = (out / "bench_all.md").read_text()
    assert "## twin" in md and "## Ratios" in md and "load average" in md
    for row in twin["rows"]:
        assert f"`{row['metric']}`" in md
    rtf = next(r for r in twin["rows"] if r["metric"] == "realtime_factor_no_cameras")
    assert f"**{rtf['ratio']:.2f}**" in md


def test_a_failing_benchmark_is_reported_and_fails_the_run(tmp_path, monkeypatch):
    def failing_benchmark(cfg):   # a bad value on the command line is refused before any benchmark runs
        raise ValueError("oops")

    monkeypatch.setattr("robot_rl.bench.twin.main", failing_benchmark)
    code = main(["bench", "all", "all.benches=[twin]", "all.peers=[]", f"out={tmp_path}"])
    assert code == 1
    report = json.loads((tmp_path / "bench_all.json").read_text())
    assert report["sections"]["twin"]["status"] == "failed"
    assert "ValueError" in report["sections"]["twin"]["reason"] and "oops" in report["sections"]["twin"]["reason"]
    assert "failed" in (tmp_path / "bench_all.md").read_text()


def test_lerobot_without_its_venv_is_skipped_with_the_reason(tmp_path):
    venv = tmp_path / "no-lerobot-here"
    assert main(["bench", "all", "all.benches=[]", f"lerobot.venv={venv}", f"out={tmp_path}"]) == 0
    section = json.loads((tmp_path / "bench_all.json").read_text())["sections"]["lerobot"]
    assert section["status"] == "skipped" and str(venv) in section["reason"]
    assert not venv.exists()
    assert f"no LeRobot venv at {venv}" in (tmp_path / "bench_all.md").read_text()


def test_a_benchmark_missing_from_this_version_is_reported_not_available(tmp_path):
    assert load_benchmark("no_such_benchmark") is None
    assert load_benchmark("twin") is not None
    meta = {"command": "robot-rl bench all", "machine": "m", "quick": False, "repeats": 3,
            "load_average": {"start": [1.0, 1.0, 1.0], "end": [1.0, 1.0, 1.0]}}
    write_report(tmp_path, [Section("finetune", NOT_AVAILABLE, reason="robot_rl.bench.finetune is not here")], meta)
    md = (tmp_path / "bench_all.md").read_text()
    assert "| finetune | not available |" in md and "robot_rl.bench.finetune is not here" in md


def test_an_unknown_section_is_a_config_error(tmp_path, capsys):
    assert main(["bench", "all", "all.benches=[stor]", "all.peers=[]", f"out={tmp_path}"]) == 1
    assert "unknown ['stor']" in capsys.readouterr().err
