"""`robot-rl bench ros [json=<file>] [duration=10] [cameras=2] [width=640] [height=480] [camera_hz=30]
[joint_hz=1000] [pose_hz=200] [image_qos=reliable] [out=<dir>]`

The ROS2 graph at a real rig's rates on localhost: a lab's own drivers (robot_rl.bench.ros_rig, plain
rclpy publishers in their own process: `cameras` cameras of width x height rgb8 at camera_hz, joint
states at joint_hz, the EE pose at pose_hz) feed the project's recorder_node and policy_node, each run
as its own process as `ros2 run` would (`python -m robot_rl_ros.<node>`, the package's source tree on
PYTHONPATH, so no colcon build is needed). The recorder records every stream at the camera's resolution
for `duration` seconds (its own parameter file: the rig's streams; everything else as configs/ros
ships it); the policy node runs a random-init image policy (joint positions + one 128x128 view per
camera, n_obs_steps 2, 20 Hz actions, replanning every 2 actions) with configs/ros/policy.yaml.

Rows: per stream, frames sent by the rig, recorded, recorded / sent, the losses the recorder reported
(dropped, rejected, missing) and the unreported ones (sent - recorded - reported); recorder CPU (% of
one core, from /proc); policy node: cycles, held cycles, input lag (age of the observation when
acting, p50/p99), target rate and target lead (stamp - publish time, p5/p50/p95), inputs received /
sent. Goals (issue 24): no unreported loss, >= 99 % of frames recorded, every control cycle acted on
with observations < 100 ms old.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAME = "ros"
REPO = Path(__file__).resolve().parents[2]
PKG_SRC = REPO / "ros2_ws" / "src" / "robot_rl_ros"
ARM_JOINTS = [f"panda_joint{i}" for i in range(1, 8)]


def _get(cfg, key, default):
    if cfg is None:
        return default
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


def tiny_image_policy(path: Path, state: str, cameras: list[str], size: int = 128, seed: int = 0) -> Path:
    """A random-init diffusion policy checkpoint (timing and plumbing, not behaviour): the low-dim
    streams `state` ('+'-joined) and one size x size RGB view per camera (stream cam_<name>_rgb), 20 Hz
    actions, chunks of 4, n_obs_steps 2, a few-ms inference on one CPU thread."""
    import torch

    from robot_rl.core.spec import FeatureSpec, PolicySpec
    from robot_rl.policies import PolicyConfig
    from robot_rl.policies.diffusion_policy import DiffusionPolicy
    from robot_rl.policies.io import save_policy

    dims = {"ee_pos": 3, "ee_quat": 4, "gripper_pos": 1, "task_state": 3, "joint_pos": 7, "joint_vel": 7}
    torch.manual_seed(seed)
    obs = [FeatureSpec("state", (sum(dims[s] for s in state.split("+")),), stream=state)]
    obs += [FeatureSpec(c, (3, size, size), "rgb", stream=f"cam_{c}_rgb", normalize="image") for c in cameras]
    spec = PolicySpec(obs=tuple(obs), action=FeatureSpec("action", (7,)), n_obs_steps=2, horizon=8,
                      n_action_steps=4, rate_hz=20.0)
    cfg = PolicyConfig(denoiser="mlp", mlp_hidden_dim=32, mlp_num_blocks=1, step_embed_dim=16, state_dims=(32,),
                       num_inference_steps=4, image_width=8, image_blocks=(1, 1, 1, 1), num_keypoints=8)
    save_policy(DiffusionPolicy(spec, cfg).eval(), path)
    return path


def node_env(domain: int | None = None) -> dict:
    """The environment of a node process: robot_rl_ros importable from the source tree, localhost only."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PKG_SRC), str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if domain is not None:
        env["ROS_DOMAIN_ID"] = str(domain)
    return env
