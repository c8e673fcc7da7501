"""GAE over executed chunks against hand-computed values: per-transition discounts, termination, truncation."""

import numpy as np
import pytest

from robot_rl.learning.rl.gae import episode_ends, gae

# two episodes in one rollout: episode 7 truncated by the time limit (its last chunk bootstraps from
# V(next_obs)), then episode 8 terminated inside its last chunk (discount 0: nothing after it counts)
EPISODES = np.array([7, 7, 8, 8, 8])
REWARDS = np.array([1.0, 0.0, 0.0, 0.0, 1.0])
DISCOUNTS = np.array([0.25, 0.25, 0.5, 0.5, 0.0])
VALUES = np.array([1.0, 1.0, 1.0, 2.0, 3.0])
NEXT_VALUES = np.array([1.0, 8.0, 2.0, 3.0, 100.0])   # 100 must not leak in: that chunk terminated


def test_episode_ends_split_runs_of_episode_ids():
    assert episode_ends(EPISODES).tolist() == [False, True, False, False, True]


def test_advantages_and_targets_match_hand_computation():
    # deltas: 1 + .25*1 - 1 = .25 | 0 + .25*8 - 1 = 1 | 0 + .5*2 - 1 = 0 | 0 + .5*3 - 2 = -.5 | 1 + 0 - 3 = -2
    # lambda .5, backwards within each episode: A4 = -2, A3 = -.5 + .5*.5*(-2) = -1, A2 = 0 + .25*(-1) = -.25
    #                                           A1 = 1 (truncated end: no recursion), A0 = .25 + .25*.5*1 = .375
    adv, ret = gae(REWARDS, DISCOUNTS, VALUES, NEXT_VALUES, episode_ends(EPISODES), lam=0.5)
    np.testing.assert_allclose(adv, [0.375, 1.0, -0.25, -1.0, -2.0], atol=1e-6)
    np.testing.assert_allclose(ret, [1.375, 2.0, 0.75, 1.0, 1.0], atol=1e-6)


def test_lambda_one_gives_bootstrapped_discounted_returns():
    _, ret = gae(REWARDS, DISCOUNTS, VALUES, NEXT_VALUES, episode_ends(EPISODES), lam=1.0)
    # truncated episode: 1 + .25 * (0 + .25 * V'=8); terminated one: .5 * .5 * 1 reward at the end
    np.testing.assert_allclose(ret, [1.5, 2.0, 0.25, 0.5, 1.0], atol=1e-6)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="lengths differ"):
        gae(REWARDS, DISCOUNTS[:4], VALUES, NEXT_VALUES, episode_ends(EPISODES))
