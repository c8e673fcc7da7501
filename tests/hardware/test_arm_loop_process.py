"""Real-arm backends inside the unchanged control loop process, named by a rig file.

The spawned loop process imports the vendor stand-ins from tests/hardware/fakes through PYTHONPATH,
exactly as it would import an installed pylibfranka / ur_rtde."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from robot_rl.control import loop as loop_module
from robot_rl.control.controller import ControllerMode, Fault
from robot_rl.control.loop import ControlLoopProcess
from robot_rl.control.rig import load_rig
from robot_rl.core.clock import now
from robot_rl.core.types import EETarget
from robot_rl.hardware.arms import franka, ur


def rig_for(name: str, **arm):
    raw = load_rig(name).raw
    raw["control"]["safety"]["state_timeout"] = 0.1
    raw["gripper"] = {"type": "none"}
    raw["arm"].update(arm)
    return load_rig(raw)


def test_rig_backend_names_resolve_through_the_hardware_registry():
    assert loop_module._backend_factory("franka") is franka.make_loop_backend
    assert loop_module._backend_factory("ur") is ur.make_loop_backend
    with pytest.raises(ValueError, match=r"'kuka': unknown; known \['twin', 'franka', 'ur'\]"):
        loop_module._backend_factory("kuka")


def test_refused_realtime_priority_is_warned_once_and_recorded(monkeypatch, caplog):
    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    with caplog.at_level(logging.WARNING, logger="robot_rl.control.loop"):
        status = loop_module._go_realtime(80)
    assert status == loop_module.REALTIME_REFUSED
    assert len(caplog.records) == 1 and "SCHED_FIFO priority 80 refused" in caplog.text
    assert "rtprio" in caplog.text and "realtime_priority: 0" in caplog.text
    caplog.clear()
    assert loop_module._go_realtime(0) == loop_module.REALTIME_OFF and not caplog.records


def test_franka_backend_runs_the_impedance_loop_process_and_latches_a_stop_on_a_network_error(
        vendor_fakes, tmp_path, monkeypatch):
    fail = tmp_path / "network_down"
    monkeypatch.setenv("FAKE_FRANKA_FAIL_FILE", str(fail))
    with ControlLoopProcess(rig_for("franka_fr3", realtime="ignore")) as lp:
        assert lp.realtime_status in ("granted", "refused") and lp.realtime == (lp.realtime_status == "granted")
        lp.set_profile("precise")
        s = lp.wait_ticks(50)
        assert int(s.mode) == ControllerMode.HOLD and not lp.torch_loaded
        goal = s.ee_pos + np.array([0.0, 0.04, 0.0])
        lp.push_target(EETarget(now() + 0.3, goal, s.ee_quat.copy(), 0.0))
        s = lp.wait_ticks(900)
        assert np.linalg.norm(s.ee_pos - goal) < 0.01
        fail.touch()
        s = lp.wait_ticks(300)
        assert int(s.mode) == ControllerMode.STOPPED and s.counts[Fault.STATE_STALE] == 1


def test_ur_backend_streams_the_reference_from_the_loop_process(vendor_fakes):
    with ControlLoopProcess(rig_for("ur5e", ip="127.0.0.1")) as lp:
        s = lp.wait_ticks(25)
        assert int(s.mode) == ControllerMode.HOLD
        goal = s.ee_pos + np.array([0.03, 0.0, 0.0])
        lp.push_target(EETarget(now() + 0.2, goal, s.ee_quat.copy(), 0.0))
        s = lp.wait_ticks(400)                       # 0.8 s at 500 Hz
        assert np.linalg.norm(s.ee_pos - goal) < 0.005
        assert int(s.mode) == ControllerMode.HOLD and s.counts[Fault.TARGET_TIMEOUT] == 1   # stream ended: hold
        np.testing.assert_allclose(s.tau, 0.0)      # a pose arm is never sent torques
        lp.estop()
        s = lp.wait_ticks(10)
        assert int(s.mode) == ControllerMode.STOPPED and s.counts[Fault.ESTOP] == 1
