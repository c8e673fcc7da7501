"""Peers measured side by side with robot_rl by `robot-rl bench all`, each in its own environment
(a peer's packages never enter robot_rl's venv): lerobot_peer (our side) drives lerobot_worker
(LeRobotDataset + DiffusionPolicy, run inside the LeRobot venv)."""
