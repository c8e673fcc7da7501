"""Synthetic hand-eye data from the MuJoCo twin: the twin's own calibrated camera (wrist camera on the
hand for eye-in-hand, front camera on its stand for eye-to-hand) rendered at a higher resolution, a
ChArUco board fixed on the table or held by the hand, and arm poses reached by inverse kinematics.
The robot poses are read back from the model after forward kinematics, so they are exact; the ground
truth is the camera pose in the compiled model (the twin's calibration file).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.calibration.boards import BoardSpec
from robot_rl.calibration.intrinsics import Intrinsics
from robot_rl.calibration.synthetic_board import (add_board, body_pose, camera_pose_cv, look_at,
                                                  model_intrinsics, scaled_camera)
from robot_rl.calibration.transforms import from_pos_quat, from_rvec, invert, make_T
from robot_rl.sim.cameras import CameraRig, add_cameras, load_camera_calibration

HAND = "hand"
CAMERA_OF_MODE = {"eye_in_hand": "wrist", "eye_to_hand": "front"}
# board held by the hand (eye-to-hand): its face looks along the hand's +y, rows run along the approach
# axis (+z), centre 6 cm to the side of and 11 cm beyond the flange, clear of the open fingers
_R_HAND_BOARD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_HELD_BOARD_CENTRE = np.array([0.0, 0.06, 0.11])
_TABLE_BOARD_CENTRE = np.array([0.5, 0.0, 0.0005])
# the wrist camera looks at the fingertips: aim it 18 deg above the board so the board lands in the lower
# part of the image, below the fingers
_BOARD_BELOW_FINGERS = from_rvec([np.radians(18.0), 0.0, 0.0], np.zeros(3))


@dataclass
class HandEyeData:
    mode: str
    camera: str
    images: list[tuple[str, np.ndarray]]
    T_base_hand: list[np.ndarray]
    intrinsics: Intrinsics
    T_parent_cam: np.ndarray        # ground truth: T_hand_cam or T_base_cam
    T_parent_board: np.ndarray      # ground truth: T_base_board or T_hand_board
    calibration_id: str             # of the twin calibration the camera came from


class _ArmIK:
    """Damped least-squares IK of the hand body's pose over the 7 arm joints (kinematics only)."""

    def __init__(self, model, data, home_q: np.ndarray) -> None:
        import mujoco

        self.m, self.d, self.mj = model, data, mujoco
        self.qadr = np.array([model.joint(f"joint{i}").qposadr[0] for i in range(1, 8)])
        self.dadr = np.array([model.joint(f"joint{i}").dofadr[0] for i in range(1, 8)])
        self.lo, self.hi = model.jnt_range[[model.joint(f"joint{i}").id for i in range(1, 8)]].T
        self.body = model.body(HAND).id
        self.home = np.asarray(home_q, float)
        self.jacp, self.jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))

    def solve(self, T_des: np.ndarray, iters: int = 150) -> np.ndarray:
        import cv2

        q = self.home.copy()
        for _ in range(iters):
            self.d.qpos[self.qadr] = q
            self.mj.mj_kinematics(self.m, self.d)
            self.mj.mj_comPos(self.m, self.d)
            T = body_pose(self.d, HAND)
            e_rot = cv2.Rodrigues(np.ascontiguousarray(T_des[:3, :3] @ T[:3, :3].T))[0].reshape(3)
            e = np.concatenate([T_des[:3, 3] - T[:3, 3], e_rot])
            if np.linalg.norm(e[:3]) < 2e-4 and np.linalg.norm(e[3:]) < 1e-3:   # the pose is read back exactly anyway
                break
            self.mj.mj_jacBody(self.m, self.d, self.jacp, self.jacr, self.body)
            J = np.vstack([self.jacp[:, self.dadr], self.jacr[:, self.dadr]])
            JJt = J @ J.T + 1e-4 * np.eye(6)
            dq = J.T @ np.linalg.solve(JJt, e)
            null = np.eye(7) - J.T @ np.linalg.solve(JJt, J)
            dq += null @ (0.1 * (self.home - q))
            q = np.clip(q + np.clip(dq, -0.2, 0.2), self.lo, self.hi)
        self.d.qpos[self.qadr] = q
        return q


