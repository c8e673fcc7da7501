"""Benchmarks: `robot-rl bench <name> [json=<file>]` with name one of store, twin, policy, finetune, all.

Each prints a table of rows (metric, value, unit, baseline, baseline value, ratio; ratio > 1 means
better than the baseline measured in the same run) and, with json=<file>, writes the JSON contract
of ARCHITECTURE.md. Options of one benchmark live under its name, e.g. store.seconds=10.
"""

from __future__ import annotations

import importlib

from omegaconf import OmegaConf

from robot_rl.core.errors import ConfigError

BENCHMARKS = ("store", "twin", "policy", "finetune", "all")


def run(cfg, args: list[str]) -> int:
    if len(args) != 1 or args[0] not in BENCHMARKS:
        raise ConfigError(f"usage: robot-rl bench <{'|'.join(BENCHMARKS)}> [json=<file>], got {args}")
    name = args[0]
    try:
        module = importlib.import_module(f"robot_rl.bench.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"robot_rl.bench.{name}":
            print(f"robot-rl bench {name}: not implemented yet in this version of robot_rl")
            return 2
        raise
    common = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in BENCHMARKS}
    section = OmegaConf.to_container(cfg[name], resolve=True) if name in cfg and cfg[name] is not None else {}
    return int(module.main(OmegaConf.create(common | section)) or 0)
