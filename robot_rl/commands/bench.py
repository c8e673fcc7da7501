"""Benchmarks: `robot-rl bench <name> [json=<file>]` with name one of store, twin, policy, finetune, images, ros,
all.

Each prints a table of rows (metric, value, unit, baseline, baseline value, ratio; ratio > 1 means
better than the baseline measured in the same run) and, with json=<file>, writes the JSON contract
of ARCHITECTURE.md. Options of one benchmark live under its name, e.g. store.seconds=10.
`all` runs every benchmark and the peers (lerobot.venv=<path>) in one run and writes bench_all.md +
bench_all.json into out=<dir>; quick=true uses small sizes (a smoke test). See docs/benchmarks.md.
"""

from __future__ import annotations

from robot_rl.bench.all import BenchConfig, load_benchmark, section_config
from robot_rl.core.config import register_schema
from robot_rl.core.errors import ConfigError
from robot_rl.core.fields import Invalid, Rule, choice, integer, integers
from robot_rl.learning.spec_builder import OBS_KINDS

BENCHMARKS = ("store", "twin", "policy", "finetune", "images", "ros", "all")
register_schema("bench", BenchConfig)   # configs/bench.yaml's defaults: BenchConfig and its sections' dataclasses


def _seeds(v):
    """bench finetune's seeds: a count, or a list of seeds (one job's share of them)."""
    try:
        return (integers(0) if isinstance(v, (list, tuple)) else integer(1)).check(v)
    except Invalid:
        raise Invalid("a number of seeds >= 1 or a list of seeds, e.g. [0,1,2]") from None


FIELDS = {"finetune.seeds": Rule(_seeds), "finetune.obs": choice(*OBS_KINDS)}


def run(cfg, args: list[str]) -> int:
    if len(args) != 1 or args[0] not in BENCHMARKS:
        raise ConfigError(f"usage: robot-rl bench <{'|'.join(BENCHMARKS)}> [json=<file>], got {args}")
    name = args[0]
    module = load_benchmark(name)
    if module is None:
        print(f"robot-rl bench {name}: not implemented yet in this version of robot_rl")
        return 2
    if name == "all":  # it reads every benchmark's section itself
        return int(module.main(cfg) or 0)
    return int(module.main(section_config(cfg, name)) or 0)
