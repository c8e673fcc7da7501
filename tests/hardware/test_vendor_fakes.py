"""The vendor stand-ins in tests/hardware/fakes offer exactly the API the arm adapters call, and, where
the real pylibfranka / ur_rtde is installed (`pip install robot_rl[franka]` / `[ur]`), so does the real
library: the fakes cannot drift away from the vendors' names unnoticed. With the real libraries, an
unreachable robot goes through the vendor's own connection code to our error message."""

from __future__ import annotations

import importlib
import os
import sys

import pytest

# every vendor name robot_rl.hardware.arms uses: module -> {class or "" (module level): attributes}
USED = {
    "pylibfranka": {
        "": ["Robot", "RealtimeConfig", "Torques", "Gripper", "FrankaException", "NetworkException",
             "ControlException"],
        "Robot": ["start_torque_control", "load_model", "stop", "set_collision_behavior"],
        "ActiveControlBase": ["readOnce", "writeOnce"],
        "Model": ["mass", "coriolis", "gravity", "zero_jacobian"],
        "RobotState": ["q", "dq", "tau_J", "O_T_EE", "O_F_ext_hat_K", "current_errors", "last_motion_errors"],
        "Torques": ["tau_J", "motion_finished"],
        "Gripper": ["grasp", "move", "read_once", "stop"],
        "GripperState": ["width"],
        "RealtimeConfig": ["kEnforce", "kIgnore"],
    },
    "rtde_control": {
        "RTDEControlInterface": ["servoL", "servoStop", "stopL", "stopScript", "reuploadScript", "isProgramRunning",
                                 "setWatchdog", "kickWatchdog", "setTcp", "disconnect"],
    },
    "rtde_receive": {
        "RTDEReceiveInterface": ["isConnected", "isEmergencyStopped", "isProtectiveStopped", "getTimestamp",
                                 "getActualTCPPose", "getActualQ", "getActualQd", "getActualTCPForce", "disconnect"],
    },
}


def missing(module) -> list[str]:
    out = []
    for cls, names in USED[module.__name__].items():
        owner = getattr(module, cls, None) if cls else module
        for name in names:
            if owner is None or not hasattr(owner, name):
                out.append(f"{cls or module.__name__}.{name}")
    return out


def load_real(name: str):
    """The installed vendor module, never the fake (which only the vendor_fakes fixture puts on the path)."""
    fakes = os.path.join(os.path.dirname(__file__), "fakes")
    if any(os.path.abspath(p) == fakes for p in sys.path):
        pytest.skip("the fakes are on sys.path")
    try:
        return importlib.import_module(name)
    except ImportError as e:
        pytest.skip(f"{name} is not installed ({e})")


@pytest.mark.parametrize("name", sorted(USED))
def test_the_fakes_offer_every_name_the_adapters_use(vendor_fakes, name):
    assert missing(importlib.import_module(name)) == []


@pytest.mark.parametrize("name", sorted(USED))
def test_the_installed_vendor_library_offers_every_name_the_adapters_use(name):
    assert missing(load_real(name)) == []


def test_an_unreachable_franka_is_reported_through_the_real_pylibfranka():
    load_real("pylibfranka")
    from robot_rl.hardware.arms.franka import FrankaArm
    from robot_rl.hardware.device_errors import HardwareError

    with pytest.raises(HardwareError, match=r"franka 127.0.0.1: cannot connect \(NetworkException: .*FCI"):
        FrankaArm("127.0.0.1", realtime="ignore")        # nothing serves FCI here: connection refused


def test_an_unreachable_ur_is_reported_through_the_real_ur_rtde():
    load_real("rtde_receive")
    from robot_rl.hardware.arms.ur import URArm
    from robot_rl.hardware.device_errors import HardwareError

    with pytest.raises(HardwareError, match=r"ur 127.0.0.1: cannot connect over RTDE \(.*30004"):
        URArm("127.0.0.1")
