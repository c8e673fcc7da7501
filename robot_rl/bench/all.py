"""`robot-rl bench all [json=<file>] [out=<dir>] [quick=true]`: every benchmark and peer in one run.

Runs the benchmarks of `all.benches` (store, twin, policy, finetune; each writes its JSON into the
run folder, values are medians over `repeats` as when run alone), then the peers of `all.peers`
(lerobot: the same episodes and observation shapes measured in LeRobot's own venv, see
robot_rl/bench/peers/lerobot_peer.py), and writes into `out` (default runs/bench/<timestamp>):
    <name>.json       each benchmark's rows (ARCHITECTURE.md's benchmark JSON)
    <name>/           what a benchmark keeps (its `out`), e.g. finetune's runs and curves
    bench_all.md      a summary (status and time per section), every ratio, every section's table
    bench_all.json    {"benchmark": "all", "machine", "rows" (metric "<section>/<metric>"),
                       "sections": {name: {status, reason, seconds}}, "load_average", "quick"}
A benchmark whose module is not in this version is reported "not available"; a peer that cannot
run here (no venv) "skipped" with the reason; an exception "failed" (exit status 1), and the other
sections still run. quick=true applies `all.quick.<section>` (small sizes: a smoke test, not numbers
to quote).
"""

from __future__ import annotations

import importlib
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from robot_rl.core.progress import progress_bar
from robot_rl.bench.finetune import FinetuneBenchConfig
from robot_rl.bench.images import ImagesBenchConfig
from robot_rl.bench.peers.lerobot_peer import LeRobotPeerConfig
from robot_rl.bench.policy import PolicyBenchConfig
from robot_rl.bench.ros import RosBenchConfig
from robot_rl.bench.store import StoreBenchConfig
from robot_rl.bench.twin import TwinBenchConfig
from robot_rl.core.results import machine_summary, write_bench_json

NAME = "all"
BENCHES = ("store", "twin", "policy", "finetune")
PEERS = ("lerobot",)
SECTIONS = (*BENCHES, "ros", "images", *PEERS, NAME)  # config sections: everything else in configs/bench.yaml is common
OK, NOT_AVAILABLE, SKIPPED, FAILED = "ok", "not available", "skipped", "failed"


@dataclass
class AllBenchConfig:
    """`robot-rl bench all`'s options (configs/bench.yaml's `all:` section)."""

    benches: tuple[str, ...] = BENCHES
    peers: tuple[str, ...] = PEERS    # () measures robot_rl alone
    quick: dict = field(default_factory=lambda: {   # per-section settings that quick=true applies
        "store": {"seconds": 2.0, "read_samples": 32, "repeats": 1},
        "twin": {"duration": 1.0, "rtf_seconds": 0.5, "tracking_periods": 0.25, "tracking_warmup": 0.5, "repeats": 1,
                 "law_seconds": 0.5, "load_model": "diffusion_unet_small"},
        "policy": {"repeats": 1, "model": "diffusion_unet_small"},
        "finetune": {},               # bench finetune reads quick=true itself (finetune.quick_sizes)
        "lerobot": {"episodes": 3, "steps": 60, "read_samples": 64, "repeats": 1, "ddpm100": False}})


@dataclass
class BenchConfig:
    """configs/bench.yaml's schema: the keys every benchmark reads, then one section per benchmark, each its
    config dataclass (the only place their defaults are written)."""

    out: str | None = None            # output directory (bench all, finetune); default runs/bench/...
    seed: int = 0
    json: str | None = None           # also write the results as JSON to this file
    device: str = "auto"              # auto | cpu | cuda
    repeats: int = 3                  # values are medians over this many repeats
    quick: bool = False               # small sizes (bench all: all.quick; finetune: finetune.quick_sizes): a smoke test
    store: StoreBenchConfig = field(default_factory=StoreBenchConfig)
    twin: TwinBenchConfig = field(default_factory=TwinBenchConfig)
    policy: PolicyBenchConfig = field(default_factory=PolicyBenchConfig)
    ros: RosBenchConfig = field(default_factory=RosBenchConfig)
    finetune: FinetuneBenchConfig = field(default_factory=FinetuneBenchConfig)
    images: ImagesBenchConfig = field(default_factory=ImagesBenchConfig)
    all: AllBenchConfig = field(default_factory=AllBenchConfig)
    lerobot: LeRobotPeerConfig = field(default_factory=LeRobotPeerConfig)


