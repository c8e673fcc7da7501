"""Gymnasium API of the twin: dict observations, end-effector delta actions at the policy rate.

Action (7,) in [-1, 1]: dx, dy, dz (scaled by max_delta_pos, metres per step), drx, dry, drz
(rotation vector scaled by max_delta_rot, radians per step, applied about the TCP), gripper
(-1 open .. +1 closed). action_frame="base" (default) expresses the deltas in the robot base frame,
like a SpaceMouse on the table; "tool" expresses them in the current target's tool frame.
Deltas move the commanded target, as a SpaceMouse does; the target may lead the measured TCP by at
most max_target_lead so it never winds up against contact.

Observation keys (episode-store stream names, so recorded data and live observations match):
joint_pos (7) rad, joint_vel (7) rad/s, ee_pos (3) m, ee_quat (4) w,x,y,z, gripper_pos (1) m
finger opening; cam_<name>_rgb (H, W, 3) uint8 when cameras are on (the latest frame: rendered at
the camera's fps, or with camera_rate="policy" once at the end of every step); task_state when privileged.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from robot_rl.core.rotations import quat_mul, quat_normalize, quat_to_mat, rotvec_to_quat
from robot_rl.core.types import EETarget
from robot_rl.sim.cameras import camera_stream
from robot_rl.sim.mujoco_twin import Twin

PROPRIO = {"joint_pos": 7, "joint_vel": 7, "ee_pos": 3, "ee_quat": 4, "gripper_pos": 1}
# full-deflection speeds of the delta actions (max_delta_pos/rot = these / policy rate) and target lead
MAX_DELTA_SPEED = 0.4          # m/s
MAX_DELTA_ANGULAR_SPEED = 1.5  # rad/s
MAX_TARGET_LEAD = 0.04         # m


class TwinEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, task: str = "reach", rig: str = "panda_twin", policy_hz: float | None = None,
                 cameras: bool | Sequence[str] = False, privileged: bool = True, task_params: dict | None = None,
                 randomization: dict | None = None, profile: str | None = None, max_delta_pos: float | None = None,
                 max_delta_rot: float | None = None, max_target_lead: float = MAX_TARGET_LEAD, reward: str = "dense",
                 action_frame: str = "base", terminate_on_success: bool = True, render_mode: str | None = None,
                 seed: int = 0, camera_rate: str = "camera") -> None:
        if action_frame not in ("base", "tool"):
            raise ValueError(f"TwinEnv: action_frame={action_frame!r}, expected 'base' or 'tool'")
        self.action_frame = action_frame
        if reward not in ("dense", "sparse"):
            raise ValueError(f"TwinEnv: reward={reward!r}, expected 'dense' or 'sparse'")
        self.twin = Twin(rig, task, task_params, cameras, seed, randomization, policy_hz, profile,
                         camera_rate=camera_rate)
        hz = self.twin.policy_hz
        self.policy_hz = hz
        self.max_delta_pos = float(max_delta_pos or MAX_DELTA_SPEED / hz)          # 0.4 m/s at full deflection
        self.max_delta_rot = float(max_delta_rot or MAX_DELTA_ANGULAR_SPEED / hz)  # 1.5 rad/s
        self.max_target_lead = max_target_lead
        self.reward_type = reward
        self.terminate_on_success = terminate_on_success
        self.privileged = privileged
        self.render_mode = render_mode
        self.action_space = spaces.Box(-1.0, 1.0, (7,), np.float32)
        obs = {k: spaces.Box(-np.inf, np.inf, (n,), np.float32) for k, n in PROPRIO.items()}
        if self.twin.cameras is not None:
            for n in self.twin.cameras.names:
                c = self.twin.camera_calibration[n]
                obs[camera_stream(n)] = spaces.Box(0, 255, (c.height, c.width, 3), np.uint8)
        if privileged:
            self.twin.reset(seed)
            k = self.twin.task.privileged_state().shape[0]
            obs["task_state"] = spaces.Box(-np.inf, np.inf, (k,), np.float32)
        self.observation_space = spaces.Dict(obs)
        self.target_pos = np.zeros(3)
        self.target_quat = np.array([1.0, 0, 0, 0])
        self.gripper_cmd = 0.0
        self.last_action = np.zeros(7, np.float32)
        self._seed = seed
        self._episodes = 0

    @property
    def task(self):
        return self.twin.task

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = self._seed * 100003 + self._episodes
        self._episodes += 1
        self.twin.reset(seed)
        s = self.twin.arm.read_state()
        self.target_pos = s.ee_pos.copy()
        self.target_quat = s.ee_quat.copy()
        self.gripper_cmd = self.twin.controller.gripper
        self.last_action[:] = 0.0
        self.steps = 0
        return self._obs(), self._info(False, 0.0)

    def action_to_target(self, action: np.ndarray) -> EETarget:
        """Integrate a delta action into the next absolute target (reached one policy period from now)."""
        L = self.twin.controller.limits
        pos, quat, self.gripper_cmd = integrate_delta_action(
            action, self.target_pos, self.target_quat, self.twin.arm.state.ee_pos, self.max_delta_pos,
            self.max_delta_rot, self.max_target_lead, L.workspace_min, L.workspace_max, self.action_frame)
        self.target_pos, self.target_quat = pos, quat
        return EETarget(self.twin.now + 1.0 / self.policy_hz, pos, quat, self.gripper_cmd)

    def step(self, action):
        self.last_action = np.asarray(action, dtype=np.float32).copy()
        self.twin.push(self.action_to_target(action))
        self.twin.step()
        self.steps += 1
        s = self.twin.arm.read_state()
        dense, success = self.twin.task.evaluate(s.ee_pos, s.gripper_width)
        reward = dense if self.reward_type == "dense" else float(success)
        terminated = bool(success and self.terminate_on_success)
        truncated = self.twin.time >= self.twin.task.p.time_limit - 1e-9
        return self._obs(), float(reward), terminated, bool(truncated and not terminated), self._info(success, dense)

    def _obs(self) -> dict[str, np.ndarray]:
        s = self.twin.arm.state
        o = {"joint_pos": s.q.astype(np.float32), "joint_vel": s.dq.astype(np.float32),
             "ee_pos": s.ee_pos.astype(np.float32), "ee_quat": s.ee_quat.astype(np.float32),
             "gripper_pos": np.array([s.gripper_width], np.float32)}
        cams = self.twin.cameras
        if cams is not None:
            for n in cams.names:
                o[camera_stream(n)] = cams.frames[n][1]
        if self.privileged:
            o["task_state"] = self.twin.task.privileged_state()
        return o

    def _info(self, success: bool, dense: float) -> dict[str, Any]:
        c = self.twin.controller
        return {"is_success": bool(success), "success": bool(success), "dense_reward": float(dense),
                "sparse_reward": float(success), "time": self.twin.time, "controller_mode": int(c.mode),
                "safety_counts": c.counts.copy()}

    def render(self):
        cams = self.twin.cameras
        if cams is None:
            return None
        return cams.render(cams.names[0])

    def close(self):
        self.twin.close()


def integrate_delta_action(action, target_pos: np.ndarray, target_quat: np.ndarray, ee_pos: np.ndarray,
                           max_delta_pos: float, max_delta_rot: float, max_target_lead: float,
                           workspace_min, workspace_max, action_frame: str = "base"
                           ) -> tuple[np.ndarray, np.ndarray, float]:
    """The one definition of the delta-action semantics (TwinEnv and the deploy runtime share it).

    action (7,) in [-1, 1] (NaN -> 0, clipped) moves the commanded target (target_pos, target_quat):
    position by action[:3] * max_delta_pos (m), orientation by the rotation vector
    action[3:6] * max_delta_rot (rad) applied on the left (base frame; with action_frame="tool" both
    deltas are first rotated into the base frame by the target's orientation). The new position may
    lead the measured TCP `ee_pos` by at most max_target_lead per axis and stays inside the workspace
    box. Returns (position, quaternion w,x,y,z, gripper closure 0 open .. 1 closed)."""
    a = np.clip(np.nan_to_num(np.asarray(action, dtype=np.float64), nan=0.0), -1.0, 1.0)
    dp, rv = a[:3] * max_delta_pos, a[3:6] * max_delta_rot
    if action_frame == "tool":   # rotate tool-frame deltas into the base frame
        R = quat_to_mat(target_quat)
        dp, rv = R @ dp, R @ rv
    pos = target_pos + dp
    pos = ee_pos + np.clip(pos - ee_pos, -max_target_lead, max_target_lead)
    pos = np.clip(pos, workspace_min, workspace_max)
    quat = quat_normalize(quat_mul(rotvec_to_quat(rv), target_quat)) if rv.any() else target_quat
    return pos, quat, float((a[6] + 1.0) * 0.5)


def quat_yaw(q: np.ndarray) -> float:
    """Heading (rad) of the frame's x axis projected on the base xy plane."""
    w, x, y, z = q
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def env_step_rate(task: str = "lift", cameras: bool | Sequence[str] = True, camera_rate: str = "camera",
                  steps: int = 200, seed: int = 0, privileged: bool = False) -> dict[str, float]:
    """TwinEnv steps per wall second under zero actions (resets included when an episode ends), the
    renders per step, and the CPU seconds per step: what `robot-rl bench images` reports for both
    camera rates. Timed after one warm-up reset (renderer and context creation excluded)."""
    import time

    env = TwinEnv(task, cameras=cameras, privileged=privileged, camera_rate=camera_rate, seed=seed)
    try:
        env.reset(seed=seed)
        cams = env.twin.cameras
        rendered0 = cams.rendered if cams is not None else 0
        action = np.zeros(7, np.float32)
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        renders = (cams.rendered - rendered0) if cams is not None else 0
    finally:
        env.close()
    return {"steps_per_s": steps / wall, "cpu_ms_per_step": 1e3 * cpu / steps, "renders_per_step": renders / steps}
