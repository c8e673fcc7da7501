"""Layer 3, models: observation encoders, diffusion denoisers and schedulers, the one-step student.

Imports torch; never imports data files, ROS or hardware.
"""

from robot_rl.policies.base import ChunkPolicy
from robot_rl.policies.model_config import PolicyConfig
from robot_rl.policies.device import resolve_device
from robot_rl.policies.diffusion_policy import DiffusionPolicy
from robot_rl.policies.ema import EMA
from robot_rl.policies.io import load_policy, save_policy
from robot_rl.policies.normalizer import Normalizer, affine_from_stats
from robot_rl.policies.one_step import OneStepPolicy

__all__ = [
    "EMA", "ChunkPolicy", "DiffusionPolicy", "Normalizer", "OneStepPolicy", "PolicyConfig", "affine_from_stats",
    "load_policy", "resolve_device", "save_policy",
]
