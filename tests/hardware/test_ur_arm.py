"""URArm: a position-controlled arm behind the same target interface, limits and watchdogs.

ur_rtde is replaced by tests/hardware/fakes/rtde_control.py + rtde_receive.py (same API), whose UR follows
servoL set-points with a first-order lag on a simulated 2 ms clock. The loop body for pose arms is run
synchronously here: read_state -> Controller.update_reference -> write_pose / stop_motion."""

from __future__ import annotations

import dataclasses
import logging
import math
import sys

import numpy as np
import pytest

from robot_rl.control.controller import Controller, ControllerMode, Fault
from robot_rl.control.rig import load_rig
from robot_rl.core.rotations import quat_error, quat_mul, rotvec_to_quat
from robot_rl.core.types import EETarget
from robot_rl.hardware.device_errors import MissingDependencyError

IP = "192.168.1.102"


@pytest.fixture
def ur(vendor_fakes, sim_clock):
    import fake_ur_robot

    fake_ur_robot.clock = sim_clock
    from robot_rl.hardware.arms.ur import URArm

    arm = URArm(IP, clock=sim_clock)
    arm.fake = fake_ur_robot.robot(IP)
    yield arm
    arm.close()


def controller(**limits) -> Controller:
    rig = load_rig("ur5e")
    if limits:
        rig.safety = dataclasses.replace(rig.safety, **limits)
    return rig.make_controller()


def run(arm, ctrl, clock, seconds: float) -> None:
    """The loop process's pose path at 500 Hz, synchronously."""
    for _ in range(round(seconds / ctrl.dt)):
        clock.advance(ctrl.dt)
        s = arm.read_state()
        if ctrl.update_reference(s, clock()):
            arm.write_pose(ctrl.ref_pos, ctrl.ref_quat)
        else:
            arm.stop_motion()


def servo_poses(arm) -> np.ndarray:
    return np.array([args[0] for name, args in arm.fake.calls if name == "servoL"])


def test_missing_ur_rtde_names_the_extra_to_install(monkeypatch):
    from robot_rl.hardware.arms.ur import URArm

    monkeypatch.setitem(sys.modules, "rtde_control", None)
    with pytest.raises(MissingDependencyError, match=r"pip install robot_rl\[ur\]"):
        URArm(IP)


def test_rtde_sample_converts_to_the_arm_state(ur, sim_clock):
    ur.fake.force[:] = [1.0, 2.0, 3.0, 0.1, 0.2, 0.3]
    sim_clock.advance(0.002)
    s = ur.read_state()
    np.testing.assert_allclose(s.ee_pos, [0.40, -0.10, 0.30])
    assert abs(abs(np.dot(s.ee_quat, rotvec_to_quat(np.array([math.pi, 0.0, 0.0])))) - 1.0) < 1e-12
    np.testing.assert_allclose(s.q[:6], ur.fake.q)
    assert s.q[6] == 0.0
    np.testing.assert_allclose(s.f_ext, [1.0, 2.0, 3.0, 0.1, 0.2, 0.3])
    assert s.t == sim_clock()
    t = s.t
    assert ur.read_state().t == t           # no new RTDE sample: the state does not advance


def test_pose_arm_tracks_position_and_orientation_through_servoL(ur, sim_clock):
    ctrl = controller()
    run(ur, ctrl, sim_clock, 0.05)
    s = ur.read_state()
    goal_q = quat_mul(rotvec_to_quat(np.array([0.0, 0.0, 0.2])), s.ee_quat)      # 0.2 rad about base z
    goal = s.ee_pos + np.array([0.03, 0.02, -0.02])
    for k in range(1, 6):    # a 10 Hz target stream, as from the policy runner
        a = k / 5
        assert ctrl.push_target(EETarget(sim_clock() + 0.1, s.ee_pos + a * (goal - s.ee_pos), goal_q, 0.0), sim_clock())
        run(ur, ctrl, sim_clock, 0.1)
    run(ur, ctrl, sim_clock, 0.4)
    s = ur.read_state()
    assert np.linalg.norm(s.ee_pos - goal) < 0.003
    assert np.linalg.norm(quat_error(goal_q, s.ee_quat)) < 0.01
    poses = servo_poses(ur)
    steps = np.linalg.norm(np.diff(poses[:, :3], axis=0), axis=1)
    assert steps.max() <= ctrl.limits.max_ee_speed * ctrl.dt * (1 + 1e-6)     # the speed limit, per set-point
    name, args = next(c for c in ur.fake.calls if c[0] == "servoL")
    assert args[3:] == (0.002, 0.1, 300.0)               # servo time, lookahead, gain from the rig file


