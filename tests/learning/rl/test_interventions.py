"""Interventions in the twin: the scripted corrector takes over a failing policy, the steps are flagged,
recorded into the store, and come back as intervention transitions for the learners."""

import numpy as np

from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.learning.rl.chunk_env import ChunkEnv
from robot_rl.learning.rl.transitions import SOURCES, store_transitions
from robot_rl.sim.corrector import ScriptedCorrector
from robot_rl.sim.env import TwinEnv
from robot_rl.data.writer import EpisodeWriter

SPEC = PolicySpec(obs=(FeatureSpec("state", (3,), stream="ee_pos"),), action=FeatureSpec("action", (7,)),
                  n_obs_steps=2, horizon=8, n_action_steps=4, rate_hz=10.0)


def test_corrector_rescues_a_policy_going_the_wrong_way_and_flags_it(tmp_path):
    from robot_rl.data.schema import EpisodeMeta
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.sim.episode_recorder import EpisodeRecorder, twin_stream_specs

    raw = TwinEnv("reach", seed=0)
    store = EpisodeStore.create(tmp_path / "online.zarr", twin_stream_specs(raw))
    writer = EpisodeWriter(store)
    recorder = EpisodeRecorder(raw, writer)
    corrector = ScriptedCorrector(raw, patience=2, takeover_steps=6)
    env = ChunkEnv(raw, SPEC, gamma=0.99, corrector=corrector, recorder=recorder)
    recorder.begin(EpisodeMeta(source="policy", task="reach"))
    env.reset(seed=5)
    away = np.zeros((4, 7), np.float32)
    away[:, 2] = 1.0                                      # straight up, away from every reach goal below
    flagged = 0
    while True:
        step = env.step(away)
        flagged += step.interventions
        if step.done:
            break
    recorder.end(env.success)
    writer.close()
    t = env.episode_transitions()
    assert env.success and corrector.interventions >= 1 and flagged > 0
    assert (t.sources == SOURCES["intervention"]).sum() == t.interventions.sum() > 0
    stored = store_transitions(EpisodeStore.open(tmp_path / "online.zarr"), SPEC, 0.99, stride=4)
    np.testing.assert_array_equal(stored.interventions, t.interventions)
    np.testing.assert_allclose(stored.actions, t.actions, atol=1e-6)


def test_corrector_stays_out_of_a_policy_that_agrees_with_the_expert():
    raw = TwinEnv("reach", seed=0)
    expert = ScriptedCorrector(raw).expert
    corrector = ScriptedCorrector(raw, patience=2)
    env = ChunkEnv(raw, SPEC, gamma=0.99, corrector=corrector)
    env.reset(seed=5)
    expert.reset()
    while True:
        step = env.step(np.stack([expert.act() for _ in range(4)])[:1])
        if step.done:
            break
    assert env.success and corrector.interventions == 0

