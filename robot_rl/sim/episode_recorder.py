"""Recording twin episodes into the episode store: stream specs and a per-step recorder.

Stream names are shared with TwinEnv observation keys (joint_pos, joint_vel, ee_pos, ee_quat,
gripper_pos, task_state, cam_<name>_rgb) so later stages build observations straight from a store.
Times are seconds of simulated time since the episode started. Frames: "base" = robot base.
"""

from __future__ import annotations

import numpy as np

from robot_rl.control.controller import N_FAULTS
from robot_rl.data.schema import StreamSpec
from robot_rl.sim.cameras import camera_stream
from robot_rl.sim.env import TwinEnv


def twin_stream_specs(env: TwinEnv) -> list[StreamSpec]:
    hz = env.policy_hz
    S = StreamSpec
    specs = [
        S("action", "float32", (7,), hz, "normalized", "base",
          description="EE delta action in [-1,1]: dx dy dz (x max_delta_pos m), drx dry drz (x max_delta_rot rad), "
                      "gripper (-1 open, +1 closed)"),
        S("joint_pos", "float32", (7,), hz, "rad"),
        S("joint_vel", "float32", (7,), hz, "rad/s"),
        S("ee_pos", "float32", (3,), hz, "m", "base", description="tool centre point"),
        S("ee_quat", "float32", (4,), hz, "wxyz", "base", interp="slerp"),
        S("gripper_pos", "float32", (1,), hz, "m", description="finger opening (both fingers)"),
        S("ee_target_pos", "float32", (3,), hz, "m", "base", description="commanded target after the action"),
        S("ee_target_quat", "float32", (4,), hz, "wxyz", "base", interp="slerp"),
        S("gripper_cmd", "float32", (1,), hz, "closure", interp="hold", description="0 open .. 1 closed"),
        S("intervention", "uint8", (1,), hz, interp="hold",
          description="1 when the action was taken over by a human / scripted corrector, stamped like action"),
        S("reward", "float32", (1,), hz, description="dense task reward"),
        S("success", "uint8", (1,), hz, interp="hold"),
        S("ee_force", "float32", (6,), hz, "N, Nm", "base", description="estimated external wrench at the TCP"),
        S("safety_counts", "int32", (N_FAULTS,), hz, interp="hold",
          description="robot_rl.control.Fault counters of the controller, cumulative per episode"),
        S("controller_mode", "uint8", (1,), hz, interp="hold", description="robot_rl.control.ControllerMode"),
    ]
    if env.privileged:
        k = env.observation_space["task_state"].shape[0]
        specs.append(S("task_state", "float32", (k,), hz, "", "base", description=f"{env.task.name} privileged state"))
    cams = env.twin.cameras
    if cams is not None:
        for n in cams.names:
            c = env.twin.camera_calibration[n]
            specs.append(S(camera_stream(n), "uint8", (c.height, c.width, 3), cams.fps[n], codec="jpeg", interp="hold",
                           description=f"camera {n}, calibration {env.twin.calibration_id}"))
    return specs


class EpisodeRecorder:
    """Feeds one env's steps (and camera frames as they render) into an EpisodeWriter."""

    def __init__(self, env: TwinEnv, writer) -> None:
        self.env, self.w = env, writer
        self._t_prev = None
        if env.twin.cameras is not None:
            env.twin.cameras.listeners.append(self._on_frame)
        self.active = False

    def _on_frame(self, name: str, t: float, img: np.ndarray) -> None:
        if self.active:
            self.w.append(camera_stream(name), img, t)
            self._framed.add(name)

    def begin(self, meta) -> None:
        self.w.begin_episode(meta)
        self._t_prev = None
        self._framed: set[str] = set()
        self.active = True

    def on_step(self, obs, action, reward, info) -> None:
        env, w = self.env, self.w
        t = env.twin.time
        if action is not None:
            w.append("action", np.asarray(action, np.float32), self._t_prev)
            w.append("intervention", np.array([bool(info.get("intervention", False))], np.uint8), self._t_prev)
        elif env.twin.cameras is not None:   # begun after the reset rendered: its frames are the episode's first
            for n, (tf, img) in env.twin.cameras.frames.items():
                if n not in self._framed and abs(tf - t) < 1e-9:
                    self._on_frame(n, tf, img)
        for k in ("joint_pos", "joint_vel", "ee_pos", "ee_quat", "gripper_pos"):
            w.append(k, obs[k], t)
        if "task_state" in obs:
            w.append("task_state", obs["task_state"], t)
        # camera frames are appended by the frame listener, at their own render times
        w.append("ee_target_pos", env.target_pos.astype(np.float32), t)
        w.append("ee_target_quat", env.target_quat.astype(np.float32), t)
        w.append("gripper_cmd", np.array([env.gripper_cmd], np.float32), t)
        w.append("reward", np.array([reward], np.float32), t)
        w.append("success", np.array([info["is_success"]], np.uint8), t)
        w.append("ee_force", env.twin.arm.state.f_ext.astype(np.float32), t)
        w.append("safety_counts", env.twin.controller.counts.astype(np.int32), t)
        w.append("controller_mode", np.array([info["controller_mode"]], np.uint8), t)
        self._t_prev = t

    def end(self, success: bool, **meta) -> None:
        self.active = False
        self.w.commit(success=success, **meta)
