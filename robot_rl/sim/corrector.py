"""A scripted stand-in for the human who takes over during online RL (HIL-SERL style interventions).

The noiseless scripted expert shadows the policy every step. When the policy's commanded translation
points away from the expert's for `patience` consecutive steps (or it opens/closes the gripper
against the expert), the corrector takes over for `takeover_steps` steps and then hands back.
Executed corrector actions are flagged as interventions, so learners put them in the prior half of
their batches.
"""

from __future__ import annotations

import numpy as np

from robot_rl.sim.env import TwinEnv
from robot_rl.sim.experts import make_teleop


class ScriptedCorrector:
    def __init__(self, env: TwinEnv, patience: int = 4, takeover_steps: int = 10, min_cosine: float = 0.0,
                 seed: int = 0) -> None:
        self.expert = make_teleop(env, noise=0.0, seed=seed)
        self.patience, self.takeover_steps, self.min_cosine = patience, takeover_steps, min_cosine
        self.interventions = 0
        self.reset()

    def reset(self) -> None:
        self.expert.reset()
        self._bad = 0
        self._left = 0

    def _disagrees(self, action: np.ndarray, expert: np.ndarray) -> bool:
        a, e = np.asarray(action[:3], float), np.asarray(expert[:3], float)
        na, ne = np.linalg.norm(a), np.linalg.norm(e)
        wrong_way = ne > 0.2 and (na < 0.1 * ne or float(a @ e) < self.min_cosine * na * ne)
        wrong_grip = abs(float(action[6]) - float(expert[6])) > 1.0
        return wrong_way or wrong_grip

    def __call__(self, obs: dict, action: np.ndarray) -> np.ndarray | None:
        expert = np.asarray(self.expert.act(), np.float32)   # every step, so the expert's phase tracks the episode
        if self._left > 0:
            self._left -= 1
            return expert
        self._bad = self._bad + 1 if self._disagrees(action, expert) else 0
        if self._bad >= self.patience:
            self._bad, self._left = 0, self.takeover_steps - 1
            self.interventions += 1
            return expert
        return None


def scripted_corrector(env: TwinEnv) -> ScriptedCorrector:
    """The default twin corrector (what `robot-rl finetune corrector=scripted` uses)."""
    return ScriptedCorrector(env)
