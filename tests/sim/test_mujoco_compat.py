"""robot_rl.sim.mujoco_compat: the twin's MuJoCo calls give the same model and numbers on MuJoCo 3.3 and 4.x
(scripts/test.sh runs this file, the twin and the controller on mujoco==3.3.0 too)."""

import mujoco
import numpy as np

from robot_rl.sim.mujoco_compat import compile_spec, full_inertia

CELL = """<mujoco><worldbody><body name="link"><joint name="j" type="hinge" axis="0 0 1"/>
<geom type="capsule" size="0.05" fromto="0 0 0 0.3 0 0" mass="1"/></body></worldbody>
<keyframe><key name="home" qpos="0.7"/></keyframe></mujoco>"""


def cell_with_object():
    spec = mujoco.MjSpec.from_string(CELL)
    box = spec.worldbody.add_body(name="box", pos=[0.5, 0.1, 0.2])
    box.add_freejoint()
    box.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.02] * 3, mass=0.1)
    return spec


def test_a_keyframe_of_the_arm_alone_is_padded_with_the_added_objects_qpos0():
    """MuJoCo 3 refuses a keyframe shorter than qpos ("invalid qpos size"); 4 pads it with qpos0."""
    model = compile_spec(cell_with_object())
    assert model.nq == 8
    np.testing.assert_allclose(model.key_qpos[0], [0.7, 0.5, 0.1, 0.2, 1, 0, 0, 0])


def test_full_inertia_is_the_dense_mass_matrix():
    model = compile_spec(cell_with_object())
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, 0)
    mujoco.mj_forward(model, data)
    M = np.zeros((model.nv, model.nv))
    full_inertia(model, data, M)
    columns = np.zeros((model.nv, model.nv))
    for i in range(model.nv):   # M e_i, column by column, through the sparse product
        e, col = np.zeros(model.nv), np.zeros(model.nv)
        e[i] = 1.0
        mujoco.mj_mulM(model, data, col, e)
        columns[:, i] = col
    np.testing.assert_allclose(M, columns, atol=1e-12)
    assert M[0, 0] > 0.03 and np.allclose(M, M.T)
