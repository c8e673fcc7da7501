"""Calibrate a rig: camera intrinsics, hand-eye extrinsics and per-device latencies.

    robot-rl calibrate intrinsics camera=<name> images=<folder | store:<store>:<stream>> [board=<board>]
    robot-rl calibrate handeye camera=<name> images=<folder> handeye.poses=<poses.yaml> handeye.mode=eye_in_hand|eye_to_hand
    robot-rl calibrate latency latency.store=<store>
    robot-rl calibrate intrinsics|handeye|latency synthetic=true     (MuJoCo twin data, known ground truth)

intrinsics: ChArUco corners (board definitions in calibration/boards/) -> cv2.calibrateCamera; reports the
  RMS reprojection error (px) per image. handeye: robot poses (hand flange in the base frame, one per image)
  + board corners -> camera pose on the hand (eye_in_hand) or in the base (eye_to_hand), closed form then
  refined on the reprojection error. latency: cross-correlation of commanded vs measured motion (arm,
  gripper) and of robot motion vs image motion (cameras), sub-sample peak.

Results go to calibration/<robot.name>/<calibration_id>/ (intrinsics.yaml, handeye.yaml, latency.yaml and a
generated cameras.yaml); read them with robot_rl.calibration.load_calibration(<folder or id>). Record
episodes with that calibration_id. synthetic=true writes into <out>/calibration unless calibration_dir= is set
and prints the errors against the ground truth (also in <out>/results.json).
"""

from __future__ import annotations

from pathlib import Path

from robot_rl.core.config import to_plain
from robot_rl.core.errors import ConfigError

SUBCOMMANDS = ("intrinsics", "handeye", "latency")


def run(cfg, args: list[str]) -> int:
    from robot_rl.control.rig import load_rig
    from robot_rl.core.results import write_results
    from robot_rl.core.rundir import make_run_dir

    if len(args) != 1 or args[0] not in SUBCOMMANDS:
        raise ConfigError(f"robot-rl calibrate: expected one of {list(SUBCOMMANDS)} then key=value options, got {args}")
    rig = load_rig(cfg.robot)
    out = make_run_dir(cfg, "calibrate")
    from robot_rl.calibration.calibration_files import calibration_dir, new_calibration_id

    root = cfg.calibration_dir or (out / "calibration" if cfg.synthetic else None)
    cal_id = str(cfg.calibration_id or new_calibration_id(rig.name))
    cal_dir = calibration_dir(rig.name, cal_id, root)
    step = {"intrinsics": _intrinsics, "handeye": _handeye, "latency": _latency}[args[0]]
    results = step(cfg, rig, cal_dir, out)
    write_results(out / "results.json", stage=f"calibrate {args[0]}", rig=rig.name, calibration_id=cal_id,
                  calibration_path=str(cal_dir), synthetic=bool(cfg.synthetic), **results)
    print(f"calibration {cal_id} -> {cal_dir}")
    return 0


def _camera_name(cfg, default: str) -> str:
    name = cfg.camera or (default if cfg.synthetic else None)
    if not name:
        raise ConfigError("camera=<name> is required (the name the rig and the runtime use, e.g. wrist)")
    return str(name)


def _images(cfg) -> list:
    from robot_rl.calibration.sources import iter_images

    if not cfg.images:
        raise ConfigError("images=<folder> or images=store:<store path>:<stream> is required (or synthetic=true)")
    return list(iter_images(str(cfg.images), int(cfg.every)))


def _intrinsics(cfg, rig, cal_dir: Path, out: Path, camera: str | None = None) -> dict:
    from robot_rl.calibration.boards import load_board
    from robot_rl.calibration.intrinsics import calibrate_intrinsics, detect_views
    from robot_rl.calibration.calibration_files import write_intrinsics

    board = load_board(cfg.board)
    camera = camera or _camera_name(cfg, "wrist")
    truth = None
    if cfg.synthetic:
        from robot_rl.calibration.synthetic_board import render_board_views, scaled_camera
        from robot_rl.sim.cameras import load_camera_calibration

        _, cams = load_camera_calibration(rig.calibration)
        if camera not in cams:
            raise ConfigError(f"camera={camera!r}: the rig's calibration {rig.calibration} has cameras {sorted(cams)}")
        sd = cfg.synthetic_data
        data = render_board_views(board, scaled_camera(cams[camera], int(sd.width), int(sd.height)), int(sd.views),
                                  int(cfg.seed), progress=True)
        images, truth = data.images, data.intrinsics
    else:
        images = _images(cfg)
    views, size = detect_views(images, board, progress=True)
    r = calibrate_intrinsics(views, size, int(cfg.min_corners), int(cfg.intrinsics.min_views),
                             bool(cfg.intrinsics.fix_k3), bool(cfg.intrinsics.zero_tangent))
    i = r.intrinsics
    report = {"rms_px": round(r.rms_px, 4), "views_used": len(r.views_used), "views_rejected": r.views_rejected,
              "view_rms_px": {k: round(v, 4) for k, v in r.view_rms_px.items()}, "board": board.name,
              "source": "synthetic (MuJoCo twin)" if cfg.synthetic else str(cfg.images)}
    write_intrinsics(cal_dir, rig.name, camera, i, report, bool(cfg.overwrite))
    print(f"{camera}: {i.width}x{i.height} fx={i.fx:.2f} fy={i.fy:.2f} cx={i.cx:.2f} cy={i.cy:.2f} "
          f"dist={[round(float(x), 5) for x in i.dist]}; RMS reprojection {r.rms_px:.3f} px over "
          f"{len(r.views_used)} images ({len(r.views_rejected)} rejected)")
    res = {"camera": camera, "rms_px": r.rms_px, "views_used": len(r.views_used), "fx": i.fx, "fy": i.fy,
           "cx": i.cx, "cy": i.cy}
    if truth is not None:
        err = {"fx_err_px": i.fx - truth.fx, "fy_err_px": i.fy - truth.fy, "cx_err_px": i.cx - truth.cx,
               "cy_err_px": i.cy - truth.cy}
        print("ground truth: " + ", ".join(f"{k} {v:+.3f}" for k, v in err.items()))
        res |= err
    return res


