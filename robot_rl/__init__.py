"""robot_rl: real-robot learning stack (episode store, MuJoCo twin, diffusion policies, RL, deployment)."""

__version__ = "0.1.0"
