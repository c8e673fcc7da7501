"""Reading node parameters (declared from a YAML parameter file) into plain Python values."""

from __future__ import annotations

from typing import Any

from robot_rl.core.errors import ConfigError


def declare_defaults(node, defaults: dict[str, Any]) -> None:
    """Declare each parameter the parameter file did not set (nodes are created with
    automatically_declare_parameters_from_overrides=True, so file values are declared already)."""
    for name, value in defaults.items():
        if not node.has_parameter(name):
            node.declare_parameter(name, value)


def plain(value: Any) -> Any:
    """Parameter value -> plain Python (arrays -> lists)."""
    if isinstance(value, (str, bytes, bool, int, float)) or value is None:
        return value
    return list(value)


def nested(node, prefix: str) -> dict[str, Any]:
    """All parameters under `prefix.` as a nested dict: `streams.joint_pos.topic` ->
    {"joint_pos": {"topic": ...}}."""
    flat = node.get_parameters_by_prefix(prefix)
    if not flat:
        raise ConfigError(f"node {node.get_name()}: no parameters under {prefix!r} (check the parameter file)")
    out: dict[str, Any] = {}
    for dotted, param in flat.items():
        *parents, leaf = dotted.split(".")
        level = out
        for part in parents:
            level = level.setdefault(part, {})
        level[leaf] = plain(param.value)
    return out
