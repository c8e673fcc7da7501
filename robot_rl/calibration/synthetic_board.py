"""A ChArUco board inside a MuJoCo model, and the exact OpenCV intrinsics of a MuJoCo camera: the ground
truth for calibrating on synthetic renders.

The board is a textured plane (the board image from cv2, white margin included, as an in-memory 2D
texture); MuJoCo maps the image's top-left to the plane's (-x, +y) corner, so the board frame (x right,
y down, z into the board) is the geom frame turned by pi about x, shifted to the first chessboard corner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.calibration.boards import BoardSpec
from robot_rl.calibration.intrinsics import Intrinsics
from robot_rl.calibration.transforms import from_rvec, invert, make_T
from robot_rl.sim.cameras import CameraRig, add_cameras   # robot_rl.sim sets MUJOCO_GL=egl before mujoco loads

_ROT_GEOM_BOARD = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class BoardModel:
    """Where the board's frame is inside its geom (T_geom_board) and the geom's name."""

    geom: str
    T_geom_board: np.ndarray


def add_board(spec, board: BoardSpec, body, name: str = "board", px_per_square: int = 160,
              margin_squares: float = 0.5) -> BoardModel:
    """Add the board as a plane geom to `body` of an MjSpec (its face is the geom's +z side). Emissive,
    matte material: even lighting, no specular highlights on the corners. No collisions."""
    import mujoco

    img = board.image(px_per_square, margin_squares)
    h, w = img.shape
    tex = spec.add_texture(name=f"{name}_tex", type=mujoco.mjtTexture.mjTEXTURE_2D)
    tex.width, tex.height, tex.nchannel = w, h, 3
    tex.data = np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2)).tobytes()
    mat = spec.add_material(name=f"{name}_mat")
    mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = f"{name}_tex"
    mat.emission, mat.specular, mat.shininess, mat.reflectance = 1.0, 0.0, 0.0, 0.0
    metres_per_px = board.square_length / px_per_square
    half_w, half_h = 0.5 * w * metres_per_px, 0.5 * h * metres_per_px
    body.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_PLANE, size=[half_w, half_h, 0.01],
                  material=f"{name}_mat", contype=0, conaffinity=0)
    margin_m = margin_squares * board.square_length
    return BoardModel(name, make_T(_ROT_GEOM_BOARD, [-half_w + margin_m, half_h - margin_m, 0.0]))


def model_intrinsics(model, camera: str) -> Intrinsics:
    """OpenCV intrinsics (pixel centres at integer coordinates) of a compiled MuJoCo camera. Measured by
    calibrating renders (tests/calibration): robot_rl.sim.mujoco_compat.optical_centre maps MuJoCo's
    principal offset (px, py) in pixels to OpenCV pixels."""
    from robot_rl.sim.mujoco_compat import optical_centre

    c = model.camera(camera)
    W, H = (int(x) for x in model.cam_resolution[c.id])
    sw, sh = model.cam_sensorsize[c.id]
    if sw > 0 and sh > 0:
        fxl, fyl, pxl, pyl = model.cam_intrinsic[c.id]
        fx, fy = fxl / sw * W, fyl / sh * H
        px, py = pxl / sw * W, pyl / sh * H
    else:   # fovy camera: square pixels, centred
        fy = 0.5 * H / np.tan(np.radians(model.cam_fovy[c.id]) / 2)
        fx, px, py = fy, 0.0, 0.0
    return Intrinsics.from_values(W, H, fx, fy, *optical_centre(W, H, px, py))


def scaled_camera(cam, width: int, height: int):
    """A robot_rl.sim.cameras.CameraCalibration at another resolution: same pose and vertical field of
    view, square pixels, centred principal point."""
    import dataclasses

    f = cam.fy * height / cam.height
    return dataclasses.replace(cam, width=width, height=height, fx=f, fy=f, cx=0.5 * width, cy=0.5 * height)


def body_pose(data, body: str) -> np.ndarray:
    """T_world_body of a body in a forwarded MjData."""
    b = data.body(body)
    return make_T(b.xmat.reshape(3, 3), b.xpos)


def camera_pose_cv(data, camera: str) -> np.ndarray:
    """T_world_cam of a MuJoCo camera's optical frame in OpenCV convention (x right, y down, z forward)."""
    c = data.camera(camera)
    return make_T(c.xmat.reshape(3, 3) @ np.diag([1.0, -1.0, -1.0]), c.xpos)


def look_at(eye, target, up_hint=(0.0, 0.0, 1.0), roll: float = 0.0) -> np.ndarray:
    """T_world_cam (OpenCV optical frame) at `eye` looking at `target`, rolled by `roll` rad about z."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up_hint, float))
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, [1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=1)
    c, s = np.cos(roll), np.sin(roll)
    return make_T(R @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]), eye)


@dataclass
class SyntheticViews:
    """Rendered images (name, RGB) with the ground truth they were rendered from."""

    images: list[tuple[str, np.ndarray]]
    intrinsics: Intrinsics                 # of the rendering camera, OpenCV convention
    T_cam_board: list[np.ndarray]          # per image


def render_board_views(board: BoardSpec, camera, n_views: int = 12, seed: int = 0,
                       coverage=(0.45, 0.8), max_tilt_deg: float = 40.0, progress: bool = False) -> SyntheticViews:
    """A fixed camera (robot_rl.sim.cameras.CameraCalibration; its pose is ignored) sees the board at
    n_views random poses: at distances where the board, face on, would span `coverage` of the image
    width; tilted up to max_tilt_deg about the board's x and y axes; its centre anywhere in the middle
    60 % of the image. For intrinsics."""
    import dataclasses

    import mujoco
    from robot_rl.core.progress import progress_bar

    cam = dataclasses.replace(camera, parent="base", position=(0.0, 0.0, 0.0), quat=(1.0, 0.0, 0.0, 0.0))
    spec = mujoco.MjSpec()
    spec.visual.global_.offwidth = max(cam.width, 640)
    spec.visual.global_.offheight = max(cam.height, 480)
    bm = add_board(spec, board, spec.worldbody.add_body(name="board", mocap=True))
    add_cameras(spec, {cam.name: cam})
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    intr = model_intrinsics(model, f"cam_{cam.name}")
    rig = CameraRig(model, data, {cam.name: cam}, {cam.name: 1.0})
    rng = np.random.default_rng(seed)
    bw, bh = board.size_m
    centre_in_board = make_T(np.eye(3), [bw / 2, bh / 2, 0.0])
    T_world_cam = camera_pose_cv(data, f"cam_{cam.name}")
    images, poses = [], []
    try:
        for i in progress_bar(range(n_views), desc="render board views", unit="view", enabled=progress):
            z = intr.fx * bw / (rng.uniform(*coverage) * intr.width)
            u = rng.uniform(0.2, 0.8) * intr.width
            v = rng.uniform(0.2, 0.8) * intr.height
            centre = z * np.array([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, 1.0])
            tilt = np.radians(rng.uniform(-max_tilt_deg, max_tilt_deg, 2))
            roll = np.radians(rng.uniform(-30, 30))
            T_cam_centre = from_rvec([tilt[0], tilt[1], roll], centre)
            T_desired = T_cam_centre @ invert(centre_in_board)      # T_cam_board
            geom = T_world_cam @ T_desired @ invert(bm.T_geom_board)
            data.mocap_pos[0] = geom[:3, 3]
            mujoco.mju_mat2Quat(data.mocap_quat[0], geom[:3, :3].reshape(-1))
            mujoco.mj_forward(model, data)
            poses.append(invert(camera_pose_cv(data, f"cam_{cam.name}")) @ body_pose(data, "board") @ bm.T_geom_board)
            images.append((f"view_{i:03d}", rig.render(cam.name)))
    finally:
        rig.close()
    return SyntheticViews(images, intr, poses)
