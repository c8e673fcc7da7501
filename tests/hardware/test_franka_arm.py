"""FrankaArm: the 1 kHz impedance loop on a Franka through pylibfranka's torque interface.

The vendor library is replaced by tests/hardware/fakes/pylibfranka.py (same API; its robot is the MuJoCo
twin, with the firmware's torque-discontinuity reflex), so everything on our side of the library runs:
state conversion, the controller's law and limits, the hardware torque guard, failure handling."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from robot_rl.control.controller import ControllerMode, Fault
from robot_rl.control.rig import load_rig
from robot_rl.core.errors import ConfigError
from robot_rl.hardware.device_errors import MissingDependencyError


@pytest.fixture
def franka(vendor_fakes):
    from robot_rl.hardware.arms.franka import FrankaArm

    arm = FrankaArm("172.16.0.2", realtime="ignore")
    arm.clock = lambda: 100.0 + arm.robot.fake_sim_time     # the robot's 1 ms ticks are the clock
    yield arm
    arm.close()


def run(arm, ctrl, ticks: int) -> None:
    """The loop process's torque path, synchronously: read -> Controller.tick -> write."""
    for _ in range(ticks):
        s = arm.read_state()
        arm.write_torque(ctrl.tick(s, arm.clock()))


def test_missing_pylibfranka_names_the_extra_to_install(monkeypatch):
    from robot_rl.hardware.arms.franka import FrankaArm

    monkeypatch.setitem(sys.modules, "pylibfranka", None)    # import pylibfranka -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install robot_rl\[franka\]"):
        FrankaArm("172.16.0.2")


def test_robot_state_converts_to_the_arm_state_of_the_twin(franka):
    s = franka.read_state()
    truth = franka.robot._arm.state                      # what the fake robot's physics says
    np.testing.assert_allclose(s.q, truth.q)
    np.testing.assert_allclose(s.ee_pos, truth.ee_pos, atol=1e-12)
    assert abs(abs(np.dot(s.ee_quat, truth.ee_quat)) - 1.0) < 1e-9    # same rotation (q or -q)
    np.testing.assert_allclose(s.J, truth.J, atol=1e-12)               # column-major lists -> (6, 7)
    np.testing.assert_allclose(s.M, truth.M, atol=1e-12)
    np.testing.assert_allclose(s.gravity, truth.gravity)
    np.testing.assert_allclose(s.tau_measured, truth.tau_measured, atol=1e-9)   # tau_J minus gravity
    assert s.t == franka.clock()


def test_the_external_wrench_is_the_environments_force_on_the_tcp(franka, monkeypatch):
    # libfranka counts the force the robot applies to the environment as positive: pressing down on a
    # table reads O_F_ext_hat_K z < 0, while ArmState.f_ext (what the contact bound uses) reads +z
    franka.read_state()
    rs, dur = franka.control.readOnce()
    rs.O_F_ext_hat_K = [1.0, -2.0, -25.0, 0.1, 0.2, -0.3]
    monkeypatch.setattr(franka.control, "readOnce", lambda: (rs, dur))
    s = franka.read_state()
    np.testing.assert_allclose(s.f_ext, [-1.0, 2.0, 25.0, -0.1, -0.2, 0.3])


def test_impedance_law_tracks_a_target_on_the_franka_without_a_reflex(franka):
    from robot_rl.core.types import EETarget

    ctrl = load_rig("franka_fr3").make_controller(gravity_comp=False)
    ctrl.set_profile("precise")
    run(franka, ctrl, 50)
    s = franka.read_state()
    goal = s.ee_pos + np.array([0.0, 0.04, -0.02])      # 4.5 cm: inside max_target_jump (5 cm)
    assert ctrl.push_target(EETarget(franka.clock() + 0.3, goal, s.ee_quat.copy(), 0.0), franka.clock())
    run(franka, ctrl, 650)
    s = franka.read_state()
    assert np.linalg.norm(s.ee_pos - goal) < 0.01
    assert int(ctrl.mode) != ControllerMode.STOPPED and ctrl.counts[Fault.STATE_STALE] == 0
    assert franka.error is None and not franka.robot._errors
    assert franka.guard_hits == 0      # the controller's own limits keep every command inside the robot's


