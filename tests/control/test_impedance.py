"""ImpedanceLaw: orientation error, clipping, damping from the ratio, profile switching."""

from __future__ import annotations

import math

import numpy as np

from robot_rl.control.impedance import PROFILES, ImpedanceLaw, orientation_error
from robot_rl.control.limits import SafetyLimits
from robot_rl.control.arm_interface import ArmState
from robot_rl.core.rotations import quat_error, rotvec_to_quat


def _state(ee_pos=(0.4, 0, 0.3), ee_quat=(1, 0, 0, 0), J=None):
    J = np.hstack([np.eye(6), np.zeros((6, 1))]) if J is None else J
    z7 = np.zeros(7)
    return ArmState(0.0, z7.copy(), z7.copy(), np.array(ee_pos, float), np.array(ee_quat, float), J, np.eye(7),
                    z7.copy(), z7.copy(), z7.copy(), np.zeros(6))


def test_orientation_error_is_the_same_for_q_and_minus_q():
    q = rotvec_to_quat(np.array([0.1, -0.2, 0.05]))
    qd = np.array([1.0, 0, 0, 0])
    a, b = np.zeros(6), np.zeros(6)
    orientation_error(q, qd, a)
    orientation_error(-q, qd, b)
    np.testing.assert_allclose(a[3:], b[3:], atol=1e-12)
    np.testing.assert_allclose(a[3:], [0.1, -0.2, 0.05], atol=1e-9)


def test_orientation_error_matches_core_rotations():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q, qd = rotvec_to_quat(rng.normal(size=3)), rotvec_to_quat(rng.normal(size=3))
        e = np.zeros(6)
        orientation_error(q, qd, e)
        np.testing.assert_allclose(e[3:], -quat_error(qd, q), atol=1e-9)


def test_pose_error_is_clipped_per_axis_so_the_spring_force_is_bounded():
    law = ImpedanceLaw(PROFILES["precise"], np.zeros(7), SafetyLimits(max_pos_error=0.01, max_rot_error=0.05))
    tau = np.zeros(7)
    law.compute(_state(ee_pos=(0.9, 0, 0.3)), np.array([0.4, 0, 0.3]), np.array([1.0, 0, 0, 0]), np.zeros(6), tau)
    assert law.error[0] == 0.01
    assert math.isclose(tau[0], -2000.0 * 0.01, rel_tol=1e-6)           # J = I: tau_x = -K * clip


def test_damping_follows_the_damping_ratio():
    law = ImpedanceLaw(PROFILES["compliant"], np.zeros(7), SafetyLimits())
    np.testing.assert_allclose(law.D[:3], 2 * math.sqrt(200.0))
    np.testing.assert_allclose(law.D[3:], 2 * math.sqrt(20.0))


def test_switching_profile_changes_gains_at_run_time():
    law = ImpedanceLaw(PROFILES["compliant"], np.zeros(7), SafetyLimits())
    law.set_profile(PROFILES["precise"])
    assert law.K[0] == 2000.0 and law.K[3] == 150.0


def test_velocity_error_damping_vanishes_when_tracking_the_reference_velocity():
    law = ImpedanceLaw(PROFILES["precise"], np.zeros(7), SafetyLimits())
    s = _state()
    s.dq[:3] = [0.1, 0.0, 0.0]
    tau = np.zeros(7)
    law.compute(s, s.ee_pos.copy(), s.ee_quat.copy(), np.array([0.1, 0, 0, 0, 0, 0]), tau)
    assert abs(tau[0]) < 1e-3          # only the null-space damping leaks through the damped pseudo-inverse


def test_in_contact_the_push_into_the_surface_is_bounded_by_max_contact_force():
    L = SafetyLimits()
    law = ImpedanceLaw(PROFILES["precise"], np.zeros(7), L)
    tau = np.zeros(7)
    below = np.array([0.4, 0.0, 0.25])                                   # reference 5 cm into a surface
    law.compute(_state(), below, np.array([1.0, 0, 0, 0]), np.zeros(6), tau)
    assert math.isclose(tau[2], -2000.0 * L.max_pos_error)               # free space: the clipped spring, 60 N
    s = _state()
    s.f_ext[:3] = [3.0, 0.0, 50.0]                                       # the surface pushes back (and sideways)
    law.compute(s, below, np.array([1.0, 0, 0, 0]), np.zeros(6), tau)
    n = s.f_ext[:3] / np.linalg.norm(s.f_ext[:3])
    assert math.isclose(-float(tau[:3] @ n), L.max_contact_force, rel_tol=1e-9)   # into the surface: 30 N


def test_a_tcp_faster_than_the_speed_guard_is_not_pushed_further_but_braked():
    L = SafetyLimits()
    law = ImpedanceLaw(PROFILES["precise"], np.zeros(7), L)
    s = _state()
    s.dq[:3] = [0.6, 0.0, 0.0]                                           # J = I: TCP at 0.6 m/s along x
    tau = np.zeros(7)
    law.compute(s, s.ee_pos + [0.03, 0.0, 0.0], s.ee_quat.copy(), np.array([0.5, 0, 0, 0, 0, 0]), tau)
    assert math.isclose(tau[0], -L.ee_speed_damping * (0.6 - L.ee_speed_guard * L.max_ee_speed), abs_tol=1e-3)
    s.dq[:6] = [0.0, 0.0, 0.0, 0.0, 0.0, 2.0]                            # 2 rad/s about z
    law.compute(s, s.ee_pos.copy(), rotvec_to_quat(np.array([0.0, 0.0, 0.1])), np.array([0, 0, 0, 0, 0, 2.0]), tau)
    assert tau[5] < 0.0                                                  # braked, although the spring pulls +z


def test_a_tcp_heading_for_a_workspace_face_too_fast_to_stop_there_is_braked():
    L = SafetyLimits()
    law = ImpedanceLaw(PROFILES["precise"], np.zeros(7), L)
    s = _state(ee_pos=(0.4, 0.0, L.workspace_min[2] + 0.01))            # 1 cm above the floor ...
    s.dq[2] = -0.3                                                       # ... at 0.3 m/s: can stop from 0.2 m/s
    tau = np.zeros(7)
    law.compute(s, s.ee_pos - [0.0, 0.0, 0.02], s.ee_quat.copy(), np.array([0, 0, -0.3, 0, 0, 0]), tau)
    v_stop = math.sqrt(2 * L.boundary_deceleration * 0.01)
    assert math.isclose(tau[2], L.ee_speed_damping * (0.3 - v_stop), abs_tol=1e-3)   # push removed, braked
