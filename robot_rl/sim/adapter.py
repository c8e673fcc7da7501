"""GymAdapter: any Gymnasium env with Box actions and a success flag, in the shape later stages expect.

The wrapped env must report `info["is_success"]` or `info["success"]`. The adapter
- exposes actions normalized to [-1, 1] (rescaled affinely onto the env's Box bounds);
- returns dict observations (a non-dict observation becomes {"state": obs});
- always sets both `info["is_success"]` and `info["success"]` (bool).
The twin's TwinEnv already satisfies this contract; the adapter is for third-party envs (robot_rl.sim.gym_tasks
builds it for `task=gym` and adds the episode-store view of the observations).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class GymAdapter(gym.Wrapper):
    def __init__(self, env: gym.Env | str, **make_kwargs: Any) -> None:
        if isinstance(env, str):
            env = gym.make(env, **make_kwargs)
        if not isinstance(env.action_space, spaces.Box):
            raise TypeError(f"GymAdapter: {env.spec.id if env.spec else env}: action space must be Box, got "
                            f"{type(env.action_space).__name__}")
        super().__init__(env)
        box = env.action_space
        lo, hi = box.low.astype(np.float64), box.high.astype(np.float64)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError(f"GymAdapter: action bounds must be finite to normalize, got low={lo} high={hi}")
        self._lo, self._hi = lo, hi
        self.action_space = spaces.Box(-1.0, 1.0, box.shape, np.float32)
        obs = env.observation_space
        self._wrap_obs = not isinstance(obs, spaces.Dict)
        self.observation_space = spaces.Dict({"state": obs}) if self._wrap_obs else obs
        self._warned_no_success = False

    def _obs(self, obs):
        return {"state": obs} if self._wrap_obs else obs

    def _info(self, info: dict) -> dict:
        info = dict(info)
        if "is_success" in info:
            s = info["is_success"]
        elif "success" in info:
            s = info["success"]
        else:
            s = False
            info["success_missing"] = True   # the env reports no success flag: counted as failure
        info["is_success"] = info["success"] = bool(np.asarray(s).any())
        return info

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._obs(obs), self._info(info)

    def to_env_action(self, action) -> np.ndarray:
        """A normalized action (clipped to [-1, 1]) in the env's own units."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return (self._lo + (a + 1.0) * 0.5 * (self._hi - self._lo)).astype(self.env.action_space.dtype)

    def to_normalized(self, env_action) -> np.ndarray:
        """An action in the env's own units, normalized (not clipped: out of bounds maps outside [-1, 1])."""
        return (2.0 * (np.asarray(env_action, np.float64) - self._lo) / (self._hi - self._lo) - 1.0).astype(np.float32)

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(self.to_env_action(action))
        return self._obs(obs), float(r), bool(term), bool(trunc), self._info(info)
