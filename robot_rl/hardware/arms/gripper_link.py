"""A gripper driven from the control loop without ever blocking it.

The loop calls `command(closure)` every tick; gripper drivers answer in milliseconds (Robotiq over
Modbus) to seconds (Franka Hand moves block until done). `GripperLink` keeps the newest closure and a
worker thread sends it when it changed by more than `deadband`, and polls the opening between moves.
A driver error is logged once per kind and counted; the loop is never interrupted by the gripper.

Rig config (`gripper:` of configs/robot/<rig>.yaml), built by `make_gripper_link`:
    type: none | robotiq | franka_hand | <a plug-in of the robot_rl.grippers registry group>
    robotiq:     port, model (2f85 | 2f140), device_id, force (N), speed (m/s), timeout_s
    franka_hand: force (N), speed (m/s), max_width (m); connects to the arm's FCI address
Closure: 0 = fully open .. 1 = fully closed (force limited), as `robot_rl.control.GripperBackend`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

from robot_rl.hardware.device_errors import HardwareError, require

log = logging.getLogger(__name__)


@dataclass
class GripperDriver:
    """What the link needs from a device: `move(closure)` (may block), `width()` in metres (0 closed ..
    `max_width` open), `close()`."""

    name: str
    move: Callable[[float], None]
    width: Callable[[], float]
    close: Callable[[], None]
    max_width: float


class GripperLink:
    """Non-blocking `command(closure)` / `width` in front of a (blocking) gripper driver.

    The opening measured at start sets `closure`, which the loop adopts as its first command: starting
    the loop never moves the fingers (an object held stays held)."""

    def __init__(self, driver: GripperDriver, deadband: float = 0.02, poll_s: float = 0.05) -> None:
        self.driver = driver
        self.deadband = float(deadband)
        self.poll_s = float(poll_s)
        self.errors = 0
        self._logged: set[str] = set()
        ok, w = self._call("width", driver.width)
        self.width = float(w) if ok else driver.max_width     # last measured opening (m)
        self.closure = min(max(1.0 - self.width / driver.max_width, 0.0), 1.0)
        self._wanted: float | None = None
        self._sent: float | None = self.closure
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"gripper-{driver.name}", daemon=True)
        self._thread.start()

    def command(self, closure: float) -> None:
        """Ask for `closure` (0 open .. 1 closed); returns at once. Small changes (< deadband) are ignored."""
        c = min(max(float(closure), 0.0), 1.0)
        last = self._wanted if self._wanted is not None else self._sent   # the newest request, sent or not
        if last is None or abs(c - last) > self.deadband:
            self._wanted = c
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            wanted = self._wanted
            if wanted is not None and wanted != self._sent:
                ok, _ = self._call("move", self.driver.move, wanted)
                if ok:
                    self._sent = wanted
            ok, w = self._call("width", self.driver.width)
            if ok:
                self.width = float(w)

    def _call(self, what: str, fn, *args) -> tuple[bool, object]:
        try:
            return True, fn(*args)
        except Exception as e:  # the driver's own errors (HardwareError, vendor exceptions): keep the loop alive
            self.errors += 1
            key = f"{what}:{type(e).__name__}"
            if key not in self._logged:
                self._logged.add(key)
                log.error("gripper %s: %s failed (%s: %s); the arm keeps running, the gripper command is retried",
                          self.driver.name, what, type(e).__name__, e)
            return False, None

    def close(self) -> None:
        """Stop the worker, then let the driver leave the gripper in its safe state."""
        self._stop.set()
        self._wake.set()
        self._thread.join(5.0)
        try:
            self.driver.close()
        except Exception as e:
            log.error("gripper %s: close failed (%s: %s)", self.driver.name, type(e).__name__, e)


def _robotiq(cfg: dict) -> GripperDriver:
    from robot_rl.hardware.robotiq import RobotiqGripper

    if "port" not in cfg:
        raise HardwareError("gripper type robotiq: missing `port` (e.g. /dev/robotiq, see hardware/udev)")
    g = RobotiqGripper(str(cfg["port"]), model=str(cfg.get("model", "2f85")), slave_id=int(cfg.get("device_id", 9)),
                       timeout_s=float(cfg.get("timeout_s", 0.1)))
    g.connect()
    stroke = g.model.stroke_m
    force, speed = cfg.get("force"), cfg.get("speed")

    def move(closure: float) -> None:
        g.move_width((1.0 - closure) * stroke, speed_mps=speed, force_n=force)

    return GripperDriver(f"robotiq {cfg['port']}", move, lambda: g.width_m(g.read().position), g.disconnect, stroke)


def _franka_hand(cfg: dict, ip: str) -> GripperDriver:
    pf = require("pylibfranka", "franka")
    g = pf.Gripper(ip)
    max_width = float(cfg.get("max_width", 0.08))
    force, speed = float(cfg.get("force", 40.0)), float(cfg.get("speed", 0.1))

    def move(closure: float) -> None:
        width = (1.0 - closure) * max_width
        if closure >= 0.5:   # closing: a grasp holds `force` on whatever stops the fingers
            g.grasp(width, speed, force, max_width, max_width)
        else:
            g.move(width, speed)

    return GripperDriver(f"franka_hand {ip}", move, lambda: float(g.read_once().width), g.stop, max_width)


def make_gripper_link(cfg: dict | None, arm_address: str = "") -> GripperLink | None:
    """The rig's gripper behind a GripperLink, or None for `type: none` / no gripper section."""
    cfg = dict(cfg or {})
    kind = str(cfg.get("type", "none"))
    if kind == "none":
        return None
    if kind == "robotiq":
        driver = _robotiq(cfg)
    elif kind == "franka_hand":
        driver = _franka_hand(cfg, arm_address)
    else:
        from robot_rl.hardware.registry import create

        params = {k: v for k, v in cfg.items() if k not in ("type", "max_width")}
        dev = create("grippers", kind, **params)   # a plug-in with command(closure), width and disconnect()
        driver = GripperDriver(kind, dev.command, lambda: float(dev.width), dev.disconnect,
                               float(cfg.get("max_width", 0.08)))
    return GripperLink(driver)


class ArmGripper:
    """Mixin of arm backends whose gripper (a GripperLink, or None) is `self.gripper`: the loop's
    `closure` at start and `command(closure)` every tick."""

    gripper: GripperLink | None = None

    @property
    def closure(self) -> float:
        """The gripper closure measured at start (the loop's first command: starting moves nothing)."""
        return self.gripper.closure if self.gripper is not None else 0.0

    def command(self, closure: float) -> None:
        if self.gripper is not None:
            self.gripper.command(closure)


def with_gripper(cfg: dict | None, arm_address: str, build: Callable[[GripperLink | None], object]):
    """`build(gripper link)` for a loop factory; the gripper is released again if building the arm fails."""
    gripper = make_gripper_link(cfg, arm_address)
    try:
        return build(gripper)
    except Exception:
        if gripper is not None:
            gripper.close()
        raise
