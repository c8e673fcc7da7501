"""Run output directories: every run writes its resolved config beside its results."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from robot_rl.core.config import save_yaml, to_plain
from robot_rl.core.errors import ConfigError


def make_run_dir(cfg, command: str) -> Path:
    """`cfg.out` if set, else `runs/<command>/<UTC timestamp>`; saves the resolved `config.yaml` there."""
    out = cfg.get("out") if hasattr(cfg, "get") else None
    if not out:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        run_id = os.environ.get("TORCHELASTIC_RUN_ID")  # torchrun: every rank must pick the same directory
        out = Path("runs") / command / (f"torchrun-{run_id}" if run_id else stamp)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:   # a file in the way, no permission, a read-only file system
        raise ConfigError(f"out={out}: cannot create the run directory ({e.strerror or e})") from None
    save_yaml(to_plain(cfg), out / "config.yaml")
    return out
