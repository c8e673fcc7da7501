"""A minimal stand-in of the `launch` / `launch_ros` modules (not on PyPI) for validating launch files.

`standin_modules()` returns fake modules with the real constructors' signatures (keyword-only where
the real ones are) that only record what a launch file declares. `load(path)` runs the file's
`generate_launch_description()` against them; `LaunchPlan` then resolves launch arguments the way
`ros2 launch` would (defaults, `name:=value` overrides, typed ParameterValue) and renders each node's
command line as launch_ros does: `--ros-args -r __node:=<name> --params-file <file> ... -r from:=to`.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import yaml

# ExecuteProcess keyword arguments that launch_ros.actions.Node passes through
_PROCESS_KWARGS = {"output", "emulate_tty", "respawn", "respawn_delay", "sigterm_timeout", "sigkill_timeout",
                   "cwd", "env", "additional_env", "condition", "prefix", "on_exit", "log_cmd"}


class LaunchDescription:
    def __init__(self, initial_entities=None) -> None:
        self.entities = list(initial_entities or [])

    def add_action(self, action) -> None:
        self.entities.append(action)


class DeclareLaunchArgument:
    def __init__(self, name: str, *, default_value=None, description=None, choices=None) -> None:
        self.name, self.default_value, self.description, self.choices = name, default_value, description, choices


class LaunchConfiguration:
    def __init__(self, variable_name: str, *, default=None) -> None:
        self.variable_name, self.default = variable_name, default


class PythonExpression:
    """launch.substitutions.PythonExpression: a list of strings and substitutions, concatenated, then
    evaluated as a Python expression (the result's str() is the value)."""

    def __init__(self, expression) -> None:
        self.expression = list(expression)


class IfCondition:
    def __init__(self, predicate_expression) -> None:
        self.predicate = predicate_expression
        self.negate = False


class UnlessCondition(IfCondition):
    def __init__(self, predicate_expression) -> None:
        super().__init__(predicate_expression)
        self.negate = True


class ParameterValue:
    def __init__(self, value, *, value_type=None) -> None:
        self.value, self.value_type = value, value_type


class Node:
    def __init__(self, *, executable, package=None, name=None, namespace=None, exec_name=None, parameters=None,
                 remappings=None, ros_arguments=None, arguments=None, **kwargs) -> None:
        unknown = set(kwargs) - _PROCESS_KWARGS
        if unknown:
            raise TypeError(f"launch_ros Node got unexpected keyword arguments {sorted(unknown)}")
        self.executable, self.package, self.name, self.namespace = executable, package, name, namespace
        self.parameters = list(parameters or [])
        self.remappings = list(remappings or [])
        self.ros_arguments, self.arguments, self.kwargs = ros_arguments, arguments, kwargs
        self.lifecycle = False


class LifecycleNode(Node):
    def __init__(self, *, name, namespace, **kwargs) -> None:
        super().__init__(name=name, namespace=namespace, **kwargs)
        self.lifecycle = True


def standin_modules() -> dict[str, types.ModuleType]:
    def module(name: str, **attrs) -> types.ModuleType:
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        return m

    return {
        "launch": module("launch", LaunchDescription=LaunchDescription),
        "launch.actions": module("launch.actions", DeclareLaunchArgument=DeclareLaunchArgument),
        "launch.conditions": module("launch.conditions", IfCondition=IfCondition, UnlessCondition=UnlessCondition),
        "launch.substitutions": module("launch.substitutions", LaunchConfiguration=LaunchConfiguration,
                                       PythonExpression=PythonExpression),
        "launch_ros": module("launch_ros"),
        "launch_ros.actions": module("launch_ros.actions", Node=Node, LifecycleNode=LifecycleNode),
        "launch_ros.parameter_descriptions": module("launch_ros.parameter_descriptions", ParameterValue=ParameterValue),
    }


def load(path: Path, monkeypatch) -> LaunchDescription:
    """Run `generate_launch_description()` of the launch file with the stand-in modules installed."""
    for name, mod in standin_modules().items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location(f"launch_file_{path.stem.replace('.', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription), f"{path}: generate_launch_description() returned {description!r}"
    return description


class LaunchPlan:
    """What `ros2 launch <file> name:=value ...` would start."""

    def __init__(self, description: LaunchDescription, overrides: dict[str, str] | None = None) -> None:
        self.arguments = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
        self.declared_nodes = [e for e in description.entities if isinstance(e, Node)]
        unknown = [e for e in description.entities if not isinstance(e, (DeclareLaunchArgument, Node))]
        if unknown:
            raise TypeError(f"the stand-in does not know entities {unknown}")
        undeclared = sorted(set(overrides or {}) - set(self.arguments))
        if undeclared:
            raise KeyError(f"launch arguments {undeclared} are not declared ({sorted(self.arguments)})")
        self.values = {n: a.default_value for n, a in self.arguments.items()}
        self.values.update(overrides or {})
        for name, arg in self.arguments.items():
            if arg.choices is not None and self.values[name] is not None and self.values[name] not in arg.choices:
                raise ValueError(f"launch argument {name}:={self.values[name]} is not one of {arg.choices}")
        self.nodes = [n for n in self.declared_nodes if self.launched(n)]

    def launched(self, node: Node) -> bool:
        """Evaluate the node's condition as launch does (true/false/1/0, case-insensitive, else an error)."""
        condition = node.kwargs.get("condition")
        if condition is None:
            return True
        value = self.resolve(condition.predicate).strip().lower()
        if value not in ("true", "1", "false", "0"):
            raise ValueError(f"condition of node {node.name}: {value!r} is not true/false/1/0")
        return (value in ("true", "1")) != condition.negate

    def resolve(self, value: Any) -> Any:
        if isinstance(value, LaunchConfiguration):
            if value.variable_name not in self.arguments:
                raise KeyError(f"LaunchConfiguration {value.variable_name!r} is not a declared launch argument")
            resolved = self.values.get(value.variable_name)
            if resolved is None:
                resolved = value.default
            if resolved is None:
                raise KeyError(f"launch argument {value.variable_name!r} has no default: pass {value.variable_name}:=...")
            return str(resolved)
        if isinstance(value, PythonExpression):
            return str(eval("".join(self.resolve(v) if not isinstance(v, str) else v for v in value.expression),
                            {"__builtins__": {}}))
        if isinstance(value, ParameterValue):
            resolved = self.resolve(value.value)
            return value.value_type(resolved) if value.value_type is not None else yaml.safe_load(resolved)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, LaunchConfiguration)) for v in value):
            return "".join(self.resolve(v) for v in value)  # a list of substitutions concatenates
        if isinstance(value, Path):
            return str(value)
        return value

    def parameters(self, node: Node) -> tuple[list[Path], dict[str, Any]]:
        """The node's parameter files and its dict parameters (resolved)."""
        files, values = [], {}
        for entry in node.parameters:
            if isinstance(entry, dict):
                values.update({k: self.resolve(v) for k, v in entry.items()})
            else:
                files.append(Path(self.resolve(entry)))
        return files, values

    def remappings(self, node: Node) -> list[tuple[str, str]]:
        return [(self.resolve(a), self.resolve(b)) for a, b in node.remappings]

    def ros_args(self, node: Node, tmp_dir: Path) -> list[str]:
        """`--ros-args` of the node's process, as launch_ros renders them (dict parameters go
        through a temporary parameter file, like launch_ros does)."""
        args = []
        if node.name:
            args += ["-r", f"__node:={node.name}"]
        if node.namespace:
            args += ["-r", f"__ns:={node.namespace}"]
        files, values = self.parameters(node)
        for f in files:
            args += ["--params-file", str(f)]
        if values:
            tmp = tmp_dir / f"{node.name or node.executable}_launch_params.yaml"
            tmp.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}))
            args += ["--params-file", str(tmp)]
        for a, b in self.remappings(node):
            args += ["-r", f"{a}:={b}"]
        return args