def test_targets_outside_the_workspace_are_clipped_into_the_box(ur, sim_clock):
    ctrl = controller(workspace_min=(-0.6, -0.6, 0.28))
    run(ur, ctrl, sim_clock, 0.05)
    s = ur.read_state()
    assert ctrl.push_target(EETarget(sim_clock() + 0.2, s.ee_pos - [0.0, 0.0, 0.04], s.ee_quat, 0.0), sim_clock())
    run(ur, ctrl, sim_clock, 1.0)
    assert servo_poses(ur)[:, 2].min() >= 0.28 - 1e-9
    assert ur.read_state().ee_pos[2] == pytest.approx(0.28, abs=1e-3)
    assert ctrl.counts[Fault.TARGET_OUTSIDE_WORKSPACE] == 1


def test_a_jumping_target_is_rejected_and_the_arm_stays(ur, sim_clock):
    ctrl = controller()
    run(ur, ctrl, sim_clock, 0.05)
    s = ur.read_state()
    start = s.ee_pos.copy()
    assert not ctrl.push_target(EETarget(sim_clock() + 0.2, start + [0.10, 0.0, 0.0], s.ee_quat, 0.0), sim_clock())
    run(ur, ctrl, sim_clock, 0.5)
    assert ctrl.counts[Fault.TARGET_JUMP] == 1
    np.testing.assert_allclose(ur.read_state().ee_pos, start, atol=1e-9)


def test_stale_targets_make_the_arm_hold_its_pose(ur, sim_clock):
    ctrl = controller()
    run(ur, ctrl, sim_clock, 0.05)
    s = ur.read_state()
    ctrl.push_target(EETarget(sim_clock() + 0.5, s.ee_pos + [0.04, 0.0, 0.0], s.ee_quat, 0.0), sim_clock())
    run(ur, ctrl, sim_clock, 0.2)                   # moving; then the target stream stops
    assert int(ctrl.mode) == ControllerMode.TRACKING
    run(ur, ctrl, sim_clock, 0.6)
    assert int(ctrl.mode) == ControllerMode.HOLD and ctrl.counts[Fault.TARGET_TIMEOUT] == 1
    held = ur.read_state().ee_pos.copy()
    n = len(servo_poses(ur))
    run(ur, ctrl, sim_clock, 0.5)
    np.testing.assert_allclose(ur.read_state().ee_pos, held, atol=1e-4)    # at rest, short of the goal
    assert held[0] < s.ee_pos[0] + 0.04 - 0.005
    assert len(servo_poses(ur)) == n + 250          # still streaming: the hold pose, every 2 ms


def test_estop_stops_servoing_once_and_reset_resumes_from_the_measured_pose(ur, sim_clock):
    ctrl = controller()
    run(ur, ctrl, sim_clock, 0.05)
    s = ur.read_state()
    ctrl.push_target(EETarget(sim_clock() + 0.4, s.ee_pos + [0.04, 0.0, 0.0], s.ee_quat, 0.0), sim_clock())
    run(ur, ctrl, sim_clock, 0.15)
    ctrl.estop("operator e-stop")
    n = len(servo_poses(ur))
    run(ur, ctrl, sim_clock, 0.3)
    names = [c[0] for c in ur.fake.calls]
    assert names.count("servoStop") == 1 and ("servoStop", (2.0,)) in ur.fake.calls
    assert len(servo_poses(ur)) == n and names[-1] == "kickWatchdog"      # no set-point after the stop
    stopped_at = ur.read_state().ee_pos.copy()
    run(ur, ctrl, sim_clock, 0.2)
    np.testing.assert_allclose(ur.read_state().ee_pos, stopped_at)
    assert int(ctrl.mode) == ControllerMode.STOPPED and ctrl.counts[Fault.ESTOP] == 1
    ctrl.reset()
    run(ur, ctrl, sim_clock, 0.01)
    np.testing.assert_allclose(servo_poses(ur)[n][:3], stopped_at, atol=1e-9)   # re-anchored, no jump


