"""Layer 2: the MuJoCo twin (model, TwinArm backend, cameras, tasks, scripted teleop, Gymnasium envs).

Registered environments (gymnasium.make): robot_rl/ReachTwin-v0, robot_rl/PushTwin-v0,
robot_rl/LiftTwin-v0, robot_rl/InsertTwin-v0; keyword arguments go to `TwinEnv`.
"""

import os as _os

# MuJoCo picks its OpenGL backend when first imported (this package imports it): default to
# headless EGL so the twin's cameras render without a display; a user's MUJOCO_GL wins.
_os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as _gym

ENV_IDS = {"reach": "robot_rl/ReachTwin-v0", "push": "robot_rl/PushTwin-v0", "lift": "robot_rl/LiftTwin-v0",
           "insert": "robot_rl/InsertTwin-v0"}

for _task, _id in ENV_IDS.items():
    if _id not in _gym.registry:
        _gym.register(id=_id, entry_point="robot_rl.sim.env:TwinEnv", kwargs={"task": _task},
                      disable_env_checker=True)
