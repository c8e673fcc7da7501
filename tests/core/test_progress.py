"""Progress displays: a tqdm bar on a terminal, a bounded number of plain lines in a log, nothing when off."""

from __future__ import annotations

import io

import pytest

from robot_rl.core.progress import ENV, LogProgress, progress_bar, progress_enabled, progress_setting


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(autouse=True)
def progress_on(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


def test_a_log_gets_one_plain_line_per_tenth_and_no_carriage_return():
    log = io.StringIO()
    for _ in progress_bar(range(10_000), desc="train bc", unit="step", stream=log):
        pass
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert len(lines) == 10
    assert lines[0].startswith("train bc: 1,000/10,000 step (10 %)")
    assert lines[-1].startswith("train bc: 10,000/10,000 step (100 %)")


def test_a_log_line_every_interval_when_the_total_is_unknown():
    clock, log = FakeClock(), io.StringIO()
    bar = LogProgress(desc="learner", unit="step", stream=log, every_s=30.0, clock=clock)
    for _ in range(100):          # 100 updates over 100 s: a line at 30, 60 and 90 s, and one at close
        clock.t += 1.0
        bar.update(5)
    bar.set_postfix(updates=7)
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("learner: 150 step, 0:30, 5 step/s")
    assert lines[-1] == "learner: 500 step, 1:40, 5 step/s, updates=7"


def test_a_resumed_bar_counts_from_its_initial_value_and_reports_its_rate_since_then():
    clock, log = FakeClock(), io.StringIO()
    bar = LogProgress(total=1000, initial=900, desc="online", stream=log, clock=clock)
    clock.t = 10.0
    bar.update(100)
    bar.close()
    assert log.getvalue().splitlines() == ["online: 1,000/1,000 it (100 %), 0:10, 10 it/s"]


def test_a_terminal_gets_a_live_tqdm_bar():
    from tqdm import tqdm

    term = Terminal()
    bar = progress_bar(total=3, desc="eval", stream=term)
    assert isinstance(bar, tqdm)
    bar.update(3)
    bar.close()
    assert "\r" in term.getvalue() and "3/3" in term.getvalue()


@pytest.mark.parametrize("stream", [io.StringIO(), Terminal()], ids=["log", "terminal"])
def test_progress_off_prints_no_bar_but_keeps_messages(stream, capsys):
    with progress_setting(False):
        bar = progress_bar(range(50), desc="collect", stream=stream)
        for i in bar:
            if i == 10:
                bar.write("round 1: rollout success 50%")
    assert stream.getvalue() == ""
    assert capsys.readouterr().out == "round 1: rollout success 50%\n"


def test_enabled_false_silences_one_bar_only():
    log = io.StringIO()
    for _ in progress_bar(range(20), stream=log, enabled=False):
        pass
    assert log.getvalue() == "" and progress_enabled()


def test_the_setting_is_restored_after_the_block(monkeypatch):
    monkeypatch.setenv(ENV, "0")
    with progress_setting(True):
        assert progress_enabled()
    assert not progress_enabled()
    with progress_setting(None):
        assert not progress_enabled()