def section_config(cfg, name: str, extra: dict | None = None):
    """The config one benchmark sees: the common keys (json, repeats, seed, device, quick, ...),
    then its own section `cfg.<name>`, then `extra`."""
    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg or {})
    common = {k: v for k, v in plain.items() if k not in SECTIONS}
    return OmegaConf.create(common | (plain.get(name) or {}) | (extra or {}))


def load_benchmark(name: str):
    """robot_rl.bench.<name>, or None when this version of robot_rl does not have it."""
    try:
        return importlib.import_module(f"robot_rl.bench.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"robot_rl.bench.{name}":
            return None
        raise


@dataclass
class Section:
    """One benchmark's or peer's outcome in the run."""

    name: str
    status: str
    seconds: float = 0.0
    reason: str | None = None
    rows: list[dict] = field(default_factory=list)


def _failure(e: BaseException) -> str:
    traceback.print_exc()
    return f"{type(e).__name__}: {e}"


def run_benchmark(cfg, name: str, out: Path, quick: dict) -> Section:
    module = load_benchmark(name)
    if module is None:
        return Section(name, NOT_AVAILABLE, reason=f"robot_rl.bench.{name} is not in this version of robot_rl")
    path = out / f"{name}.json"
    t0 = time.perf_counter()
    try:
        code = int(module.main(section_config(cfg, name, quick | {"json": str(path), "out": str(out / name)})) or 0)
    except Exception as e:  # one broken benchmark must not lose the others' numbers
        return Section(name, FAILED, time.perf_counter() - t0, _failure(e))
    seconds = time.perf_counter() - t0
    if code != 0:
        return Section(name, FAILED, seconds, f"exit status {code}")
    if not path.is_file():
        return Section(name, FAILED, seconds, f"{path} was not written")
    return Section(name, OK, seconds, rows=json.loads(path.read_text())["rows"])


def run_lerobot(cfg, out: Path, quick: dict, policy: Section | None, policy_model: str | None) -> Section:
    """The LeRobot peer; its latency rows compare with `policy`'s rows, its network of our widths
    follows the policy bench's model."""
    from robot_rl.bench.peers import lerobot_peer

    path = out / "lerobot.json"
    policy_rows = {r["metric"]: r["value"] for r in policy.rows} if policy is not None else {}
    extra = quick | {"keep": str(out)} | ({"model": policy_model} if policy_model else {})
    t0 = time.perf_counter()
    try:
        rows = lerobot_peer.measure(section_config(cfg, "lerobot", extra), policy_rows)
    except lerobot_peer.PeerUnavailable as e:
        return Section("lerobot", SKIPPED, time.perf_counter() - t0, str(e))
    except Exception as e:
        return Section("lerobot", FAILED, time.perf_counter() - t0, _failure(e))
    return Section("lerobot", OK, time.perf_counter() - t0, rows=write_bench_json(path, "lerobot", rows)["rows"])


# -- the report ----------------------------------------------------------------------------------
def _num(x: Any) -> str:
    if x is None:
        return ""
    x = float(x)
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def _table(rows: list[dict], with_section: bool = False) -> list[str]:
    head = ["section"] if with_section else []
    lines = ["| " + " | ".join(head + ["metric", "value", "unit", "baseline", "baseline value", "ratio"]) + " |",
             "|" + "---|" * (len(head) + 6)]
    for r in rows:
        cells = [r["section"]] if with_section else []
        ratio = "" if r.get("ratio") is None else f"**{r['ratio']:.2f}**"
        cells += [f"`{r['metric']}`", _num(r["value"]), r["unit"], r.get("baseline") or "",
                  _num(r.get("baseline_value")), ratio]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report_markdown(sections: list[Section], meta: dict) -> str:
    """bench_all.md: summary, every ratio, then each section's full table."""
    lines = ["# robot-rl bench all", "",
             f"- command: `{meta['command']}`", f"- machine: {meta['machine']}",
             f"- load average (1/5/15 min) at start {meta['load_average']['start']}, "
             f"at end {meta['load_average']['end']}",
             f"- quick: {meta['quick']} (quick sizes are a smoke test, not numbers to quote)" if meta["quick"]
             else f"- repeats: {meta['repeats']} (values are medians over the repeats)",
             "", "Ratios compare with a baseline measured in the same run; > 1 means robot_rl is better (a speed-up "
             "for latencies, a throughput ratio for rates, a size ratio for disk).", "", "## Sections", "",
             "| section | status | time (s) | rows | note |", "|---|---|---|---|---|"]
    for s in sections:
        note = (s.reason or "").splitlines()[0][:160] if s.reason else ""
        lines.append(f"| {s.name} | {s.status} | {s.seconds:.0f} | {len(s.rows)} | {note} |")
    ratios = [r | {"section": s.name} for s in sections for r in s.rows if r.get("ratio") is not None]
    if ratios:
        lines += ["", "## Ratios", "", *_table(ratios, with_section=True)]
    for s in sections:
        lines += ["", f"## {s.name}", ""]
        if s.status == OK:
            lines += _table(s.rows)
        else:
            lines += [f"{s.status}: ", "", "```", (s.reason or "").strip(), "```"]
    return "\n".join(lines) + "\n"


def write_report(out: Path, sections: list[Section], meta: dict, json_copy: str | None = None) -> dict:
    """bench_all.md and bench_all.json in `out` (and the JSON also at `json_copy`)."""
    data = {"benchmark": NAME, "machine": meta["machine"],
            "rows": [r | {"metric": f"{s.name}/{r['metric']}"} for s in sections for r in s.rows],
            "sections": {s.name: {"status": s.status, "reason": s.reason, "seconds": round(s.seconds, 2)}
                         for s in sections},
            "load_average": meta["load_average"], "quick": meta["quick"], "command": meta["command"]}
    text = json.dumps(data, indent=2)
    targets = [out / "bench_all.json"] + ([Path(json_copy)] if json_copy else [])
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    (out / "bench_all.md").write_text(report_markdown(sections, meta))
    return data


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(cfg) -> int:
    """cfg: the whole bench config (BenchConfig: common keys, one section per benchmark, `all`, `lerobot`)."""
    from robot_rl.core.rundir import make_run_dir

    from robot_rl.core.config import dataclass_from_dict, to_plain

    settings = dataclass_from_dict(AllBenchConfig, to_plain(cfg[NAME]), "bench all")
    quick = bool(cfg.quick)
    names, peers = list(settings.benches), list(settings.peers)
    unknown = sorted(set(names) - set(BENCHES)) + sorted(set(peers) - set(PEERS))
    if unknown:
        from robot_rl.core.errors import ConfigError

        raise ConfigError(f"configs/bench.yaml all.benches / all.peers: unknown {unknown}; "
                          f"benches are {list(BENCHES)}, peers {list(PEERS)}")
    overrides = to_plain(settings.quick) if quick else {}
    out = make_run_dir(cfg, "bench")
    meta = {"command": "robot-rl bench all" + (" quick=true" if quick else ""), "machine": machine_summary(),
            "quick": quick, "repeats": cfg.repeats, "load_average": {"start": _load()}}
    sections: list[Section] = []
    todo = names + peers
    bar = progress_bar(todo, desc="bench all", unit="section")
    for name in bar:
        bar.set_postfix_str(name)
        bar.write(f"bench all: [{len(sections) + 1}/{len(todo)}] {name} ...")
        extra = dict(overrides.get(name) or {})
        if name in PEERS:
            policy = next((s for s in sections if s.name == "policy" and s.status == OK), None)
            model = section_config(cfg, "policy", dict(overrides.get("policy") or {})).get("model")
            section = run_lerobot(cfg, out, extra, policy, model)
        else:
            section = run_benchmark(cfg, name, out, extra)
        sections.append(section)
        bar.write(f"bench all: {name}: {section.status} after {section.seconds:.0f} s"
                   + (f" ({section.reason.splitlines()[0]})" if section.reason else ""))
    meta["load_average"]["end"] = _load()
    write_report(out, sections, meta, cfg.json)
    print(f"bench all: wrote {out / 'bench_all.md'} and {out / 'bench_all.json'}"
          + (f" (and {cfg.json})" if cfg.json else ""))
    return 1 if any(s.status == FAILED for s in sections) else 0
