"""Layer 5: recording sessions, the policy runner, actor/learner. ROS-free: talks through robot_rl.runtime.transport."""
