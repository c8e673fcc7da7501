"""Tables of results made by the code, never typed by hand:

    robot-rl report runs/eval/<stamp> runs/finetune/<stamp> ...        runs (a folder or its results.json)
    robot-rl report runs/pipeline/<stamp>                              a row per pipeline stage
    robot-rl report bench_store.json runs/bench/<stamp>/bench_all.json benchmark JSON: its rows and ratios
    robot-rl report <paths> markdown=false                             aligned plain text instead of markdown

Runs give one table: stage, task, success with its Wilson 95 % interval where the episode count is known,
episodes, environment steps, time to success and policy latency. Each benchmark gives its own table. Under
the tables: the command and the machine each result file records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robot_rl.core.errors import ConfigError
from robot_rl.core.fields import boolean
from robot_rl.core.results import success_interval

FIELDS = {"markdown": boolean}

RUN_HEADER = ["run", "stage", "task", "success", "95 % interval", "episodes", "env steps", "time to success (s)",
              "latency p50 / p99 (ms)"]
BENCH_HEADER = ["metric", "value", "unit", "baseline", "baseline value", "ratio"]


def load_result(path: str | Path) -> tuple[str, dict]:
    """(label, data) of a run folder, a results.json or a benchmark JSON; ConfigError naming the path."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
        if not path.is_file():
            raise ConfigError(f"{path.parent}: no results.json in it (expected the folder of a robot-rl run)")
    elif not path.is_file():
        raise ConfigError(f"{path}: no such file or folder")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(data, dict) or not ("rows" in data or "stage" in data or "success_rate" in data):
        raise ConfigError(f"{path}: neither a run's results.json (no 'stage' or 'success_rate') nor a "
                          "benchmark JSON (no 'rows')")
    return str(path.parent if path.name == "results.json" else path), data


def _task(task: Any) -> str:
    if isinstance(task, dict):
        return str(task.get("id") or task.get("name") or "")
    return "" if task is None else str(task)


def _episodes(r: dict) -> int | None:
    """The episode count behind the success rate (eval, collect, bc, deploy: episodes; finetune, distill:
    eval_episodes)."""
    n = r.get("episodes") if r.get("episodes") is not None else r.get("eval_episodes")
    return int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else None


def _num(x: Any, spec: str = ".2f") -> str:
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)) or x != x:
        return ""
    return format(x, spec)


def run_row(label: str, stage: str, r: dict) -> list[str]:
    rate, n = r.get("success_rate"), _episodes(r)
    has_rate = isinstance(rate, (int, float)) and rate == rate
    interval = r.get("success_ci95")
    if interval is None and has_rate and n:
        interval = success_interval(round(rate * n), n)
    runner = r.get("runner") or {}
    p50 = r.get("latency_ms_p50", runner.get("inference_ms_p50"))
    p99 = r.get("latency_ms_p99", runner.get("inference_ms_p99"))
    return [label, stage, _task(r.get("task")),
            f"{100 * rate:.1f} %" if has_rate else "",
            f"{100 * interval[0]:.1f}-{100 * interval[1]:.1f} %" if interval else "",
            "" if n is None else f"{n:,}", _num(r.get("env_steps"), ",.0f"),
            _num(r.get("mean_time_to_success_s")),
            f"{_num(p50)} / {_num(p99)}" if p50 is not None or p99 is not None else ""]


def run_rows(label: str, data: dict) -> tuple[list[list[str]], list[str]]:
    """Table rows of one run (a pipeline: one per stage) and its 'made by' lines."""
    if data.get("stage") == "pipeline":
        rows = [run_row(label, s.get("name", ""), s | {"task": s.get("task", data.get("task"))})
                for s in data.get("stages") or []]
        stages = [f"{label} ({s.get('name')}): `{s['command']}`" for s in data.get("stages") or [] if s.get("command")]
        return rows, [f"{label}: {_made_by(data)}", *stages]
    return [run_row(label, str(data.get("stage", "")), data)], [f"{label}: {_made_by(data)}"]


def _made_by(data: dict) -> str:
    command = f"`{data['command']}`" if data.get("command") else "command not recorded"
    return command + (f" on {data['machine']}" if data.get("machine") else "")


def bench_rows(data: dict) -> list[list[str]]:
    def num(x):
        return "" if not isinstance(x, (int, float)) else f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"

    return [[str(r.get("metric", "")), num(r.get("value")), str(r.get("unit") or ""), str(r.get("baseline") or ""),
             num(r.get("baseline_value")), "" if r.get("ratio") is None else f"{r['ratio']:.2f}"]
            for r in data.get("rows") or []]


def table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        escape = lambda c: c.replace("|", "\\|")   # noqa: E731 - a metric or command may hold a pipe
        return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                         + ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows])
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows])


def report(paths: list[str], markdown: bool = True) -> str:
    runs, made, benches = [], [], []
    for p in paths:
        label, data = load_result(p)
        if "rows" in data and "benchmark" in data:
            benches.append((label, data))
        else:
            rows, lines = run_rows(label, data)
            runs += rows
            made += lines
    bullet = "- " if markdown else "  "
    parts = []
    if runs:
        parts += [table(RUN_HEADER, runs, markdown), "", "Made by:", *[bullet + m for m in made]]
    for label, data in benches:
        title = f"bench {data['benchmark']} ({label})"
        made_by = _made_by(data)
        parts += [*([""] if parts else []), f"**{title}**" if markdown else title, "",
                  table(BENCH_HEADER, bench_rows(data), markdown), "", f"Made by: {made_by}"]
    return "\n".join(parts)


def run(cfg, args: list[str]) -> int:
    if not args:
        raise ConfigError("name one or more run folders, results.json or benchmark JSON files, e.g. "
                          "`robot-rl report runs/eval/<stamp>`")
    print(report(args, markdown=bool(cfg.markdown)))
    return 0
