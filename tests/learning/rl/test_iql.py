"""IQL critics: the expectile loss against hand-computed values, V converging to the tau-expectile of Q over the
data's actions, and Q bootstrapping through a chunk with gamma^k."""

import numpy as np
import pytest
import torch

from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.learning.rl.iql import IQLConfig, IQLCritics, TransitionBatches, expectile_loss
from robot_rl.learning.rl.transitions import Transitions
from robot_rl.policies.critics import ChunkFeatures
from robot_rl.policies.normalizer import Normalizer

SPEC = PolicySpec(obs=(FeatureSpec("state", (2,), normalize="none"),),
                  action=FeatureSpec("action", (1,), normalize="none"), n_obs_steps=1, horizon=2, n_action_steps=2)


def test_expectile_loss_weights_positive_and_negative_errors_asymmetrically():
    diff = torch.tensor([1.0, -2.0, 0.5])
    # 0.7 * 1^2, 0.3 * 2^2, 0.7 * 0.5^2, averaged
    assert float(expectile_loss(diff, 0.7)) == pytest.approx((0.7 + 1.2 + 0.175) / 3)
    assert float(expectile_loss(diff, 0.5)) == pytest.approx(0.5 * float(diff.square().mean()))


def _transitions(obs, actions, rewards, discounts, next_obs):
    n = len(rewards)
    f = lambda x: np.asarray(x, np.float32).reshape(n, 1, 2)  # noqa: E731
    return Transitions({"state": f(obs)}, np.asarray(actions, np.float32).reshape(n, 2, 1),
                       np.asarray(rewards, np.float32), np.asarray(discounts, np.float32), {"state": f(next_obs)},
                       np.full(n, 2, np.int32), np.zeros(n, bool), np.zeros(n, np.uint8), np.zeros(n, np.int64),
                       np.zeros(n, bool))


def _critics(expectile=0.7, seed=0):
    torch.manual_seed(seed)
    return IQLCritics(ChunkFeatures(SPEC, Normalizer(SPEC)),
                      IQLConfig(expectile=expectile, n_q=2, hidden=(32, 32), lr=3e-3, polyak=0.05, batch_size=64))


@pytest.mark.parametrize("expectile", [0.7, 0.9])
def test_value_converges_to_the_expectile_of_q_over_dataset_actions(expectile):
    # one state, two terminal actions: reward 1 (a = +1) or 0 (a = -1), half of the data each.
    # The tau-expectile e of {0, 1} w.p. 1/2 solves tau (1 - e) = (1 - tau) e, so e = tau.
    n = 200
    a = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    s = np.zeros((n, 2))
    t = _transitions(s, np.repeat(a[:, None], 2, 1), (a > 0).astype(float), np.zeros(n), s)
    critics = _critics(expectile)
    critics.fit(TransitionBatches(t), 300, progress=False)
    obs = {"state": torch.zeros(1, 1, 2)}
    assert float(critics.value(obs).detach()) == pytest.approx(expectile, abs=0.05)
    adv = critics.advantage({"state": torch.zeros(2, 1, 2)}, torch.tensor([[[1.0], [1.0]], [[-1.0], [-1.0]]]))
    assert float(adv[0]) > 0 > float(adv[1])


def test_q_bootstraps_through_a_chunk_with_the_chunk_discount():
    # s0 -> s1 (no reward, k = 8 steps: discount gamma^k) -> terminal with reward 1: Q(s0, a) = gamma^k
    d = 0.9 ** 8
    s0, s1 = [0.0, 1.0], [1.0, 0.0]
    t = _transitions([s0, s1] * 50, np.zeros((100, 2)), [0.0, 1.0] * 50, [d, 0.0] * 50, [s1, s1] * 50)
    critics = _critics(0.5)
    critics.fit(TransitionBatches(t), 400, progress=False)
    q = critics.q_value({"state": torch.tensor([[s0], [s1]])}, torch.zeros(2, 2, 1))
    np.testing.assert_allclose(q.detach().numpy(), [d, 1.0], atol=0.05)
