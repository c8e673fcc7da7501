"""The twin is deterministic given a seed (physics, controller, task reset, scripted noise)."""

from __future__ import annotations

import numpy as np

from robot_rl.sim.env import TwinEnv
from robot_rl.sim.experts import make_teleop


def _rollout(seed: int, steps: int = 25) -> np.ndarray:
    env = TwinEnv(task="lift", seed=seed)
    teleop = make_teleop(env, noise=0.5, seed=seed)
    obs, _ = env.reset(seed=seed)
    teleop.reset()
    traj = []
    for _ in range(steps):
        obs, *_ = env.step(teleop.act())
        traj.append(np.concatenate([obs["joint_pos"], obs["task_state"]]))
    env.close()
    return np.array(traj)


def test_same_seed_gives_bitwise_identical_rollouts():
    np.testing.assert_array_equal(_rollout(7), _rollout(7))


def test_different_seeds_give_different_rollouts():
    assert np.abs(_rollout(7) - _rollout(8)).max() > 1e-3
