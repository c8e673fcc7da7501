"""Find device classes by name: robot_rl's built-ins plus third-party plug-ins via Python entry points.

A package adds a device without editing robot_rl by declaring, in its pyproject.toml:

    [project.entry-points."robot_rl.cameras"]
    zed = "my_lab_devices.zed:ZedCamera"

Groups: robot_rl.cameras, robot_rl.grippers, robot_rl.arms, robot_rl.teleop. An arm entry is a control-loop
factory `make(rig, task)` returning a `robot_rl.control.ArmBackend` (torques) or `PoseBackend` (poses); a
rig file names it with `backend: <name>`. Built-in names win over
plug-ins; two plug-ins claiming one name is an error naming both. Nothing is imported until looked up, so
listing devices never needs a vendor library.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from robot_rl.hardware.device_errors import HardwareError

GROUPS = ("robot_rl.cameras", "robot_rl.grippers", "robot_rl.arms", "robot_rl.teleop")

BUILTINS: dict[str, dict[str, str]] = {
    "robot_rl.cameras": {
        "realsense": "robot_rl.hardware.realsense:RealSenseCamera",
        "opencv": "robot_rl.hardware.opencv_camera:OpenCVCamera",
    },
    "robot_rl.grippers": {
        "robotiq": "robot_rl.hardware.robotiq:RobotiqGripper",  # model="2f85" | "2f140"
    },
    # arms: control-loop factories `make(rig, task) -> ArmBackend | PoseBackend` (a rig's `backend:` name)
    "robot_rl.arms": {
        "twin": "robot_rl.sim.mujoco_twin:make_loop_backend",         # the MuJoCo twin on the wall clock
        "franka": "robot_rl.hardware.arms.franka:make_loop_backend",   # torque control, pylibfranka
        "ur": "robot_rl.hardware.arms.ur:make_loop_backend",           # pose servoing, ur_rtde
    },
    "robot_rl.teleop": {
        "spacemouse": "robot_rl.hardware.teleop.spacemouse:SpaceMouse",
        "keyboard": "robot_rl.hardware.teleop.keyboard:KeyboardTeleop",
        "evdev_keyboard": "robot_rl.hardware.teleop.evdev:EvdevKeyboard",   # Linux /dev/input/event*
        "gamepad": "robot_rl.hardware.teleop.gamepad:GamepadTeleop",
        "evdev_gamepad": "robot_rl.hardware.teleop.evdev_gamepad:EvdevGamepad",   # Linux /dev/input/event*
    },
}


def _group(group: str) -> str:
    full = group if group.startswith("robot_rl.") else f"robot_rl.{group}"
    if full not in GROUPS:
        raise HardwareError(f"unknown device group {group!r}; expected one of {', '.join(GROUPS)}")
    return full


def _plugins(group: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for ep in entry_points(group=group):
        found.setdefault(ep.name, []).append(ep)
    return found


def available(group: str) -> dict[str, str]:
    """name -> "module:attribute" for every device of a group (built-ins, then plug-ins)."""
    group = _group(group)
    names = dict(BUILTINS[group])
    for name, eps in _plugins(group).items():
        names.setdefault(name, eps[0].value)
    return names


def _load(target: str, what: str):
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise HardwareError(f"{what}: cannot load {target!r} ({type(e).__name__}: {e})") from e
    return obj


def lookup(group: str, name: str):
    """The device class (or factory) registered under `name` in `group`."""
    group = _group(group)
    if name in BUILTINS[group]:
        return _load(BUILTINS[group][name], f"{group} {name!r}")
    eps = _plugins(group).get(name, [])
    if not eps:
        raise HardwareError(
            f"no device {name!r} in {group}; available: {', '.join(sorted(available(group))) or 'none'} "
            f"(plug-ins register an entry point in the {group!r} group)"
        )
    if len(eps) > 1:
        owners = [f"{ep.value} ({ep.dist.name if ep.dist else '?'})" for ep in eps]
        raise HardwareError(f"{group} {name!r} is registered by several packages: {', '.join(owners)}")
    return _load(eps[0].value, f"{group} {name!r} from {eps[0].dist.name if eps[0].dist else 'a plug-in'}")


def create(group: str, name: str, **kwargs):
    """Instantiate a device: `create("cameras", "realsense", serial="123...", fps=30)`."""
    cls = lookup(group, name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise HardwareError(f"{_group(group)} {name!r}: bad arguments {sorted(kwargs)}: {e}") from e
