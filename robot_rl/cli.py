"""`robot-rl` command line: one subcommand per stage, each a Hydra config from `configs/`.

    robot-rl <command> [positional ...] [key=value ...]
    robot-rl <command> --help     config groups and defaults of that command

`progress=true|false` is taken by every command (robot_rl.core.progress): bars on a terminal, periodic
one-line summaries in a log, nothing with false.

Each command lives in `robot_rl/commands/<command>.py` as `run(cfg, args) -> int`, with optional
`FIELDS` (robot_rl.core.fields rules for its keys) checked before it runs and optional
`preset_overrides(overrides) -> overrides` (config group choices a preset implies, before the user's).
"""

from __future__ import annotations

import importlib
import sys

import yaml

COMMANDS: dict[str, str] = {
    "collect": "record scripted-teleop (or device) episodes in the twin into an episode store",
    "data": "inspect and convert episode stores: info | validate | recover | view | export | import",
    "train": "train a policy from a store (algo=bc: diffusion policy by imitation)",
    "finetune": "improve a policy with RL (algo=offline | residual | ppo | dsrl | rlpd)",
    "distill": "distill a policy into a one-step student",
    "eval": "evaluate a policy checkpoint in the twin",
    "deploy": "run a policy through the runtime and the 1 kHz impedance loop (twin=true or a real rig)",
    "calibrate": "calibrate cameras and latencies: intrinsics | handeye | latency",
    "bench": "run a benchmark: store | twin | policy | finetune | ros | all",
    "pipeline": "run the whole pipeline on the twin and write report.md + results.json",
    "report": "tables of runs' results.json and benchmark JSON files (markdown or plain text)",
}

# Sections whose keys are names the user chooses (converter/device options, gym.make kwargs, observation
# features, per-algorithm overrides): a new key needs no `+` where the command's config has the section.
FREE_FORM = ("options", "task.kwargs", "spec.obs", "finetune.overrides", "finetune.task_params", "finetune.gym.kwargs",
             "images.variants")
COMMON_OPTIONS = ("progress=true|false   progress bars on a terminal, a summary line every 30 s or 10 % in a log; "
                  "false: none (default true)",)

USAGE = "usage: robot-rl <command> [positional ...] [key=value ...] [--help]\n\ncommands:\n" + "\n".join(
    f"  {name:10s} {text}" for name, text in COMMANDS.items()
)


def _command_help(name: str) -> str:
    """Usage, the command's docstring, its config groups, the options every command takes, then every key
    with its default (configs/<name>.yaml composed over the dataclasses it builds on)."""
    from omegaconf import OmegaConf

    from robot_rl.core.config import compose, config_dir, config_groups

    lines = [f"usage: robot-rl {name} [positional ...] [key=value ...]", "", COMMANDS[name]]
    module = _load(name)
    if module is not None and module.__doc__:
        lines += ["", module.__doc__.strip()]
    path = config_dir() / f"{name}.yaml"
    text = path.read_text()
    used = {next(iter(d)) for d in (yaml.safe_load(text) or {}).get("defaults", []) if isinstance(d, dict)}
    groups = {g: opts for g, opts in config_groups().items() if g in used and opts}
    if groups:
        lines += ["", "config groups (choose with group=option; their keys are in configs/<group>/<option>.yaml):"]
        lines += [f"  {group}: {', '.join(opts)}" for group, opts in groups.items()]
    lines += ["", "options of every command:"] + [f"  {o}" for o in COMMON_OPTIONS]
    base = compose(name)
    free = [f"{s}.<name>=" for s in FREE_FORM if _is_section(base, s)] + (["task.kwargs.<name>= (task=gym)"]
                                                                           if "task" in used else [])
    if free:
        lines += ["", "sections that take keys of your choosing (no + needed): " + ", ".join(free)]
    lines += ["", f"configs/{name}.yaml:", "", text.rstrip(), "",
              "every key with its default (the YAML over the dataclasses it builds on; override with key=value, "
              "nested keys with dots):", "", OmegaConf.to_yaml(base).rstrip()]
    return "\n".join(lines)


