"""Benchmarks behind `robot-rl bench <name>`: one module per benchmark, each exposing `main(cfg) -> int`.

A benchmark's options are a dataclass (its section of configs/bench.yaml, registered in the bench schema
robot_rl.bench.all.BenchConfig); `main` receives them flat beside the common keys (json, out, repeats, seed,
device, quick) as robot_rl.bench.all.section_config gives them, and reads its own with `options`.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def options(cfg: Any, cls: type[T], name: str) -> tuple[T, dict]:
    """(cls built from the keys of `cfg` that it declares, the plain cfg for the common keys). Wrong types and
    bad values are refused naming `bench <name>` and the key."""
    from robot_rl.core.config import dataclass_from_dict, to_plain

    plain = to_plain(cfg)
    names = {f.name for f in fields(cls)}
    return dataclass_from_dict(cls, {k: v for k, v in plain.items() if k in names}, f"bench {name}"), plain
