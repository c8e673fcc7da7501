"""Benchmarks behind `robot-rl bench <name>`: one module per benchmark, each exposing `main(cfg) -> int`."""


def setting(cfg, key: str, default):
    """A benchmark option: `cfg.get(key)` (an OmegaConf section or dict; None when absent), else `default`."""
    value = cfg.get(key) if cfg is not None else None
    return default if value is None else value