def _handeye_intrinsics(cfg, camera: str, cal_dir: Path, views, size):
    """The camera's intrinsics: handeye.intrinsics, else this calibration's, else from these images."""
    from robot_rl.calibration.intrinsics import calibrate_intrinsics
    from robot_rl.calibration.calibration_files import load_calibration

    src = cfg.handeye.intrinsics or (cal_dir if (cal_dir / "intrinsics.yaml").is_file() else None)
    if src is not None:
        cal = load_calibration(src, cfg.calibration_dir)
        if camera not in cal.intrinsics:
            raise ConfigError(f"handeye.intrinsics={str(src)!r}: calibration {cal.calibration_id} has no intrinsics "
                              f"for camera {camera!r} (it has {sorted(cal.intrinsics)})")
        intr = cal.intrinsics[camera]
        if (intr.width, intr.height) != tuple(size):
            raise ConfigError(f"handeye.intrinsics: {camera} was calibrated at {intr.width}x{intr.height} but the "
                              f"images are {size[0]}x{size[1]}")
        return intr, f"calibration {cal.calibration_id}"
    r = calibrate_intrinsics(views, size, int(cfg.min_corners), int(cfg.intrinsics.min_views), bool(cfg.intrinsics.fix_k3))
    print(f"{camera}: no intrinsics given; calibrated from the hand-eye images: RMS {r.rms_px:.3f} px")
    return r.intrinsics, "the hand-eye images"