def test_torque_guard_saturates_and_rate_limits_what_reaches_the_robot(franka):
    franka.read_state()
    for _ in range(200):
        franka.write_torque(np.array([200.0, -200.0, 0.0, 0.0, 50.0, -50.0, 0.0]))
    writes = np.array(franka.robot.fake_writes)
    np.testing.assert_allclose(writes[0], [1.0, -1.0, 0.0, 0.0, 1.0, -1.0, 0.0])   # 1000 Nm/s from zero
    assert np.max(np.abs(np.diff(writes, axis=0))) <= 1.0 + 1e-12
    np.testing.assert_allclose(writes[-1], [87.0, -87.0, 0.0, 0.0, 12.0, -12.0, 0.0])   # datasheet limits
    assert franka.error is None and franka.guard_hits == 200


def test_non_finite_torque_ramps_to_zero_instead_of_being_sent(franka):
    franka.read_state()
    for _ in range(5):
        franka.write_torque(np.full(7, 3.0))
    franka.write_torque(np.array([np.nan] * 7))
    assert franka.robot.fake_writes[-1] == [2.0] * 7      # one 1 Nm step towards zero, no NaN on the wire


def test_communication_error_stops_the_robot_and_latches_a_controller_stop(franka, caplog):
    ctrl = load_rig("franka_fr3").make_controller(gravity_comp=False)
    run(franka, ctrl, 20)
    sent = len(franka.robot.fake_writes)
    franka.robot.fake_fail_next(sys.modules["pylibfranka"].NetworkException("libfranka: UDP receive: Timeout"))
    with caplog.at_level(logging.ERROR):
        frozen_t = franka.read_state().t
    assert "franka 172.16.0.2: readOnce failed (NetworkException: libfranka: UDP receive: Timeout)" in franka.error
    assert "restart the loop" in franka.error and franka.error in caplog.text
    assert franka.robot.fake_stops == 1
    t = franka.clock()
    for k in range(30):                     # the loop keeps ticking on the frozen state
        s = franka.read_state()
        tau = ctrl.tick(s, t + 0.001 * (k + 1))
        franka.write_torque(tau)
    assert s.t == frozen_t and len(franka.robot.fake_writes) == sent    # nothing more reaches the robot
    assert int(ctrl.mode) == ControllerMode.STOPPED and ctrl.counts[Fault.STATE_STALE] == 1


def test_rig_file_builds_the_arm_with_its_collision_thresholds_and_gripper(vendor_fakes):
    from robot_rl.hardware.arms.franka import make_loop_backend

    rig = load_rig("franka_fr3")
    arm = make_loop_backend(rig)
    try:
        lower_torque = rig.arm["collision"]["lower_torque"]
        assert list(arm.robot.fake_collision[0]) == lower_torque
        assert arm.closure == 0.0 and arm.gripper.width == pytest.approx(0.08)   # measured open: nothing moves
    finally:
        arm.close()
    with pytest.raises(ConfigError, match="runs without a task"):
        make_loop_backend(rig, task="lift")
    raw = load_rig("franka_fr3").raw
    raw["control"]["loop_hz"] = 500
    with pytest.raises(ConfigError, match="torque-controlled at 1 kHz"):
        make_loop_backend(load_rig(raw))


def test_bad_realtime_mode_is_refused_naming_the_field(vendor_fakes):
    from robot_rl.hardware.arms.franka import FrankaArm

    with pytest.raises(ConfigError, match=r"arm.realtime='soft'"):
        FrankaArm("172.16.0.2", realtime="soft")


def test_a_stale_state_makes_the_robot_stop_the_motion_itself_once(franka, caplog):
    # the host stops seeing fresh states (descheduled, a stalled link): it cannot brake an arm it cannot
    # see, so the loop asks the robot to stop (robot.stop(): the robot brakes by itself)
    ctrl = load_rig("franka_fr3").make_controller(gravity_comp=False)
    run(franka, ctrl, 20)
    s = franka.read_state()
    sent = len(franka.robot.fake_writes)
    t = franka.clock()
    with caplog.at_level(logging.ERROR):
        for k in range(40):                     # the same sample, the clock going on
            tau = ctrl.tick(s, t + 0.001 * (k + 1))
            if ctrl.brake_requested:
                franka.brake()
            else:
                franka.write_torque(tau)
    assert int(ctrl.mode) == ControllerMode.STOPPED and ctrl.counts[Fault.STATE_STALE] == 1
    assert franka.robot.fake_stops == 1                                   # asked once, not every tick
    assert "no fresh robot state" in franka.error and franka.error in caplog.text
    franka.write_torque(np.zeros(7))
    assert len(franka.robot.fake_writes) <= sent + 25                     # nothing after the stop
    assert franka.control is None
