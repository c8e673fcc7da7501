"""ROS2 shells around robot_rl: the ROS transport and lifecycle nodes (standard message types only)."""
