"""The learned success classifier: labels from the store, training, threshold choice, save/load, and the
run-time detector against the twin's own success check."""

import numpy as np
import pytest
import torch

from robot_rl.core.errors import ConfigError
from robot_rl.core.spec import FeatureSpec
from robot_rl.learning.reward_classifier import RewardConfig, SuccessDetector, pick_threshold, train_reward_classifier
from robot_rl.policies.reward_model import RewardModel



def test_threshold_is_the_lowest_with_the_precision_asked():
    p = np.array([0.1, 0.4, 0.6, 0.7, 0.9])
    y = np.array([0, 1, 0, 1, 1])
    assert pick_threshold(p, y, 0.7) == pytest.approx(0.4)
    assert pick_threshold(p, y, 1.0) == pytest.approx(0.7)


def test_classifier_learns_twin_success_and_detects_it_online(reach_store, tmp_path):
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.sim.env import TwinEnv
    from robot_rl.sim.experts import make_teleop

    torch.set_num_threads(1)
    store = EpisodeStore.open(reach_store)
    obs = [FeatureSpec("state", (store.streams["ee_pos"].shape[0] + store.streams["task_state"].shape[0],),
                       stream="ee_pos+task_state")]
    model, m = train_reward_classifier(store, obs, RewardConfig(steps=300, batch_size=64, val_ratio=0.0, positive_s=0.1,
                                                                progress=False), tmp_path / "reward")
    assert m["train_positive_frames"] > 0 and m["val_accuracy"] > 0.9
    loaded = RewardModel.load(tmp_path / "reward")
    assert loaded.threshold == model.threshold

    env = TwinEnv("reach", seed=0)
    teleop = make_teleop(env)
    detector = SuccessDetector(loaded, consecutive=1)
    o, _ = env.reset(seed=123)
    teleop.reset()
    early = detector(o)
    fired_at, true_at, step = None, None, 0
    while True:
        o, _, term, trunc, info = env.step(teleop.act())
        step += 1
        if fired_at is None and detector(o):
            fired_at = step
        if info["is_success"] and true_at is None:
            true_at = step
        if term or trunc:
            break
    env.close()
    assert not early and true_at is not None and fired_at is not None
    assert abs(fired_at - true_at) <= 5                      # within half a second at 10 Hz


def test_all_positive_or_all_negative_data_is_a_clear_error(reach_store, tmp_path):
    from robot_rl.data.episode_store import EpisodeStore

    store = EpisodeStore.open(reach_store)
    obs = [FeatureSpec("state", (3,), stream="ee_pos")]
    with pytest.raises(ConfigError, match="success frames"):
        train_reward_classifier(store, obs, RewardConfig(steps=1, positive_s=1e6, val_ratio=0.0, progress=False))


def test_train_algo_reward_command(reach_store, tmp_path):
    import json

    from robot_rl.cli import main

    assert main(["train", "algo=reward", f"store={reach_store}", f"out={tmp_path}", "reward.steps=20",
                 "reward.val_ratio=0", "reward.positive_s=0.1", "reward.batch_size=32",
                 "spec.obs.state.stream=ee_pos+task_state"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["algo"] == "reward" and 0 < res["threshold"] < 1
    assert RewardModel.load(tmp_path / "reward").spec.obs[0].stream == "ee_pos+task_state"