def test_protective_stop_latches_a_controller_stop_until_cleared_and_reset(ur, sim_clock, caplog):
    ctrl = controller()
    run(ur, ctrl, sim_clock, 0.05)
    ur.fake.protective_stop = True
    with caplog.at_level(logging.WARNING):
        run(ur, ctrl, sim_clock, 0.1)
    assert int(ctrl.mode) == ControllerMode.STOPPED and ctrl.counts[Fault.STATE_STALE] == 1
    assert "the robot is protective-stopped" in caplog.text
    n = len(servo_poses(ur))
    ur.fake.protective_stop = False               # cleared on the pendant
    run(ur, ctrl, sim_clock, 0.05)
    assert "available again" in caplog.text and int(ctrl.mode) == ControllerMode.STOPPED
    ctrl.reset()
    run(ur, ctrl, sim_clock, 0.05)
    assert int(ctrl.mode) == ControllerMode.HOLD and len(servo_poses(ur)) > n


def test_a_refused_set_point_stops_for_good_with_a_clear_reason(ur, sim_clock, caplog):
    ctrl = controller()
    run(ur, ctrl, sim_clock, 0.05)
    ur.fake.program_running = False               # e.g. the program was stopped from the pendant
    with caplog.at_level(logging.ERROR):
        run(ur, ctrl, sim_clock, 0.1)
    assert "servoL returned False" in ur.failed and "restart the control loop" in ur.failed
    assert ur.failed in caplog.text
    assert int(ctrl.mode) == ControllerMode.STOPPED and ctrl.counts[Fault.STATE_STALE] == 1


def test_the_ur_stops_by_itself_when_set_points_stop_arriving(ur, sim_clock):
    ctrl = controller()
    run(ur, ctrl, sim_clock, 0.05)
    assert ("setWatchdog", (20.0,)) in ur.fake.calls
    sim_clock.advance(0.04)                       # the loop process hangs...
    assert ur.ctrl.isProgramRunning()
    sim_clock.advance(0.02)                       # ... for longer than 1 / 20 Hz
    assert not ur.ctrl.isProgramRunning()


def test_a_pose_arm_gets_exactly_the_reference_a_torque_arm_gets():
    from robot_rl.control.arm_interface import ArmState

    torque, pose = controller(), controller()
    s = ArmState(0.0, np.zeros(7), np.zeros(7), np.array([0.4, -0.1, 0.3]), np.array([0.0, 1.0, 0.0, 0.0]),
                 np.zeros((6, 7)), np.eye(7), np.zeros(7), np.zeros(7), np.zeros(7), np.zeros(6))
    t = 10.0
    for k in range(300):
        t += 0.002
        s.t = t
        if k in (5, 60):
            for c in (torque, pose):
                c.push_target(EETarget(t + 0.1, s.ee_pos + [0.02, 0.01, -0.01], s.ee_quat, 1.0), t)
        torque.tick(s, t)
        assert pose.update_reference(s, t)
        np.testing.assert_array_equal(pose.ref_pos, torque.ref_pos)
        np.testing.assert_array_equal(pose.ref_quat, torque.ref_quat)
        assert pose.gripper == torque.gripper and pose.mode == torque.mode
        s.ee_pos += 0.5 * (pose.ref_pos - s.ee_pos)         # the arm follows its reference


def test_the_stop_deceleration_is_raised_to_stop_within_max_stop_distance():
    from robot_rl.core.errors import ConfigError
    from robot_rl.hardware.arms.ur import stop_deceleration

    rig = load_rig("ur5e")                           # 0.25 m/s: the configured 2 m/s^2 stops in 21 mm
    assert stop_deceleration(rig.safety, 2.0) == 2.0
    fast = dataclasses.replace(rig.safety, max_ee_speed=0.5, state_timeout=0.02, max_stop_distance=0.05)
    a = stop_deceleration(fast, 2.0)                 # 10 mm travelled before the stale state is noticed
    assert a == pytest.approx(0.5 ** 2 / (2 * 0.04))
    assert 0.5 * 0.02 + 0.5 ** 2 / (2 * a) == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="max_stop_distance=0.05 m is covered before a stale state"):
        stop_deceleration(dataclasses.replace(fast, state_timeout=0.2), 2.0)
