"""DDPM noise schedule (training) and DDIM chains as Gaussian steps (sampling, per-step log-probs)."""

from robot_rl.policies.diffusion.ddim import (
    GaussianStep, SampleResult, chain_log_probs, ddim_step, gaussian_log_prob, inference_timesteps, sample_chain,
)
from robot_rl.policies.diffusion.schedule import NoiseSchedule, make_betas

__all__ = [
    "GaussianStep", "NoiseSchedule", "SampleResult", "chain_log_probs", "ddim_step", "gaussian_log_prob",
    "inference_timesteps", "make_betas", "sample_chain",
]