def _handeye(cfg, rig, cal_dir: Path, out: Path) -> dict:
    from robot_rl.calibration.boards import load_board
    from robot_rl.calibration.handeye import MODES, HandEyeView, calibrate_handeye
    from robot_rl.calibration.intrinsics import detect_views
    from robot_rl.calibration.calibration_files import CameraExtrinsics, write_handeye
    from robot_rl.calibration.transforms import pose_error

    board = load_board(cfg.board)
    mode = str(cfg.handeye.mode)
    if mode not in MODES:
        raise ConfigError(f"handeye.mode={mode!r}: expected one of {list(MODES)}")
    truth, res = None, {}
    if cfg.synthetic:
        from robot_rl.calibration.synthetic_handeye import CAMERA_OF_MODE, render_handeye_views

        camera = CAMERA_OF_MODE[mode]
        if cfg.camera and cfg.camera != camera:
            raise ConfigError(f"camera={cfg.camera!r}: synthetic {mode} renders the twin's {camera!r} camera")
        if not cfg.handeye.intrinsics and not (cal_dir / "intrinsics.yaml").is_file():
            print(f"{camera}: calibrating the intrinsics first (synthetic board views)")
            res = {f"intrinsics_{k}": v for k, v in _intrinsics(cfg, rig, cal_dir, out, camera).items()}
        sd = cfg.synthetic_data
        truth = render_handeye_views(board, mode, int(sd.views), int(cfg.seed), int(sd.width), int(sd.height),
                                     to_plain(cfg.robot), progress=True)
        images, hand_poses = truth.images, dict(zip((n for n, _ in truth.images), truth.T_base_hand))
    else:
        from robot_rl.calibration.sources import load_robot_poses

        camera = _camera_name(cfg, "")
        if not cfg.handeye.poses:
            raise ConfigError("handeye.poses=<poses.yaml> is required: the hand flange pose in the base frame for "
                              "every image (poses: {<image stem>: {position: [x, y, z], quat: [w, x, y, z]}})")
        images, hand_poses = _images(cfg), load_robot_poses(cfg.handeye.poses)
        missing = [n for n, _ in images if n not in hand_poses]
        if missing:
            raise ConfigError(f"handeye.poses={cfg.handeye.poses}: no pose for image(s) {missing[:10]}"
                              + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    board_views, size = detect_views(images, board, progress=True)
    intr, intr_src = _handeye_intrinsics(cfg, camera, cal_dir, board_views, size)
    views = [HandEyeView(hand_poses[v.name], v) for v in board_views]
    r = calibrate_handeye(views, intr, mode, str(cfg.handeye.method), int(cfg.min_corners),
                          int(cfg.handeye.min_views), bool(cfg.handeye.refine))
    ext = CameraExtrinsics(r.parent, r.T_parent_cam)
    report = {"mode": mode, "method": r.method, "rms_px": round(r.rms_px, 4), "initial_rms_px": round(r.initial_rms_px, 4),
              "views_used": len(r.views_used), "views_rejected": r.views_rejected,
              "max_rotation_deg": round(r.max_rotation_deg, 2), "intrinsics_from": intr_src, "board": board.name,
              "source": "synthetic (MuJoCo twin)" if cfg.synthetic else str(cfg.images)}
    write_handeye(cal_dir, rig.name, camera, ext, "base" if mode == "eye_in_hand" else "hand", r.T_parent_board,
                  report, bool(cfg.overwrite))
    print(f"{camera} ({mode}) in {r.parent}: position {[round(x, 5) for x in ext.position]} m, quat "
          f"{[round(x, 5) for x in ext.quat]}; reprojection RMS {r.initial_rms_px:.3f} px (closed form) -> "
          f"{r.rms_px:.3f} px (refined) over {len(r.views_used)} views")
    res |= {"camera": camera, "mode": mode, "rms_px": r.rms_px, "initial_rms_px": r.initial_rms_px,
            "views_used": len(r.views_used), "position": ext.position, "quat": ext.quat}
    if truth is not None:
        dt, dr = pose_error(r.T_parent_cam, truth.T_parent_cam)
        bt, br = pose_error(r.T_parent_board, truth.T_parent_board)
        print(f"ground truth: camera error {dt:.3f} mm, {dr:.4f} deg; board error {bt:.3f} mm, {br:.4f} deg")
        res |= {"camera_err_mm": dt, "camera_err_deg": dr, "board_err_mm": bt, "board_err_deg": br}
    return res


def _latency(cfg, rig, cal_dir: Path, out: Path) -> dict:
    from robot_rl.calibration.calibration_files import write_latency
    from robot_rl.calibration.store_latency import LatencyOptions, estimate_store_latencies
    from robot_rl.data.episode_store import EpisodeStore

    lc = to_plain(cfg.latency)
    devices = {}
    for name, d in (lc.pop("devices") or {}).items():
        try:
            devices[name] = (str(d["command"]), str(d["measured"]), float(d.get("sign", 1)))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"latency.devices.{name}={d!r}: needs command, measured (stream names) and sign (+-1)") from None
    store_path = lc.pop("store")
    truth = None
    if cfg.synthetic:
        from robot_rl.calibration.synthetic_latency import record_latency_episode

        camera = _camera_name(cfg, "wrist")
        stream = f"cam_{camera}_rgb"
        store_path = out / "synthetic_latency.zarr"
        sd = cfg.synthetic_data
        ep = record_latency_episode(store_path, {stream: float(sd.camera_delay_s)}, float(sd.duration_s), int(cfg.seed),
                                    cameras=(camera,), progress=True)
        truth = ep.camera_delays_s
        print(f"recorded a twin episode with {stream} delayed by {sd.camera_delay_s * 1e3:.1f} ms -> {store_path}")
    elif not store_path:
        raise ConfigError("latency.store=<episode store> is required (or synthetic=true)")
    if lc.get("camera_mounts") is None:   # the rig says where each camera is mounted
        lc["camera_mounts"] = {f"cam_{n}_rgb": str(c.get("mount", "base")) for n, c in rig.cameras.items()}
    opts = LatencyOptions(**{k: (tuple(v) if k == "pose_streams" else v) for k, v in lc.items()}, devices=devices)
    r = estimate_store_latencies(EpisodeStore.open(store_path), opts, progress=True)
    details = {k: e.to_dict() for k, e in (r.command | r.cameras).items()}
    report = {"reference": {"streams": list(opts.pose_streams), "latency_s": opts.reference_latency_s},
              "details": details, "skipped": r.skipped, "source": str(store_path)}
    write_latency(cal_dir, rig.name, r.latency_s(), r.command_latency_s(), report, bool(cfg.overwrite))
    for name, e in (r.command | r.cameras).items():
        kind = "command -> motion" if name in r.command else f"behind {'/'.join(opts.pose_streams)}"
        print(f"{name:16s} {e.lag_s * 1e3:8.2f} ms  ({kind}; correlation {e.peak_corr:.3f})")
    for name, why in r.skipped.items():
        print(f"{name:16s} skipped: {why}")
    res = {"latency_s": r.latency_s(), "command_latency_s": r.command_latency_s(), "skipped": r.skipped}
    if truth is not None:
        errs = {s: (r.cameras[s].lag_s + opts.reference_latency_s - t) * 1e3 if s in r.cameras else None
                for s, t in truth.items()}
        print("ground truth: " + ", ".join(f"{s} error " + ("skipped" if v is None else f"{v:+.2f} ms")
                                           for s, v in errs.items()))
        res["latency_err_ms"] = errs
    return res
