"""Hardware errors. Every message names the device (port, serial number) and the offending value."""

from robot_rl.core.errors import RobotRLError


class HardwareError(RobotRLError):
    """A device is missing, misconfigured or misbehaving."""


class DeviceNotConnectedError(HardwareError):
    """A device method that needs a connection was called before `connect()` or after `disconnect()`."""


class MissingDependencyError(HardwareError, ImportError):
    """A vendor library needed by a device is not installed."""


class ModbusError(HardwareError):
    """A Modbus RTU transaction failed."""


class ModbusTimeoutError(ModbusError):
    """No (or an incomplete) response arrived within the timeout."""


class ModbusCRCError(ModbusError):
    """A response arrived with a CRC that does not match its content."""


class ModbusFrameError(ModbusError):
    """A response is malformed or does not answer the request (wrong slave, function, address)."""


class ModbusExceptionError(ModbusError):
    """The slave answered with a Modbus exception response."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class GripperFaultError(HardwareError):
    """The gripper reports a fault (gFLT) or did not reach the requested state in time."""


class CameraError(HardwareError):
    """A camera failed to open, configure or stream."""


class CameraTimeoutError(CameraError):
    """No new frame arrived within the timeout."""


class EndOfStreamError(CameraError):
    """A recorded file played to its end: no further frame will come."""


def require(module: str, extra: str = "hardware"):
    """Import a vendor module or raise MissingDependencyError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"this device needs the Python module {module!r} ({e}); install it with "
            f"`pip install robot_rl[{extra}]` (see docs/hardware.md)"
        ) from e
