"""Gymnasium API: registered ids, dict observations, delta actions, cameras with timestamps."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import robot_rl.sim  # noqa: F401  (registers the environments)
from robot_rl.sim.adapter import GymAdapter
from robot_rl.sim.env import TwinEnv


def test_registered_envs_have_dict_observations_matching_their_space():
    env = gym.make("robot_rl/LiftTwin-v0", policy_hz=10)
    obs, info = env.reset(seed=0)
    assert set(obs) == set(env.observation_space.spaces)
    for k, v in obs.items():
        assert v.shape == env.observation_space[k].shape, k
    assert env.action_space.shape == (7,)
    obs, r, term, trunc, info = env.step(env.action_space.sample() * 0)
    assert "is_success" in info and "success" in info
    env.close()


def test_delta_action_moves_the_target_in_the_base_frame():
    env = TwinEnv(task="reach", policy_hz=20)
    obs, _ = env.reset(seed=0)
    start = obs["ee_pos"].copy()
    for _ in range(10):
        obs, *_ = env.step([0, 1, 0, 0, 0, 0, -1])                   # +y at full speed
    moved = obs["ee_pos"] - start
    assert moved[1] > 0.1 and abs(moved[0]) < 0.01 and abs(moved[2]) < 0.01
    env.close()


def test_tool_frame_actions_follow_the_gripper_axes():
    env = TwinEnv(task="reach", action_frame="tool")
    obs, _ = env.reset(seed=0)
    start = obs["ee_pos"].copy()
    for _ in range(5):
        obs, *_ = env.step([0, 0, 1, 0, 0, 0, -1])                   # tool +z points down at home
    assert obs["ee_pos"][2] < start[2] - 0.05
    env.close()


def test_policy_rate_is_configurable():
    env = TwinEnv(task="reach", policy_hz=50)
    env.reset(seed=0)
    t0 = env.twin.time
    env.step(np.zeros(7))
    assert abs(env.twin.time - t0 - 0.02) < 1e-9
    env.close()


def test_privileged_state_only_when_asked():
    env = TwinEnv(task="lift", privileged=False)
    obs, _ = env.reset(seed=0)
    assert "task_state" not in obs
    env.close()


def test_cameras_render_at_their_own_rate_with_timestamps():
    env = TwinEnv(task="lift", cameras=["front"], policy_hz=10)
    obs, _ = env.reset(seed=0)
    assert obs["cam_front_rgb"].shape == (128, 128, 3) and obs["cam_front_rgb"].dtype == np.uint8
    times = []
    env.twin.cameras.listeners.append(lambda name, t, img: times.append(t))
    for _ in range(3):
        env.step(np.zeros(7))
    assert len(times) == 9                                        # 30 fps over 0.3 s
    np.testing.assert_allclose(np.diff(times), 1 / 30, atol=1.5e-3)  # on the 1 ms physics grid
    assert obs["cam_front_rgb"].std() > 5                          # a real image, not blank
    env.close()


class _TinyEnv(gym.Env):
    """A third-party env: Box actions in [0, 2], flat observation, info['success']."""

    observation_space = gym.spaces.Box(-10, 10, (2,), np.float32)
    action_space = gym.spaces.Box(0.0, 2.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        self.x = 0.0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.last = float(action[0])
        self.x += self.last
        return np.array([self.x, 0], np.float32), 0.0, False, False, {"success": self.x > 3}


def test_adapter_normalizes_actions_wraps_observations_and_reports_success():
    env = GymAdapter(_TinyEnv())
    obs, info = env.reset()
    assert set(obs) == {"state"} and info["is_success"] is False
    obs, r, term, trunc, info = env.step(np.array([1.0]))            # +1 -> upper bound 2.0
    assert env.unwrapped.last == 2.0
    env.step(np.array([-1.0]))                                       # -1 -> lower bound 0.0
    assert env.unwrapped.last == 0.0
    obs, r, term, trunc, info = env.step(np.array([1.0]))
    assert info["is_success"] is True and info["success"] is True
