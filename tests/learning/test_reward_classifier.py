"""The learned success classifier: labels from the store, training, threshold choice, save/load, and the
run-time detector against the twin's own success check."""

import numpy as np
import pytest
import torch

from robot_rl.core.errors import ConfigError
from robot_rl.core.spec import FeatureSpec
from robot_rl.learning.reward_classifier import (RewardConfig, SuccessDetector, classifier_spec, frame_labels,
                                                 pick_threshold, train_reward_classifier)
from robot_rl.policies.reward_model import RewardModel


def test_threshold_is_the_lowest_with_the_precision_asked():
    p = np.array([0.1, 0.4, 0.6, 0.7, 0.9])
    y = np.array([0, 1, 0, 1, 1])
    assert pick_threshold(p, y, 0.7) == pytest.approx(0.4)
    assert pick_threshold(p, y, 1.0) == pytest.approx(0.7)


def _labelled_store(path, episodes=((True, True), (False, False), (True, False))):
    """10 Hz episodes of a `height` that rises over 2 s: (0) successful, recording stops the instant the
    success flag comes on (a demo without a hold: every frame but the last is the task NOT done yet);
    (1) failed; (2) marked successful by an operator, no per-step flag at all. episodes: (success, flagged)."""
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.data.schema import StreamSpec
    from robot_rl.data.writer import EpisodeWriter

    store = EpisodeStore.create(path, [StreamSpec("action", "float32", (1,), 10.0),
                                       StreamSpec("height", "float32", (1,), 10.0),
                                       StreamSpec("success", "uint8", (1,), 10.0, interp="hold")])
    with EpisodeWriter(store) as w:
        for success, flag_last in episodes:
            w.begin_episode()
            for k in range(21):
                t = k / 10
                w.append("action", np.zeros(1, np.float32), t)
                w.append("height", np.array([t / 2], np.float32), t)
                w.append("success", np.array([flag_last and k == 20], np.uint8), t)
            w.commit(success=success)
    return EpisodeStore.open(path)


def test_labels_follow_the_success_flag_so_frames_before_success_are_negatives(tmp_path):
    """The early-firing fault: demos that end at the success instant made the 'last positive_s seconds'
    positives, all of them frames before success; a detector trained on them fires before the task is done."""
    from robot_rl.data.dataset import make_datasets

    store = _labelled_store(tmp_path / "s.zarr")
    spec = classifier_spec([FeatureSpec("height", (1,))], store)
    ds, _ = make_datasets(store, spec, val_ratio=0.0, seed=0)
    labels = frame_labels(store, ds.sampler, positive_s=0.5)
    grid = ds.sampler.grid
    by_episode = {int(e): labels[grid.offsets[i]:grid.offsets[i + 1]] for i, e in enumerate(grid.episodes)}
    flagged, failed, marked = by_episode[0], by_episode[1], by_episode[2]
    assert flagged[-1] == 1 and not flagged[:-1].any()          # only the flagged frame, none before success
    assert not failed.any()
    t = grid.times[grid.offsets[2]:grid.offsets[3]]
    np.testing.assert_array_equal(marked, t >= t[-1] - 0.5)     # no flag stream: the operator's held tail


def test_scripted_demos_record_a_hold_after_success(tmp_path, capsys):
    """collect keeps recording hold_after_success_s after the twin's check succeeds, holding still, so the
    store's success stream has frames of the success state (what a detector must recognize)."""
    from robot_rl.cli import main
    from robot_rl.data.episode_store import EpisodeStore

    store_path = tmp_path / "d.zarr"
    assert main(["collect", "task=reach", "episodes=2", "hold_after_success_s=0.5", f"store={store_path}",
                 f"out={tmp_path / 'c'}", "progress=false"]) == 0
    store = EpisodeStore.open(store_path)
    for ep in range(store.n_episodes):
        assert store.episode_meta(ep)["success"]
        flag, _ = store.read("success", ep)
        action, _ = store.read("action", ep)
        hz = store.streams["action"].rate_hz
        hold = int(round(0.5 * hz))
        assert flag[-hold:].all() and not flag[0].any()         # held in success, reached from not-success
        np.testing.assert_array_equal(action[-hold:, :6], 0)    # the operator holds still
    assert main(["collect", "task=reach", "episodes=1", "hold_after_success_s=-1", f"store={tmp_path / 'x.zarr'}",
                 f"out={tmp_path / 'x'}", "progress=false"]) != 0
    assert "hold_after_success_s=-1: expected a number >= 0.0" in capsys.readouterr().err


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


def test_all_negative_data_is_a_clear_error(tmp_path):
    store = _labelled_store(tmp_path / "s.zarr", episodes=((False, False), (False, False)))
    with pytest.raises(ConfigError, match="success frames"):
        train_reward_classifier(store, [FeatureSpec("height", (1,))],
                                RewardConfig(steps=1, positive_s=1e6, val_ratio=0.0, progress=False))


def test_train_algo_reward_command(reach_store, tmp_path):
    import json

    from robot_rl.cli import main

    assert main(["train", "algo=reward", f"store={reach_store}", f"out={tmp_path}", "reward.steps=20",
                 "reward.val_ratio=0", "reward.positive_s=0.1", "reward.batch_size=32",
                 "spec.obs.state.stream=ee_pos+task_state"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["algo"] == "reward" and 0 < res["threshold"] < 1
    assert RewardModel.load(tmp_path / "reward").spec.obs[0].stream == "ee_pos+task_state"


def test_a_classifier_short_of_the_precision_asked_is_reported_with_a_fix(tmp_path, capsys):
    """Frames whose features cannot tell success apart (all-zero actions): no threshold reaches
    min_precision, and the command says so instead of handing over a detector that fires at random."""
    import json

    from robot_rl.cli import main

    _labelled_store(tmp_path / "s.zarr")
    assert main(["train", "algo=reward", f"store={tmp_path / 's.zarr'}", f"out={tmp_path / 'r'}", "reward.steps=5",
                 "reward.val_ratio=0", "reward.batch_size=16", "spec.obs.state.stream=action", "progress=false"]) == 0
    assert json.loads((tmp_path / "r" / "results.json").read_text())["val_precision"] < 0.95
    err = capsys.readouterr().err
    assert "no threshold reaches reward.min_precision=0.95" in err and "reward.steps=10" in err
