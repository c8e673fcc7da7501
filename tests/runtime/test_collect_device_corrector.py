"""A teleop device as ChunkEnv's corrector: while the intervention toggle is on, the device's action replaces
the policy's and the step is flagged, in ChunkEnv's record and in the store."""

from __future__ import annotations

import numpy as np

from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.data.schema import EpisodeMeta
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.hardware.teleop.keyboard import KeyboardTeleop
from robot_rl.learning.rl.chunk_env import ChunkEnv
from robot_rl.runtime.device_corrector import DeviceCorrector
from robot_rl.sim.env import TwinEnv
from robot_rl.sim.episode_recorder import EpisodeRecorder, twin_stream_specs
from robot_rl.data.writer import EpisodeWriter

SPEC = PolicySpec(obs=(FeatureSpec("state", (3,), stream="ee_pos"),), action=FeatureSpec("action", (7,)),
                  n_obs_steps=2, horizon=8, n_action_steps=4, rate_hz=10.0)
POLICY = np.tile(np.array([0, 0, 0.5, 0, 0, 0, 1], np.float32), (4, 1))   # up, gripper closed
FULL = 0.15 / 0.4


def test_keyboard_takes_over_while_the_intervention_toggle_is_on(tmp_path):
    raw = TwinEnv("reach", policy_hz=10, seed=0)
    store = EpisodeStore.create(tmp_path / "hil.zarr", twin_stream_specs(raw))
    writer = EpisodeWriter(store)
    recorder = EpisodeRecorder(raw, writer)
    kb = KeyboardTeleop()
    corrector = DeviceCorrector.for_env(kb, raw)
    env = ChunkEnv(raw, SPEC, corrector=corrector, recorder=recorder)
    recorder.begin(EpisodeMeta(source="policy", task="reach"))
    env.reset(seed=5)
    assert env.step(POLICY).interventions == 0                     # chunk 1: the policy
    for key in ("t", "space", "a"):                                # take over, deadman, +y
        kb.press(key)
    assert env.step(POLICY).interventions == 4                     # chunk 2: the operator
    kb.press("g")                                                  # gripper toggle during the take-over
    assert env.step(POLICY).interventions == 4                     # chunk 3
    kb.release("space")                                            # deadman released: hold still, still the operator
    assert env.step(POLICY).interventions == 4                     # chunk 4
    kb.release("t")
    kb.press("t")                                                  # hand back
    assert env.step(POLICY).interventions == 0                     # chunk 5
    record = env.episode_record()
    recorder.end(False)
    writer.close()

    flags = np.repeat([False, True, True, True, False], 4)
    np.testing.assert_array_equal(record.interventions, flags)
    a = record.actions
    np.testing.assert_array_equal(a[~flags], np.tile(POLICY[0], (8, 1)))
    np.testing.assert_allclose(a[4:12, :6], np.tile([0, FULL, 0, 0, 0, 0], (8, 1)), atol=1e-6)
    assert (a[4:8, 6] == 1).all() and (a[8:16, 6] == -1).all()     # kept the policy's grip, then toggled open
    assert not a[12:16, :6].any()                                  # no deadman: no motion
    assert corrector.interventions == 1 and corrector.steps_taken_over == 12
    pos = record.obs["state"]
    assert pos[12, 1] - pos[4, 1] > 0.05 and abs(pos[12, 2] - pos[4, 2]) < 0.01   # +y under the operator, not up

    stored, _ = EpisodeStore.open(tmp_path / "hil.zarr").read("intervention", 0)
    np.testing.assert_array_equal(stored[:, 0].astype(bool), flags)
    np.testing.assert_allclose(EpisodeStore.open(tmp_path / "hil.zarr").read("action", 0)[0], a, atol=1e-6)


def test_every_episode_starts_with_the_policy_in_control():
    raw = TwinEnv("reach", policy_hz=10, seed=0)
    kb = KeyboardTeleop()
    corrector = DeviceCorrector.for_env(kb, raw)
    env = ChunkEnv(raw, SPEC, corrector=corrector)
    env.reset(seed=1)
    kb.press("t")
    kb.press("space")
    assert env.step(POLICY[:1]).interventions == 1
    env.reset(seed=2)
    assert env.step(POLICY[:1]).interventions == 0
    kb.release("t")
    kb.press("t")
    assert env.step(POLICY[:1]).interventions == 1
