"""3Dconnexion SpaceMouse over raw HID (hidapi), decoded here without any 3Dconnexion driver.

HID reports (little-endian int16, about +-350 at full deflection):
    id 1: x, y, z translation; on newer devices (SpaceMouse Compact/Wireless/Pro Wireless) also rx, ry, rz
          in the same report (13 bytes)
    id 2: rx, ry, rz rotation (older devices, SpaceNavigator)
    id 3: button bitmask (bit 0 = left button, bit 1 = right button on two-button models)
Device axes: x right, y towards the user, z down (pressing the cap). The default bindings map them to the
relative frame x forward (away from the user), y left, z up: (x, y, z) = (-y_dev, -x_dev, -z_dev), and the
same for rotations (a proper rotation, so pseudo-vectors map alike).

Deadman: the cap springs back to zero when let go, and reports older than `stale_after_s` zero the axes
(a dropped wireless link cannot leave the arm moving). With `deadman_button` set, motion also needs that
button held.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from robot_rl.core import clock
from robot_rl.hardware.device_errors import DeviceNotConnectedError, HardwareError, require
from robot_rl.hardware.teleop.bindings import AxisBinding, BoundInputs
from robot_rl.hardware.teleop.events import Action, TeleopCommand
from robot_rl.hardware.teleop.teleop_state import TeleopConfig

FULL_SCALE = 350.0
KNOWN_DEVICES = {
    (0x046D, 0xC626): "SpaceNavigator",
    (0x046D, 0xC62B): "SpaceMouse Pro",
    (0x256F, 0xC62E): "SpaceMouse Wireless (cable)",
    (0x256F, 0xC62F): "SpaceMouse Wireless (receiver)",
    (0x256F, 0xC631): "SpaceMouse Pro Wireless (cable)",
    (0x256F, 0xC632): "SpaceMouse Pro Wireless (receiver)",
    (0x256F, 0xC635): "SpaceMouse Compact",
    (0x256F, 0xC652): "3Dconnexion Universal Receiver",
}


@dataclass(frozen=True)
class SpaceMouseReport:
    """One decoded report; fields absent from it are None. Axis values in raw device counts."""

    translation: tuple[int, int, int] | None = None
    rotation: tuple[int, int, int] | None = None
    buttons: int | None = None


def decode_report(report) -> SpaceMouseReport | None:
    """Decode one raw HID input report (bytes or list of ints, report id first). Unknown ids -> None."""
    data = bytes(report)
    if not data:
        return None
    rid = data[0]
    if rid == 1 and len(data) >= 7:
        translation = struct.unpack_from("<3h", data, 1)
        rotation = struct.unpack_from("<3h", data, 7) if len(data) >= 13 else None
        return SpaceMouseReport(translation=translation, rotation=rotation)
    if rid == 2 and len(data) >= 7:
        return SpaceMouseReport(rotation=struct.unpack_from("<3h", data, 1))
    if rid == 3 and len(data) >= 2:
        return SpaceMouseReport(buttons=int.from_bytes(data[1:], "little"))
    return None


def default_bindings(deadman_button: int | None = None) -> dict:
    s = 1.0 / FULL_SCALE
    bindings = {
        "hid_x": AxisBinding("y", -s), "hid_y": AxisBinding("x", -s), "hid_z": AxisBinding("z", -s),
        "hid_rx": AxisBinding("ry", -s), "hid_ry": AxisBinding("rx", -s), "hid_rz": AxisBinding("rz", -s),
        "button_0": Action.GRIPPER_TOGGLE, "button_1": Action.INTERVENTION_TOGGLE,
    }
    if deadman_button is not None:
        bindings[f"button_{deadman_button}"] = Action.DEADMAN
    return bindings


class SpaceMouse(BoundInputs):
    """A SpaceMouse found by vendor/product id (first known device if none given) or by hidraw path.

    `hid_module` replaces the `hid` module of hidapi (tests feed recorded reports through it).
    """

    def __init__(
        self, vendor_id: int | None = None, product_id: int | None = None, path: bytes | None = None,
        deadman_button: int | None = None, bindings=None, config: TeleopConfig | None = None,
        stale_after_s: float = 0.2, n_buttons: int = 2, hid_module=None,
    ) -> None:
        if config is None:
            config = TeleopConfig(require_deadman=deadman_button is not None)
        super().__init__(default_bindings(deadman_button) if bindings is None else bindings, config, name="SpaceMouse")
        self.vendor_id, self.product_id, self.path = vendor_id, product_id, path
        self.stale_after_s, self.n_buttons = stale_after_s, n_buttons
        self._hid = hid_module
        self._device = None
        self._last_report_t: float | None = None
        self.product = None

    @property
    def is_connected(self) -> bool:
        return self._device is not None

    def connect(self) -> None:
        hid = self._hid or require("hid")
        path = self.path
        if path is None:
            candidates = [
                d for d in hid.enumerate()
                if (d["vendor_id"], d["product_id"]) in KNOWN_DEVICES
                and (self.vendor_id is None or d["vendor_id"] == self.vendor_id)
                and (self.product_id is None or d["product_id"] == self.product_id)
            ]
            if not candidates:
                raise HardwareError(
                    "no SpaceMouse found over HID (known ids: "
                    + ", ".join(f"{v:04x}:{p:04x} {n}" for (v, p), n in KNOWN_DEVICES.items())
                    + "); check the USB connection and the hidraw udev rule in docs/hardware.md"
                )
            path = candidates[0]["path"]
            self.product = KNOWN_DEVICES[(candidates[0]["vendor_id"], candidates[0]["product_id"])]
        device = hid.device()
        try:
            device.open_path(path)
        except (OSError, IOError) as e:
            raise HardwareError(f"SpaceMouse {path!r}: cannot open ({e}); check /dev/hidraw* permissions") from e
        device.set_nonblocking(True)
        self._device = device

    def disconnect(self) -> None:
        self.release_all()
        if self._device is not None:
            self._device.close()
            self._device = None

    def feed(self, report, t: float | None = None) -> None:
        """Apply one raw HID report (from the device or a recording)."""
        t = clock.now() if t is None else t
        decoded = decode_report(report)
        if decoded is None:
            return
        self._last_report_t = t
        for names, values in ((("hid_x", "hid_y", "hid_z"), decoded.translation),
                              (("hid_rx", "hid_ry", "hid_rz"), decoded.rotation)):
            if values is not None:
                for name, v in zip(names, values):
                    self.set_value(name, v, t)
        if decoded.buttons is not None:
            for i in range(self.n_buttons):
                self.set_value(f"button_{i}", (decoded.buttons >> i) & 1, t)

    def read(self, t: float | None = None) -> TeleopCommand:
        """Drain pending HID reports, then return the command for the time since the previous read."""
        if self._device is None:
            raise DeviceNotConnectedError("SpaceMouse is not connected; call connect() first")
        while True:
            report = self._device.read(64)
            if not report:
                break
            self.feed(report)
        t = clock.now() if t is None else t
        if self._last_report_t is not None and t - self._last_report_t > self.stale_after_s:
            self.release_all()  # silence: cap released and last report lost, or link dropped
        return super().read(t)
