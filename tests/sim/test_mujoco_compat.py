"""robot_rl.sim.mujoco_compat: the twin's MuJoCo calls give the same model and numbers on MuJoCo 3.3 and 4.x
(scripts/test.sh runs this file, the twin and the controller on mujoco==3.3.0 too)."""

import mujoco
import numpy as np

from robot_rl.sim.mujoco_compat import compile_spec, full_inertia, optical_centre, principal_pixel

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


def test_the_optical_axis_lands_on_the_calibrated_principal_point():
    """MuJoCo 3.3 flips the vertical principal offset relative to 4.x; both must put (cx, cy) on the axis."""
    W, H, cx, cy = 64, 48, 27.0, 31.0     # off-centre both ways
    px, py = principal_pixel(W, H, cx, cy)
    assert optical_centre(W, H, px, py) == (cx, cy)
    spec = mujoco.MjSpec.from_string(f"""<mujoco><visual><global offwidth="{W}" offheight="{H}"/></visual>
        <worldbody><light pos="0 0 1" dir="0 0 -1"/>
        <camera name="c" resolution="{W} {H}" sensorsize="0.064 0.048" focalpixel="60 60"
                principalpixel="{px} {py}"/>
        <geom type="sphere" size="0.01" pos="0 0 -1"/></worldbody></mujoco>""")
    model = compile_spec(spec)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    renderer = mujoco.Renderer(model, H, W)
    try:
        renderer.update_scene(data, "c")
        img = renderer.render().astype(float).sum(-1)
    finally:
        renderer.close()
    rows, cols = np.nonzero(img > 0.5 * img.max())   # the sphere on the axis, a few pixels across
    assert abs(cols.mean() - cx) <= 0.5 and abs(rows.mean() - cy) <= 0.5, (cols.mean(), rows.mean())
