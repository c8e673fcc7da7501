"""Layer 4: imitation, offline and online RL, distillation and evaluation. No ROS, no hardware."""
