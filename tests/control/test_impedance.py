"""ImpedanceLaw: orientation error, clipping, damping from the ratio, profile switching."""

from __future__ import annotations

import math

import numpy as np

from robot_rl.control.impedance import PROFILES, ImpedanceLaw, orientation_error
from robot_rl.control.limits import SafetyLimits
from robot_rl.control.state import ArmState
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
