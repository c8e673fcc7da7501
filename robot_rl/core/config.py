"""Config I/O: YAML only (safe loader), Hydra composition for the CLI.

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
        raise ConfigError(f"configs/{name}.yaml with overrides {overrides}: {e}") from None
    return cfg


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
    default). YAML lists become tuples. `where` names the config section in the error."""
    from dataclasses import fields

    d = dict(d or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