def _is_section(cfg, key: str) -> bool:
    from omegaconf import DictConfig, OmegaConf

    return isinstance(OmegaConf.select(cfg, key, default=None), DictConfig)


def _free_form(name: str, overrides: list[str]) -> list[str]:
    """`++` in front of an override that adds a key to one of FREE_FORM's sections of this command's config
    (so `options.rate_hz=10` and `spec.obs.front.stream=cam_front_rgb` need no `+`); other overrides as given."""
    from robot_rl.core.config import compose, config_groups

    groups = set(config_groups())
    base = compose(name, [o for o in overrides if o.lstrip("+~").split("=", 1)[0] in groups])   # e.g. task=gym
    sections = [s for s in FREE_FORM if _is_section(base, s)]
    return [f"++{a}" if a[0].isalpha() and any(a.startswith(f"{s}.") for s in sections) else a for a in overrides]


def _load(name: str):
    try:
        return importlib.import_module(f"robot_rl.commands.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"robot_rl.commands.{name}":
            return None
        raise


def _progress_option(overrides: list[str]) -> tuple[bool | None, list[str]]:
    """`progress=true|false` (any command): the process-wide progress setting, not a config key."""
    from robot_rl.core.errors import ConfigError

    chosen, rest = None, []
    for a in overrides:
        key, value = a.split("=", 1)
        if key.lstrip("+~") != "progress":
            rest.append(a)
        elif value.strip().lower() in ("true", "false"):
            chosen = value.strip().lower() == "true"
        else:
            raise ConfigError(f"progress={value}: expected true or false")
    return chosen, rest


def set_declared(overrides: list[str], declared) -> list[str]:
    """`+key=value` (Hydra: add a key) for a key the composed config `declared` already has sets it, as
    `key=value` does: e.g. +learner.max_connections=128, written when that limit was not in the YAML."""
    from omegaconf import OmegaConf

    def has(key: str) -> bool:
        return OmegaConf.select(declared, key, default=_ABSENT) is not _ABSENT

    return [a[1:] if a[:1] == "+" and a[1:2] != "+" and has(a[1:].split("=", 1)[0]) else a for a in overrides]


_ABSENT = object()


def main(argv: list[str] | None = None) -> int:
    from robot_rl.core.errors import RobotRLError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"robot-rl: unknown command {name!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        if "-h" in rest or "--help" in rest:
            print(_command_help(name))
            return 0
        module = _load(name)
        if module is None:
            print(f"robot-rl {name}: not implemented yet in this version of robot_rl", file=sys.stderr)
            return 2
        from robot_rl.core.config import check_config, compose
        from robot_rl.core.progress import progress_setting
        from robot_rl.core.results import recording_command

        overrides = [a for a in rest if "=" in a and not a.startswith("-")]
        positional = [a for a in rest if a not in overrides]
        progress, overrides = _progress_option(overrides)
        if hasattr(module, "preset_overrides"):   # a preset's group choices, e.g. train obs=image -> its model
            overrides = module.preset_overrides(overrides)
        overrides = _free_form(name, overrides)
        declared = compose(name)
        overrides = set_declared(overrides, declared)
        section = getattr(module, "OPTIONS_SECTION", None)
        if section:   # the command takes its options' keys bare too (`overwrite=true` = `options.overwrite=true`)
            overrides = [f"++{section}.{a}" if a[0].isalpha() and a.split("=", 1)[0].split(".")[0] not in declared
                         else a for a in overrides]
        cfg = compose(name, overrides)
        check_config(name, cfg, overrides, getattr(module, "FIELDS", None))  # typed checks before anything runs
        with progress_setting(progress), recording_command(argv):
            return int(module.run(cfg, positional) or 0)
    except RobotRLError as e:
        print(f"robot-rl {name}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"robot-rl {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
