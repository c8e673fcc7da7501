"""A tiny untrained pixel policy for the twin (proprio + the front camera, no task_state), saved as a checkpoint
whose run names the reach task: the online path from pixels runs on it in seconds."""

from pathlib import Path

import torch

from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.policies.diffusion_policy import DiffusionPolicy
from robot_rl.policies.io import save_policy
from robot_rl.policies.model_config import PolicyConfig

TINY_PIXEL_MODEL = PolicyConfig(denoiser="mlp", mlp_hidden_dim=32, mlp_num_blocks=1, step_embed_dim=16, image_width=4,
                                image_blocks=(1, 1, 1, 1), num_keypoints=4, state_dims=(16,), num_inference_steps=2,
                                prediction_type="sample")
REACH = {"name": "reach", "params": {"time_limit": 2.0}}


def pixel_spec(cameras=("front",), size: int = 128) -> PolicySpec:
    """The twin's pixel spec (state = ee_pos+ee_quat+gripper_pos, camera streams at their calibrated size)."""
    cams = tuple(FeatureSpec(n, (3, size, size), "rgb", f"cam_{n}_rgb", "image") for n in cameras)
    return PolicySpec(obs=(FeatureSpec("state", (8,), stream="ee_pos+ee_quat+gripper_pos", normalize="none"), *cams),
                      action=FeatureSpec("action", (7,), normalize="none"), n_obs_steps=2, horizon=8,
                      n_action_steps=4, rate_hz=20.0)


def save_pixel_policy(path: Path, cameras=("front",), task=REACH, store: str | None = None) -> Path:
    torch.manual_seed(0)
    policy = DiffusionPolicy(pixel_spec(cameras), TINY_PIXEL_MODEL)
    return save_policy(policy, path, config={"task": task, "store": store})
