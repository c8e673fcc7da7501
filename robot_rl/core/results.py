"""Machine-readable results: benchmark JSON and run `results.json` (formats in ARCHITECTURE.md)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np


@dataclass
class BenchRow:
    """One benchmark measurement. `ratio` > 1 means better than the baseline."""

    metric: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    ratio: float | None = None

    @staticmethod
    def compare(metric: str, value: float, unit: str, baseline: str, baseline_value: float,
                higher_is_better: bool) -> "BenchRow":
        """A row with its ratio oriented so that > 1 is better (speed-up or throughput ratio)."""
        if higher_is_better:
            ratio = value / baseline_value if baseline_value else None
        else:
            ratio = baseline_value / value if value else None
        return BenchRow(metric, float(value), unit, baseline, float(baseline_value), ratio)


_COMMANDS: list[str] = []   # the robot-rl command lines running in this process, innermost last


@contextmanager
def recording_command(argv: list[str]):
    """Within the block, results.json and benchmark JSON record `robot-rl <argv>` as the command that made
    them (nested: the pipeline's stages record their own)."""
    _COMMANDS.append("robot-rl " + shlex.join(argv))
    try:
        yield
    finally:
        _COMMANDS.pop()


def current_command() -> str | None:
    return _COMMANDS[-1] if _COMMANDS else None


def machine_summary() -> str:
    """e.g. 'x86_64, 2 CPU cores, Linux 6.1, Python 3.11.7, torch 2.13.0 cpu'."""
    parts = [platform.machine(), f"{os.cpu_count()} CPU cores", f"{platform.system()} {platform.release()}",
             f"Python {platform.python_version()}"]
    torch = sys.modules.get("torch")  # described when the run used it; never imported just for this line
    if torch is not None:
        if torch.cuda.is_available():
            parts.append(f"torch {torch.__version__} GPU {torch.cuda.get_device_name(0)}")
        else:
            parts.append(f"torch {torch.__version__} cpu")
    return ", ".join(parts)


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def write_bench_json(path: str | Path, benchmark: str, rows: Iterable[BenchRow]) -> dict:
    data = {
        "benchmark": benchmark,
        "machine": machine_summary(),
        "rows": [{k: _finite_or_none(v) for k, v in asdict(r).items()} for r in rows],
    }
    if current_command():
        data["command"] = current_command()
    _write_json(path, data)
    return data


def report_bench(benchmark: str, rows: list[BenchRow], json_path: str | Path | None) -> None:
    """Print a benchmark's table and, when `json_path` is set, write its JSON beside it."""
    print(format_bench_table(benchmark, rows))
    if json_path:
        write_bench_json(json_path, benchmark, rows)
        print(f"bench {benchmark}: wrote {json_path}")


def format_bench_table(benchmark: str, rows: Iterable[BenchRow]) -> str:
    """The rows as a text table, the metric and baseline columns as wide as their longest entry."""
    rows = list(rows)
    m = max([44, *(len(r.metric) for r in rows)])
    b = max([28, *(len(r.baseline or "") for r in rows)])
    lines = [f"benchmark: {benchmark}  ({machine_summary()})",
             f"{'metric':{m}s} {'value':>12s} {'unit':10s} {'baseline':{b}s} {'base value':>12s} {'ratio':>7s}"]
    for r in rows:
        bv = "" if r.baseline_value is None else f"{r.baseline_value:12.4g}"
        ratio = "" if r.ratio is None else f"{r.ratio:7.2f}"
        lines.append(f"{r.metric:{m}s} {r.value:12.4g} {r.unit:10s} {(r.baseline or ''):{b}s} {bv:>12s} {ratio:>7s}")
    return "\n".join(lines)


def latency_percentiles_ms(seconds: Iterable[float]) -> dict[str, float | None]:
    arr = np.asarray(list(seconds), dtype=np.float64) * 1e3
    if arr.size == 0:
        return {"latency_ms_p50": None, "latency_ms_p99": None}
    return {"latency_ms_p50": float(np.percentile(arr, 50)), "latency_ms_p99": float(np.percentile(arr, 99))}


def success_interval(successes: int, episodes: int, z: float = 1.96) -> list[float] | None:
    """Wilson score interval of a success rate (95 % at z = 1.96); None without episodes. It stays inside
    [0, 1] and is honest at 0 or n successes, where the normal approximation collapses to a point."""
    if episodes <= 0:
        return None
    p, z2 = successes / episodes, z * z
    centre = (p + z2 / (2 * episodes)) / (1 + z2 / episodes)
    half = z * np.sqrt(p * (1 - p) / episodes + z2 / (4 * episodes**2)) / (1 + z2 / episodes)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def write_results(path: str | Path, **fields: Any) -> dict:
    """Write a run's `results.json`: success_rate, episodes, env_steps, latency_ms_p50/p99, ..."""
    from robot_rl.core.config import to_plain

    data = to_plain(fields)
    data.setdefault("machine", machine_summary())
    if current_command():
        data.setdefault("command", current_command())
    _write_json(path, data)
    return data


def _write_json(path: str | Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    os.replace(tmp, path)
