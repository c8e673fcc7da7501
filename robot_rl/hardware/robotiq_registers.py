"""Robotiq 2F-85 / 2F-140 register map as pure functions (Modbus RTU, slave id 9 by default).

Command ("robot output") registers start at 0x03E8 and are written with FC16; status ("robot input")
registers start at 0x07D0 and are read with FC03/FC04. Each register holds two bytes, high byte first:

    command 0x03E8: [action request: rACT bit0, rGTO bit3, rATR bit4, rARD bit5] [reserved]
            0x03E9: [reserved] [rPR position request 0-255, 0 = open]
            0x03EA: [rSP speed 0-255] [rFR force 0-255]
    status  0x07D0: [gACT bit0, gGTO bit3, gSTA bits4-5, gOBJ bits6-7] [reserved]
            0x07D1: [gFLT bits0-3, kFLT bits4-7] [gPR position request echo]
            0x07D2: [gPO position 0-255] [gCU current, 10 mA per count]
(Robotiq 2F-85/2F-140 instruction manual, section "Control".)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

COMMAND_REGISTER = 0x03E8
STATUS_REGISTER = 0x07D0
N_REGISTERS = 3
DEFAULT_SLAVE_ID = 9


class ActivationStatus(IntEnum):
    """gSTA."""

    RESET = 0  # gripper is in reset (or automatic release) state
    ACTIVATING = 1
    UNUSED = 2
    ACTIVE = 3


class ObjectStatus(IntEnum):
    """gOBJ: object detection, valid while gGTO = 1."""

    MOVING = 0  # fingers moving towards the requested position, no object detected
    CONTACT_OPENING = 1  # fingers stopped by an object while opening
    CONTACT_CLOSING = 2  # fingers stopped by an object while closing (object grasped)
    AT_REQUEST = 3  # fingers at the requested position, no object detected (or object lost)


FAULTS = {
    0x00: "no fault",
    0x05: "action delayed: activation (re-activation) must complete before this action",
    0x07: "the activation bit must be set before an action",
    0x08: "maximum operating temperature exceeded (>= 85 C); wait for the gripper to cool below 80 C",
    0x09: "no communication for at least 1 second",
    0x0A: "under minimum operating voltage; automatic release in progress",
    0x0B: "automatic release in progress",
    0x0C: "internal fault; contact Robotiq support",
    0x0D: "activation fault; check that nothing obstructs the fingers",
    0x0E: "overcurrent triggered",
    0x0F: "automatic release completed",
}
MINOR_FAULTS = {0x05, 0x07}  # cleared by the next valid command; everything >= 0x08 needs a reset


def is_major_fault(fault: int) -> bool:
    """A gFLT that stops the gripper until a reset (rACT = 0, then activation)."""
    return fault != 0 and fault not in MINOR_FAULTS


@dataclass(frozen=True)
class GripperModel:
    """Stroke and limits of a Robotiq 2F model (manual, "Specifications"). SI units."""

    name: str
    stroke_m: float
    min_speed_mps: float
    max_speed_mps: float
    min_force_n: float
    max_force_n: float


MODELS = {
    "2f85": GripperModel("Robotiq 2F-85", 0.085, 0.020, 0.150, 20.0, 235.0),
    "2f140": GripperModel("Robotiq 2F-140", 0.140, 0.030, 0.250, 10.0, 125.0),
}


def _byte(name: str, value: int) -> int:
    v = int(value)
    if not 0 <= v <= 255:
        raise ValueError(f"Robotiq {name} must be in 0..255, got {value}")
    return v


def encode_command(
    activate: bool, go_to: bool, position: int = 0, speed: int = 255, force: int = 255,
    auto_release: bool = False, release_open: bool = True,
) -> tuple[int, int, int]:
    """The three command registers (0x03E8..0x03EA) for rACT, rGTO, rATR/rARD, rPR, rSP, rFR."""
    action = (int(activate) << 0) | (int(go_to) << 3) | (int(auto_release) << 4) | (int(not release_open) << 5)
    return (
        action << 8,
        _byte("position request rPR", position),
        (_byte("speed rSP", speed) << 8) | _byte("force rFR", force),
    )


@dataclass(frozen=True)
class GripperStatus:
    """Decoded status registers. position: 0 = open, 255 = closed; current in amperes; t host monotonic s."""

    activated: bool  # gACT
    go_to: bool  # gGTO
    activation: ActivationStatus  # gSTA
    object: ObjectStatus  # gOBJ
    fault: int  # gFLT
    controller_fault: int  # kFLT (controller-specific)
    requested_position: int  # gPR
    position: int  # gPO
    current_a: float  # gCU * 10 mA
    t: float = 0.0

    @property
    def is_ready(self) -> bool:
        return self.activated and self.activation == ActivationStatus.ACTIVE

    @property
    def is_moving(self) -> bool:
        return self.go_to and self.object == ObjectStatus.MOVING

    @property
    def has_object(self) -> bool:
        return self.object in (ObjectStatus.CONTACT_OPENING, ObjectStatus.CONTACT_CLOSING)

    @property
    def fault_message(self) -> str:
        return FAULTS.get(self.fault, f"unknown fault {self.fault:#04x}")

    @property
    def has_major_fault(self) -> bool:
        return is_major_fault(self.fault)


def decode_status(registers, t: float = 0.0) -> GripperStatus:
    """GripperStatus from the three status registers (0x07D0..0x07D2)."""
    if len(registers) != N_REGISTERS:
        raise ValueError(
            f"Robotiq status needs {N_REGISTERS} registers from {STATUS_REGISTER:#06x}, got {len(registers)}"
        )
    r0, r1, r2 = (int(r) for r in registers)
    status = r0 >> 8
    return GripperStatus(
        activated=bool(status & 0x01),
        go_to=bool(status & 0x08),
        activation=ActivationStatus((status >> 4) & 0x03),
        object=ObjectStatus((status >> 6) & 0x03),
        fault=(r1 >> 8) & 0x0F,
        controller_fault=(r1 >> 12) & 0x0F,
        requested_position=r1 & 0xFF,
        position=r2 >> 8,
        current_a=(r2 & 0xFF) * 0.010,
        t=t,
    )


def encode_status(
    activated: bool, go_to: bool, activation: int, obj: int, fault: int, requested_position: int, position: int,
    current_counts: int = 0, controller_fault: int = 0,
) -> tuple[int, int, int]:
    """Inverse of decode_status (used by the emulator)."""
    status = int(activated) | (int(go_to) << 3) | ((int(activation) & 3) << 4) | ((int(obj) & 3) << 6)
    return (
        status << 8,
        (((controller_fault & 0x0F) << 4 | (fault & 0x0F)) << 8) | _byte("gPR", requested_position),
        (_byte("gPO", position) << 8) | _byte("gCU", current_counts),
    )


def decode_command(registers) -> dict:
    """Fields of the three command registers (used by the emulator)."""
    r0, r1, r2 = (int(r) for r in registers)
    action = r0 >> 8
    return {
        "activate": bool(action & 0x01), "go_to": bool(action & 0x08), "auto_release": bool(action & 0x10),
        "position": r1 & 0xFF, "speed": r2 >> 8, "force": r2 & 0xFF,
    }
