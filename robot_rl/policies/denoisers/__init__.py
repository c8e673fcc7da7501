"""Denoisers: forward(noisy_actions (B, T, Da), timestep (B,), global_cond (B, C)) -> (B, T, Da)."""

from robot_rl.policies.denoisers.mlp import ResidualMLPDenoiser
from robot_rl.policies.denoisers.unet1d import ConditionalUnet1D

__all__ = ["ConditionalUnet1D", "ResidualMLPDenoiser"]
