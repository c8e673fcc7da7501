"""Config I/O: YAML only (safe loader), Hydra composition for the CLI.

A command whose settings are dataclasses registers them as its schema (`register_schema`, Hydra's
ConfigStore); its configs/<command>.yaml then lists `<command>_schema` first in its defaults and holds
only config groups and values that differ from the dataclass defaults, which are written nowhere else.

Nothing here executes code from a config: no `eval` resolver is registered, and YAML is read with
`yaml.safe_load`, so tags such as `!!python/object` are rejected.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from robot_rl.core.errors import ConfigError

CONFIG_DIR_ENV = "ROBOT_RL_CONFIG_DIR"


def config_dir() -> Path:
    """The `configs/` tree: $ROBOT_RL_CONFIG_DIR, else the repository checkout this package lives in."""
    env = os.environ.get(CONFIG_DIR_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "configs")
    for path in candidates:
        if path.is_dir():
            return path
    raise ConfigError(
        f"config tree not found (looked in {', '.join(map(str, candidates))}); install robot_rl from a "
        f"checkout with `pip install -e .` or set {CONFIG_DIR_ENV}"
    )


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        with path.open() as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML (code-executing tags are refused): {e}") from None


def save_yaml(data: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")  # unique: several processes may write
    with tmp.open("w") as f:
        yaml.safe_dump(to_plain(data), f, sort_keys=False)
    os.replace(tmp, path)


def to_plain(cfg: Any) -> Any:
    """OmegaConf/dataclass/numpy containers -> plain Python types that YAML/JSON can hold."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, (DictConfig, ListConfig)):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - hydra is a hard dependency
        pass
    if isinstance(cfg, dict):
        return {str(k): to_plain(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_plain(v) for v in cfg]
    if hasattr(cfg, "tolist"):  # numpy arrays and scalars
        return cfg.tolist()
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def register_schema(command: str, schema: type) -> None:
    """Register dataclass `schema` as `<command>_schema`, the typed defaults configs/<command>.yaml builds on:
    Hydra then refuses unknown keys and values of the wrong type at composition."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=f"{command}_schema", node=schema)


def section_schema(cls: type, without: tuple[str, ...] = (), flatten: str | None = None) -> type:
    """A config section's schema made from dataclass `cls`: its fields and their defaults, less `without` (those a
    command sets itself, e.g. the run's seed), and with the fields of the dataclass field `flatten` inlined beside
    the others (their defaults those of cls's default for it), as configs/train.yaml spells the optimizer."""
    import typing
    from dataclasses import MISSING, field, fields, make_dataclass

    def default(value):
        return field(default_factory=lambda: value) if isinstance(value, (list, dict, tuple)) else field(default=value)

    hints = typing.get_type_hints(cls)
    specs = [(f.name, hints[f.name], field(default=f.default) if f.default is not MISSING
              else field(default_factory=f.default_factory)) for f in fields(cls) if f.name not in (*without, flatten)]
    if flatten is not None:
        nested = next(f for f in fields(cls) if f.name == flatten).default_factory()
        nested_hints = typing.get_type_hints(type(nested))
        specs += [(f.name, nested_hints[f.name], default(getattr(nested, f.name))) for f in fields(nested)]
    return make_dataclass(f"{cls.__name__}Section", specs)


def compose(name: str, overrides: list[str] | None = None):
    """Compose `configs/<name>.yaml` with `key=value` overrides into a resolved OmegaConf config."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
            cfg = hydra_compose(config_name=name, overrides=list(overrides or []))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_composition_error(name, str(e), list(overrides or []), e.__cause__)) from None
    return cfg


# a schema's type error (OmegaConf's message) -> what robot_rl.core.fields says for the same type
_EXPECTED = (("to Integer", "an integer", "integers"), ("to Float", "a number", "numbers"),
             ("valid bool", "true or false", "booleans"), ("not a ListConfig", "a list", "lists"),
             ("to Dict", "a mapping", "mappings"), ("not a subclass", "a section of settings", "sections"))


def _composition_error(name: str, message: str, overrides: list[str], cause: BaseException | None = None) -> str:
    """Hydra's error as one line naming the key and value. Hydra's own hint for an unknown key
    ("use +key=value") is dropped: the command would ignore an appended key."""
    import re

    from omegaconf.errors import ValidationError

    from robot_rl.core.fields import show_value

    if isinstance(cause, ValidationError) and getattr(cause, "full_key", None):   # a value the schema's type refuses
        text = str(cause).splitlines()[0]
        one, many = next(((a, b) for pattern, a, b in _EXPECTED if pattern in text), (text, text))
        given = re.search(r"override \+*(\S+?)=(.*)$", message.strip().splitlines()[0])
        if given and re.fullmatch(rf"{re.escape(given.group(1))}\[\d+\]", cause.full_key):   # a list's element
            from hydra.core.override_parser.overrides_parser import OverridesParser

            value = OverridesParser.create().parse_override(f"{given.group(1)}={given.group(2)}").value()
            return f"{given.group(1)}={show_value(value)}: expected a list of {many}"
        return f"{cause.full_key}={show_value(cause.value)}: expected {one}"
    schema = re.search(r"Could not load '(\w+)_schema'", message)
    if schema:
        return (f"configs/{name}.yaml builds on the schema robot_rl.commands.{schema.group(1)} registers: "
                f"import that module before composing")
    unknown = re.search(r"Could not override '([^']+)'", message)
    if unknown:
        return (f"unknown key {unknown.group(1)}: configs/{name}.yaml has no such key "
                f"(`robot-rl {name} --help` lists the keys and their defaults)")
    missing = re.search(r"Could not find '([^'/]+)/([^']+)'", message)
    if missing:
        group, option = missing.groups()
        options = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
        return f"{group}={option}: expected one of {', '.join(options)} (configs/{group}/)"
    first = (message.strip().splitlines() or ["invalid override"])[0]
    return f"configs/{name}.yaml with overrides {' '.join(overrides)}: {first}"


def check_config(name: str, cfg, overrides: list[str], rules: dict | None = None) -> None:
    """Check the composed config of command `name` with robot_rl.core.fields (the command's `rules`,
    the common names, the types of configs/<name>.yaml's defaults); normalizes values in place
    (e.g. episodes=3.0 -> 3). Raises ConfigError naming the key and value."""
    from omegaconf import OmegaConf

    from robot_rl.core.fields import check_fields

    groups = set(config_groups())
    chosen = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] in groups]   # e.g. task=push
    defaults = to_plain(compose(name, chosen))
    for key, value in check_fields(to_plain(cfg), rules or {}, defaults).items():
        OmegaConf.update(cfg, key, value, merge=False)


def config_groups() -> dict[str, list[str]]:
    """Config groups (sub-folders of configs/) and the options each offers."""
    root = config_dir()
    return {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith((".", "_"))
    }


def dataclass_from_dict(cls, d, where: str):
    """Build dataclass `cls` from a mapping, refusing unknown keys (a typo is an error, not a silent
    default) and values of the wrong type for a field annotated bool, int, float, str, a tuple of them
    or an Optional of them (`lr: float` refuses "abc", `steps: int` refuses 2.7, `ema: bool` refuses
    "maybe"). YAML lists become tuples. `where` names the config section in the error."""
    import typing
    from dataclasses import fields

    from robot_rl.core.fields import annotation_name, fits_annotation

    d = dict(d or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
    try:
        hints = typing.get_type_hints(cls)
    except Exception:   # an annotation that does not resolve: check names only
        hints = {}
    values = {}
    for k, v in d.items():
        ok, values[k] = fits_annotation(tuple(v) if isinstance(v, list) else v, hints.get(k, typing.Any))
        if not ok:
            raise ConfigError(f"{where}.{k}={v!r}: expected {annotation_name(hints[k])}")
    return cls(**values)
