"""Reinforcement learning on top of a diffusion policy: chunk-level transitions, the chunk env,
the online loop, and the algorithms (offline IQL + RL-100 improvement, residual off-policy,
PPO over the denoising chain, latent-noise steering). Layer 4: no ROS, no hardware."""
