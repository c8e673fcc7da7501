"""Episode store tools:

  robot-rl data info <store>                      episodes, streams, rates, durations, success, size
  robot-rl data validate <store> [decode=false]   find truncated/corrupt chunks, bad index, bad timestamps
  robot-rl data recover <store> [discard=true]    commit (or drop) an episode left open by a crash
  robot-rl data view <store> episode=<i> [video=<file.mp4|gif>]
  robot-rl data export <store> <out> format=diffusion_policy|lerobot|rosbag [<option>=<value> ...]
  robot-rl data import <src> <store> format=diffusion_policy|lerobot|rosbag [<option>=<value> ...]

<store> is a local path or an fsspec URL (e.g. s3://bucket/demos.zarr, memory://x).
format also takes replay_buffer (diffusion_policy/UMI), rosbag2 and lerobot_v3. Converter options are given
bare or under options. (overwrite=true and options.overwrite=true are the same); fps= is LeRobot's fps.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from robot_rl.core.config import to_plain
from robot_rl.core.errors import ConfigError, StoreError
from robot_rl.core.fields import integer, number, optional, text
from robot_rl.data.episode_store import EpisodeStore

ACTIONS = ("info", "validate", "recover", "view", "export", "import")
FORMATS = ("diffusion_policy", "lerobot", "rosbag")
# the names the formats go by elsewhere: diffusion_policy's/UMI's ReplayBuffer, ROS 2 bags, LeRobot v3 datasets
ALIASES = {"replay_buffer": "diffusion_policy", "rosbag2": "rosbag", "lerobot_v3": "lerobot"}

OPTIONS_SECTION = "options"   # export/import: keys data.yaml does not declare are converter options

FIELDS = {
    "episode": integer(0),
    "fps": optional(number(0.0, min_open=True)),
    "video": optional(text),
    "format": text,
}


def _need(args: list[str], n: int, usage: str) -> list[str]:
    if len(args) != n:
        raise ConfigError(f"usage: robot-rl data {usage}")
    return args


def _converter(fmt: str):
    fmt = ALIASES.get(fmt, fmt)
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}: expected one of {', '.join(FORMATS)} (or an alias: "
                          f"{', '.join(f'{a} = {f}' for a, f in ALIASES.items())})")
    return importlib.import_module(f"robot_rl.data.convert.{fmt}")


def run(cfg, args: list[str]) -> int:
    if not args or args[0] not in ACTIONS:
        raise ConfigError(f"robot-rl data <action>: action must be one of {ACTIONS}, got {args[:1]}")
    action, rest = args[0], args[1:]
    options = dict(to_plain(cfg.get("options") or {}))
    if action in ("export", "import"):
        if cfg.fps is not None:   # LeRobot's fps, by its name
            options.setdefault("fps", cfg.fps)
    elif options:
        raise ConfigError(f"data {action}: unknown key(s) {', '.join(sorted(options))}; converter options apply to "
                          f"export and import only (`robot-rl data --help` lists the keys)")
    if action == "info":
        from robot_rl.data.info import format_info, store_info

        (path,) = _need(rest, 1, "info <store>")
        info = store_info(EpisodeStore.open(path))
        print(json.dumps(info, indent=2) if cfg.json_output else format_info(info))
        return 0
    if action == "validate":
        from robot_rl.data.validate import validate

        (path,) = _need(rest, 1, "validate <store>")
        problems = validate(path, decode=bool(cfg.decode))
        for p in problems:
            print(f"PROBLEM {p}")
        print(f"{path}: {'valid' if not problems else f'{len(problems)} problem(s)'}")
        return 0 if not problems else 1
    if action == "recover":
        from robot_rl.data.recover import recover

        (path,) = _need(rest, 1, "recover <store>")
        result = recover(EpisodeStore.open(path, mode="a"), discard=bool(cfg.discard))
        print(f"{path}: {result}")
        return 0
    if action == "view":
        from robot_rl.data.view import render_episode

        (path,) = _need(rest, 1, "view <store> episode=<i>")
        video = cfg.video or str(Path("runs") / "view" / f"{Path(str(path)).stem}_ep{cfg.episode}.mp4")
        out = render_episode(EpisodeStore.open(path), int(cfg.episode), video, fps=cfg.fps)
        print(f"wrote {out}")
        return 0
    if action == "export":
        src, out = _need(rest, 2, "export <store> <out> format=...")
        summary = _converter(cfg.format).export_store(EpisodeStore.open(src), out, **options)
        print(json.dumps(to_plain(summary), indent=2, default=str))
        return 0
    src, out = _need(rest, 2, "import <src> <store> format=...")
    store = _converter(cfg.format).import_store(src, out, **options)
    if not isinstance(store, EpisodeStore):
        raise StoreError(f"import into {out} returned no store")
    print(f"imported {store.n_episodes} episode(s) into {out}")
    return 0
