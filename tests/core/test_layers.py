"""Imports point down the layers of the README's layout table and no robot_rl module imports itself
back through a cycle. Every import is read with `ast`, module level and inside functions alike."""

import ast
from pathlib import Path

import robot_rl

ROOT = Path(robot_rl.__file__).parent

# Lower rank = lower layer. The world layer is ordered inside: the control law and loop first, then the
# twin and the real devices (both implement control's ArmBackend), then calibration (fits on twin images).
RANK = {"core": 0, "data": 1, "control": 2, "sim": 3, "hardware": 3, "calibration": 4, "policies": 5,
        "learning": 6, "runtime": 7, "commands": 8, "bench": 8, "cli": 9}

# Imports that do not point down, each with its reason. Keep this short.
EXCEPTIONS = {
    ("robot_rl.control.loop", "robot_rl.hardware.registry"):
        "the loop process builds the rig's arm backend by its registry name (twin, franka, ur, plug-ins)",
    ("robot_rl.commands.pipeline", "robot_rl.cli"):
        "the pipeline runs each stage through the CLI entry point, as a user would",
    ("robot_rl.commands.pipeline", "robot_rl.commands.pipeline_report"):
        "the pipeline's report writer, split out of the command for length",
    ("robot_rl.commands.bench", "robot_rl.bench.all"):
        "`robot-rl bench` is the command that runs the benchmarks",
    ("robot_rl.bench.finetune", "robot_rl.cli"):
        "bench finetune runs each stage through the CLI dispatch a user runs",
}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the robot_rl modules it imports (a name imported from a package resolves to its submodule
    when it is one, else to the package)."""

    def resolve(name: str) -> str:
        while name not in mods:
            name = name.rpartition(".")[0]
        return name

    edges: dict[str, set[str]] = {}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names}
        edges[mod] = {resolve(n) for n in found if n == "robot_rl" or n.startswith("robot_rl.")} - {mod}
    return edges


def _layer(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_import_cycles():
    edges = _imports(_modules())
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    cycles = []

    def visit(mod, path):
        state[mod] = 1
        for dep in sorted(edges.get(mod, ())):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[mod] = 2

    for mod in sorted(edges):
        if mod not in state:
            visit(mod, [mod])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_point_down_the_layers():
    edges = _imports(_modules())
    wrong = []
    for mod, deps in sorted(edges.items()):
        src = _layer(mod)
        for dep in sorted(deps):
            dst = _layer(dep)
            if src is None or dst is None or (mod, dep) in EXCEPTIONS:
                continue
            if src == dst == "commands" or RANK[dst] >= RANK[src] and src != dst:
                wrong.append(f"{mod} -> {dep}")
    assert not wrong, "imports that do not point down the layers (ARCHITECTURE.md):\n" + "\n".join(wrong)


def test_every_exception_is_still_needed():
    edges = _imports(_modules())
    stale = [f"{a} -> {b}" for a, b in EXCEPTIONS if b not in edges.get(a, set())]
    assert not stale, f"listed exceptions no longer imported (remove them): {stale}"
