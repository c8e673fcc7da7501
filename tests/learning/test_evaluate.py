"""evaluate(): the policy's sampling noise comes from the episode seeds, and the caller's stream is left alone."""

import numpy as np
import torch

from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.core.types import ActionChunk
from robot_rl.learning.evaluate import evaluate

SPEC = PolicySpec(obs=(FeatureSpec("x", (1,)),), action=FeatureSpec("action", (1,)), n_obs_steps=1, horizon=2,
                  n_action_steps=2)


class CoinEnv:
    """Succeeds when the policy's action exceeds 0.5 at any of 4 steps."""

    def reset(self, seed=None):
        self.steps = 0
        return {"x": np.zeros(1, np.float32)}, {}

    def step(self, action):
        self.steps += 1
        ok = bool(action[0] > 0.5)
        return {"x": np.zeros(1, np.float32)}, float(ok), ok, self.steps >= 4, {"is_success": ok}

    def close(self):
        pass


class NoisyPolicy:
    """A sampling policy: every action from torch's global generator, like a diffusion policy's noise."""

    def reset(self):
        pass

    def act(self, features):
        return ActionChunk(0.6 * torch.rand(2, 1).numpy(), np.arange(2) / 10.0)


def test_an_evaluation_repeats_exactly_and_leaves_the_callers_random_stream():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = evaluate(NoisyPolicy(), CoinEnv, SPEC, 40, seed=5, progress=False)
    assert torch.equal(torch.get_rng_state(), state)          # a training run that evaluates keeps its stream
    torch.manual_seed(7)
    again = evaluate(NoisyPolicy(), CoinEnv, SPEC, 40, seed=5, progress=False)
    assert [e["success"] for e in first.per_episode] == [e["success"] for e in again.per_episode]
    assert 0 < first.success_rate < 1                           # the noise decides: not all alike
    other = evaluate(NoisyPolicy(), CoinEnv, SPEC, 40, seed=1005, progress=False)
    assert [e["success"] for e in other.per_episode] != [e["success"] for e in first.per_episode]
