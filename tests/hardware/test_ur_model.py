"""hardware/ur5e/ur5e.xml: the MJCF chain reproduces UR's published DH kinematics of the UR5e."""

from __future__ import annotations

import math

import mujoco
import numpy as np

from robot_rl.control.rig import load_rig

# UR5e DH table (Universal Robots, "DH parameters for calculations of kinematics and dynamics")
A = [0.0, -0.425, -0.3922, 0.0, 0.0, 0.0]
D = [0.1625, 0.0, 0.0, 0.1333, 0.0997, 0.0996]
ALPHA = [math.pi / 2, 0.0, 0.0, math.pi / 2, -math.pi / 2, 0.0]


def dh_flange(q) -> np.ndarray:
    T = np.eye(4)
    for qi, a, d, al in zip(q, A, D, ALPHA):
        ct, st, ca, sa = math.cos(qi), math.sin(qi), math.cos(al), math.sin(al)
        T = T @ np.array([[ct, -st * ca, st * sa, a * ct], [st, ct * ca, -ct * sa, a * st], [0, sa, ca, d], [0, 0, 0, 1]])
    return T


def test_flange_pose_matches_the_dh_table_across_random_configurations():
    model = mujoco.MjModel.from_xml_path(str(load_rig("ur5e").model))
    data = mujoco.MjData(model)
    flange = model.site("flange").id
    rng = np.random.default_rng(0)
    for q in [np.zeros(6)] + list(rng.uniform(-math.pi, math.pi, (20, 6))):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        T = dh_flange(q)
        np.testing.assert_allclose(data.site_xpos[flange], T[:3, 3], atol=1e-9)
        np.testing.assert_allclose(data.site_xmat[flange].reshape(3, 3), T[:3, :3], atol=1e-9)
    links = ("shoulder_link", "upper_arm_link", "forearm_link", "wrist_1_link", "wrist_2_link", "wrist_3_link")
    masses = [float(model.body(n).mass[0]) for n in links]
    assert masses == [3.761, 8.058, 2.846, 1.37, 1.3, 0.365]     # UR's table, kg
