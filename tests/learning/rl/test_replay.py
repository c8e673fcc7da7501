"""Replay: ring-buffer overwrite, exact symmetric-sampling proportions, n-step returns against hand-computed sums."""

import numpy as np
import pytest

from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.learning.rl.replay import ReplayBuffer, SymmetricReplay, n_step_transitions
from robot_rl.learning.rl.transitions import SOURCES, Transitions, chunk_transitions

SPEC = PolicySpec(obs=(FeatureSpec("state", (1,)),), action=FeatureSpec("action", (1,)), n_obs_steps=1, horizon=2,
                  n_action_steps=2, rate_hz=10.0)
GAMMA = 0.9


def _episode(T, rewards, terminated, stride=None, episode=0, source="online", interventions=None):
    obs = {"state": np.arange(T + 1, dtype=np.float32)[:, None]}       # obs value = env step index
    return chunk_transitions(obs, np.zeros((T, 1), np.float32), np.asarray(rewards, float), terminated, SPEC, GAMMA,
                             stride=stride, episode=episode, source=source, interventions=interventions)


def _rows(values):
    t = _episode(len(values), np.zeros(len(values)), False, stride=1)    # one row per value
    t.rewards = np.asarray(values, np.float32)
    return t


@pytest.mark.parametrize("terminated", [False, True])
@pytest.mark.parametrize("stride", [None, 1])
def test_n_step_returns_equal_the_discounted_sum_over_the_spanned_env_steps(terminated, stride):
    T, n = 7, 3
    r = np.arange(1, T + 1) * 0.1
    t = _episode(T, r, terminated, stride=stride)
    folded = n_step_transitions(t, n, stride=stride or 0)
    starts = t.obs["state"][:, 0, 0].astype(int)
    for i, s in enumerate(starts):
        end = min(T, s + n * SPEC.n_action_steps)                     # n chunks of 2 steps, cut at the episode end
        expected_r = sum(GAMMA ** (k - s) * r[k] for k in range(s, end))
        expected_d = 0.0 if terminated and end == T else GAMMA ** (end - s)
        assert folded.rewards[i] == pytest.approx(expected_r, rel=1e-5), (i, s)
        assert folded.discounts[i] == pytest.approx(expected_d, rel=1e-5), (i, s)
        assert folded.next_obs["state"][i, 0, 0] == end
        assert folded.steps[i] == end - s
    np.testing.assert_array_equal(folded.actions, t.actions)            # the critic scores the first chunk's action


def test_n_step_stops_at_a_termination_and_never_crosses_episodes():
    a = _episode(2, [0, 1], True)                # success at step 1: one chunk, terminal
    b = _episode(4, [0, 0, 0, 2], False, episode=1)
    folded = n_step_transitions(Transitions.concat([a, b]), 3)
    assert len(a) == 1 and folded.discounts[0] == 0.0 and folded.rewards[0] == pytest.approx(GAMMA)
    assert folded.rewards[1] == pytest.approx(GAMMA ** 3 * 2)          # episode 1 alone
    assert folded.next_obs["state"][1, 0, 0] == 4


def test_ring_buffer_overwrites_the_oldest_rows():
    buf = ReplayBuffer(capacity=5)
    buf.add(_rows([1, 2, 3]))
    buf.add(_rows([4, 5, 6, 7]))
    assert len(buf) == 5 and buf.added == 7 and buf.cursor == 2
    np.testing.assert_allclose(sorted(buf.get(np.arange(5)).rewards), [3, 4, 5, 6, 7])
    buf.add(_rows(list(range(10, 18))))                                 # more than the capacity: the newest 5
    np.testing.assert_allclose(sorted(buf.get(np.arange(5)).rewards), [13, 14, 15, 16, 17])
    with pytest.raises(ValueError, match="extras"):
        t = _rows([1])
        t.extras["noise"] = np.zeros((1, 3))
        buf.add(t)


@pytest.mark.parametrize("fraction,batch", [(0.5, 256), (0.25, 64), (0.0, 10), (1.0, 10)])
def test_symmetric_sampling_takes_exact_shares(fraction, batch):
    replay = SymmetricReplay(capacity=100, prior_fraction=fraction)
    replay.add_prior(_episode(20, np.zeros(20), False, stride=1, source="demo"))
    replay.add_online(_episode(20, np.zeros(20), False, source="online"))
    rng = np.random.default_rng(0)
    for _ in range(3):
        b = replay.sample(batch, rng)
        assert len(b) == batch
        assert int((b.sources == SOURCES["demo"]).sum()) == round(fraction * batch)
        assert int((b.sources == SOURCES["online"]).sum()) == batch - round(fraction * batch)


def test_interventions_join_the_prior_half_and_an_empty_side_gives_up_its_share():
    replay = SymmetricReplay(capacity=100, prior_fraction=0.5)
    replay.add_online(_episode(8, np.zeros(8), False))                  # no prior data yet
    assert replay.split(32) == (0, 32)
    flags = np.zeros(8, bool)
    flags[5] = True                                                     # one corrected step, in the third chunk
    replay.add_online(_episode(8, np.zeros(8), False, episode=1, interventions=flags))
    assert len(replay.prior) == 1 and len(replay.online) == 8
    b = replay.sample(32, np.random.default_rng(1))
    assert int((b.sources == SOURCES["intervention"]).sum()) >= 16      # the whole prior half + online draws
    assert replay.split(32) == (16, 16)
