"""GripperLink: the control loop commands a gripper every tick without ever waiting for it.

The Robotiq path runs the unchanged RobotiqGripper driver over a socat pty pair against the emulator."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from robot_rl.core.clock import now
from robot_rl.hardware.arms.gripper_link import GripperDriver, GripperLink, make_gripper_link
from robot_rl.hardware.emulators.robotiq_emulator import RobotiqEmulator
from robot_rl.hardware.device_errors import HardwareError


def wait_for(cond, timeout: float = 3.0) -> bool:
    # the link publishes width by polling the device; there is no event to await but the value
    deadline = now() + timeout
    while not cond():
        if now() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_robotiq_closes_and_reports_its_width_through_the_link(pty_pair):
    pytest.importorskip("serial", reason="pyserial not installed (pip install robot_rl[hardware])")
    with RobotiqEmulator(pty_pair[0], activation_time_s=0.02, time_scale=20.0) as emu:
        link = make_gripper_link({"type": "robotiq", "port": pty_pair[1], "model": "2f85", "force": 40.0,
                                  "speed": 0.1, "timeout_s": 0.5})
        try:
            assert link.closure == 0.0 and link.width == pytest.approx(0.085)   # measured open: nothing sent
            sent = len(emu.commands)
            link.command(0.01)                      # inside the deadband: no Modbus command
            link.command(1.0)
            assert wait_for(lambda: link.width < 0.001)
            assert len(emu.commands) == sent + 1 and emu.commands[-1]["position"] == 255
        finally:
            link.close()


def test_command_returns_while_the_driver_is_still_moving():
    release = threading.Event()
    moves = []

    def slow_move(closure: float) -> None:      # a Franka Hand grasp blocks until the fingers stop
        moves.append(closure)
        release.wait(5.0)

    link = GripperLink(GripperDriver("slow", slow_move, lambda: 0.08, lambda: None, 0.08))
    try:
        t0 = now()
        link.command(1.0)
        assert wait_for(lambda: moves == [1.0])
        link.command(0.0)                       # queued behind the running move, returns at once
        assert now() - t0 < 1.0 and not release.is_set()
        release.set()
        assert wait_for(lambda: moves == [1.0, 0.0])
    finally:
        release.set()
        link.close()


def test_driver_errors_are_logged_once_and_never_reach_the_loop(caplog):
    def broken(closure: float) -> None:
        raise HardwareError("/dev/robotiq: no response within 100 ms from slave 9")

    link = GripperLink(GripperDriver("broken", broken, lambda: 0.08, lambda: None, 0.08), poll_s=0.005)
    try:
        with caplog.at_level(logging.ERROR):
            for c in (1.0, 0.0, 1.0):
                link.command(c)
                assert wait_for(lambda: link.errors >= 1)
            assert wait_for(lambda: link.errors >= 3)
        assert caplog.text.count("gripper broken: move failed (HardwareError") == 1
    finally:
        link.close()


def test_no_gripper_section_means_no_link_and_unknown_types_are_refused():
    assert make_gripper_link({"type": "none"}) is None and make_gripper_link(None) is None
    with pytest.raises(HardwareError, match="no device 'vacuum' in robot_rl.grippers"):
        make_gripper_link({"type": "vacuum"})
