"""Rotation math against independent constructions."""

import numpy as np

from robot_rl.core.rotations import (mat_to_quat, quat_error, quat_mul, quat_slerp, quat_to_mat,
                                     quat_to_rotvec, rotvec_to_quat)


def random_quats(n, seed=0):
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_rotvec_round_trip():
    v = np.random.default_rng(1).uniform(-3, 3, size=(100, 3))
    v = v[np.linalg.norm(v, axis=1) < np.pi - 1e-3]
    np.testing.assert_allclose(quat_to_rotvec(rotvec_to_quat(v)), v, atol=1e-9)


def test_matrix_round_trip_and_composition():
    q = random_quats(50)
    np.testing.assert_allclose(np.abs(np.sum(mat_to_quat(quat_to_mat(q)) * q, axis=1)), 1.0, atol=1e-9)
    a, b = random_quats(20, 2), random_quats(20, 3)
    np.testing.assert_allclose(quat_to_mat(quat_mul(a, b)), quat_to_mat(a) @ quat_to_mat(b), atol=1e-9)


def test_quat_error_takes_shortest_way_regardless_of_sign():
    q = rotvec_to_quat(np.array([0.0, 0.0, 0.3]))
    target = rotvec_to_quat(np.array([0.0, 0.0, 0.5]))
    np.testing.assert_allclose(quat_error(target, q), [0, 0, 0.2], atol=1e-12)
    np.testing.assert_allclose(quat_error(-target, q), [0, 0, 0.2], atol=1e-12)


def test_slerp_midpoint():
    q0 = np.array([1.0, 0, 0, 0])
    q1 = rotvec_to_quat(np.array([0, 0, 1.0]))
    np.testing.assert_allclose(quat_to_rotvec(quat_slerp(q0, q1, 0.5)), [0, 0, 0.5], atol=1e-9)
    np.testing.assert_allclose(quat_slerp(q0, -q1, 1.0) * np.sign(quat_slerp(q0, -q1, 1.0)[0]), q1, atol=1e-9)