def render_handeye_views(board: BoardSpec, mode: str = "eye_in_hand", n_views: int = 12, seed: int = 0,
                         width: int = 640, height: int = 480, rig="panda_twin",
                         progress: bool = False) -> HandEyeData:
    """n_views renders of the board by the rig's wrist (eye_in_hand) or front (eye_to_hand) camera at
    width x height px. rig: a rig name, file or config mapping (robot_rl.control.rig.load_rig)."""
    import mujoco
    from robot_rl.core.progress import progress_bar

    from robot_rl.control.rig import load_rig

    if mode not in CAMERA_OF_MODE:
        raise ValueError(f"mode={mode!r}: expected one of {list(CAMERA_OF_MODE)}")
    rig_cfg = load_rig(rig)
    calibration_id, cams = load_camera_calibration(rig_cfg.calibration)
    name = CAMERA_OF_MODE[mode]
    cam = scaled_camera(cams[name], width, height)
    spec = mujoco.MjSpec.from_file(str(rig_cfg.model))
    spec.visual.global_.offwidth = max(width, 640)
    spec.visual.global_.offheight = max(height, 480)
    add_cameras(spec, {name: cam})
    if mode == "eye_in_hand":
        bm = add_board(spec, board, spec.worldbody.add_body(name="board", pos=list(_TABLE_BOARD_CENTRE)))
    else:
        bm = add_board(spec, board, spec.worldbody.add_body(name="board", mocap=True))
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    ik = _ArmIK(model, data, np.array(rig_cfg.arm["home_q"], float))
    bw, bh = board.size_m
    centre_in_board = make_T(np.eye(3), [bw / 2, bh / 2, 0.0])
    T_hand_cam_nominal = from_pos_quat(cam.position, cam.quat)
    T_base_cam_fixed = from_pos_quat(cam.position, cam.quat)
    T_hand_board = make_T(_R_HAND_BOARD, _HELD_BOARD_CENTRE) @ invert(centre_in_board)
    rng = np.random.default_rng(seed)
    renderer = CameraRig(model, data, {name: cam}, {name: 1.0})
    images, hands = [], []
    try:
        for i in progress_bar(range(n_views), desc=f"render {mode} views", unit="view", enabled=progress):
            if mode == "eye_in_hand":
                centre = (body_pose(data, "board") @ bm.T_geom_board @ centre_in_board)[:3, 3]
                theta, phi = np.radians(rng.uniform(0, 35)), rng.uniform(-np.pi, np.pi)
                r = rng.uniform(0.25, 0.35)
                eye = centre + r * np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
                target = centre + np.append(rng.uniform(-0.03, 0.03, 2), 0.0)
                T_base_cam_des = look_at(eye, target, up_hint=(1.0, 0.0, 0.0), roll=np.radians(rng.uniform(-40, 40)))
                T_base_cam_des = T_base_cam_des @ _BOARD_BELOW_FINGERS
                ik.solve(T_base_cam_des @ invert(T_hand_cam_nominal))
                mujoco.mj_forward(model, data)
            else:
                p = np.array([rng.uniform(0.45, 0.62), rng.uniform(-0.15, 0.15), rng.uniform(0.12, 0.25)])
                away = p - T_base_cam_fixed[:3, 3]
                tilt = from_rvec(np.radians(rng.uniform(-25, 25, 3)), np.zeros(3))[:3, :3]
                T_base_centre = look_at(p, p + tilt @ away, roll=np.radians(rng.uniform(-20, 20)))
                ik.solve(T_base_centre @ invert(centre_in_board) @ invert(T_hand_board))
                mujoco.mj_forward(model, data)
                geom = body_pose(data, HAND) @ T_hand_board @ invert(bm.T_geom_board)
                data.mocap_pos[0] = geom[:3, 3]
                mujoco.mju_mat2Quat(data.mocap_quat[0], geom[:3, :3].reshape(-1))
                mujoco.mj_forward(model, data)
            hands.append(body_pose(data, HAND))
            images.append((f"view_{i:03d}", renderer.render(name)))
        T_base_board = body_pose(data, "board") @ bm.T_geom_board
        T_base_cam = camera_pose_cv(data, f"cam_{name}")
        if mode == "eye_in_hand":
            truth_cam, truth_board = invert(hands[-1]) @ T_base_cam, T_base_board
        else:
            truth_cam, truth_board = T_base_cam, invert(hands[-1]) @ T_base_board
    finally:
        renderer.close()
    return HandEyeData(mode, name, images, hands, model_intrinsics(model, f"cam_{name}"), truth_cam, truth_board,
                       calibration_id)
