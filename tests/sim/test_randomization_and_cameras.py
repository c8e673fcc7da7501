"""Domain randomization hooks and calibrated camera geometry."""

from __future__ import annotations

import numpy as np

from robot_rl.sim.cameras import load_camera_calibration
from robot_rl.sim.randomization import RandomizationParams
from robot_rl.sim.mujoco_twin import Twin


def test_randomization_changes_friction_mass_light_and_camera_and_restores_nominal():
    tw = Twin(task="lift", randomization=RandomizationParams.default_on())
    nominal_mass = tw.model.body("cube").mass.copy()
    nominal_cam = tw.model.cam_pos.copy()
    tw.reset(seed=1)
    drawn = tw.randomization_drawn
    assert drawn["mass_scale"] != 1.0 and drawn["friction_scale"] != 1.0
    np.testing.assert_allclose(tw.model.body("cube").mass, nominal_mass * drawn["mass_scale"])
    assert np.abs(tw.model.cam_pos - nominal_cam).max() > 0
    tw.reset(seed=2)                                         # scales apply to the nominal, never compound
    np.testing.assert_allclose(tw.model.body("cube").mass, nominal_mass * tw.randomization_drawn["mass_scale"])
    tw.close()


def test_camera_pose_and_intrinsics_come_from_the_calibration_file():
    tw = Twin(task=None)
    _, cams = load_camera_calibration(tw.rig.calibration)
    front = cams["front"]
    cam = tw.model.camera("cam_front")
    np.testing.assert_allclose(tw.model.cam_pos[cam.id], front.position)
    fovy = np.degrees(2 * np.arctan(0.5 * front.height / front.fy))
    assert abs(tw.model.cam_fovy[cam.id] - fovy) < 0.01


def test_a_point_projects_where_the_pinhole_model_says():
    """Render a marker and compare its pixel with the OpenCV projection from the calibration."""
    import mujoco

    from robot_rl.control.rig import load_rig
    from robot_rl.core.rotations import quat_to_mat
    from robot_rl.sim.cameras import CameraRig, add_cameras

    rig = load_rig("panda_twin")
    _, cams = load_camera_calibration(rig.calibration)
    spec = mujoco.MjSpec.from_file(str(rig.model))
    add_cameras(spec, cams, names=["front"])
    point = np.array([0.55, 0.12, 0.05])
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.012, 0, 0], pos=list(point),
                            rgba=[0, 1, 0, 1], contype=0, conaffinity=0)
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    rig_r = CameraRig(model, data, {"front": cams["front"]}, {"front": 30})
    img = rig_r.render("front").astype(int)
    rig_r.close()
    green = (img[..., 1] > 150) & (img[..., 0] < 80) & (img[..., 2] < 80)
    ys, xs = np.nonzero(green)
    c = cams["front"]
    R = quat_to_mat(np.array(c.quat))
    p_cam = R.T @ (point - np.array(c.position))
    u, v = c.fx * p_cam[0] / p_cam[2] + c.cx, c.fy * p_cam[1] / p_cam[2] + c.cy
    assert len(xs) > 5
    assert abs(xs.mean() + 0.5 - u) < 1.5 and abs(ys.mean() + 0.5 - v) < 1.5
