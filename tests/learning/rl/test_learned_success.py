"""The learned success detector in the loop (reward=classifier): it decides reward, termination and the stored
success, the twin's own check stays the ground truth it is measured against (precision/recall in the curve and
results), for state and pixel policies."""

import json

import numpy as np
import pytest
import torch

from robot_rl.cli import main
from robot_rl.core.spec import FeatureSpec
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.learning.reward_classifier import RewardConfig, SuccessDetector, train_reward_classifier
from robot_rl.learning.rl.chunk_env import ChunkEnv
from robot_rl.learning.rl.online import DetectorTally
from robot_rl.sim.env import TwinEnv

from .pixel_policy import TINY_PIXEL_MODEL, pixel_spec, save_pixel_policy


class FiresAt:
    """A stand-in detector that declares success at its n-th call of an episode."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def reset(self):
        self.calls = 0

    def __call__(self, obs):
        self.calls += 1
        return self.calls >= self.n


def test_the_detector_decides_reward_and_termination_and_the_twin_check_is_kept_as_truth():
    spec = pixel_spec(cameras=())
    env = ChunkEnv(TwinEnv("reach", privileged=False, terminate_on_success=False), spec, success_fn=FiresAt(3))
    env.reset(seed=0)
    step = env.step(np.zeros((4, 7), np.float32))
    assert step.terminated and step.steps == 3 and step.reward == pytest.approx(0.99 ** 2)
    assert step.info["is_success"] and step.info["true_success"] is False     # idle arm: the goal is not reached
    assert env.success and not env.true_success
    assert env.episode_record().meta["true_success"] is False
    env.close()


def test_an_env_that_ends_at_its_own_success_or_a_dense_reward_is_refused_with_a_detector():
    spec = pixel_spec(cameras=())
    twin = TwinEnv("reach", privileged=False)                     # terminate_on_success=True leaks the truth
    with pytest.raises(ValueError, match="terminate_on_success=False"):
        ChunkEnv(twin, spec, success_fn=FiresAt(1))
    with pytest.raises(ValueError, match="dense"):
        ChunkEnv(twin, spec, reward="dense", success_fn=FiresAt(1))
    twin.close()


def test_detector_tally_precision_and_recall():
    t = DetectorTally()
    for detected, true in ((True, True), (True, True), (True, False), (False, True), (False, False)):
        t.add(detected, true)
    assert t.to_dict() == {"true_pos": 2, "false_pos": 1, "false_neg": 1, "true_neg": 1,
                           "precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3)}
    assert DetectorTally.from_dict(t.to_dict()) == t and DetectorTally().precision is None


@pytest.fixture(scope="module")
def state_classifier(reach_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("reward")
    assert main(["train", "algo=reward", f"store={reach_store}", f"out={out}", "reward.steps=150",
                 "reward.val_ratio=0", "reward.positive_s=0.1", "reward.batch_size=64", "model.state_dims=[32]",
                 "spec.obs.state.stream=ee_pos+task_state"]) == 0
    return out / "reward"


def test_finetune_with_the_learned_detector_reports_its_precision_recall_and_ground_truth_success(
        base_ckpt, state_classifier, tmp_path):
    out = tmp_path / "ft"
    assert main(["finetune", f"policy={base_ckpt}", "task=reach", "task.params.time_limit=1.0", f"out={out}",
                 "device=cpu", "reward=classifier", f"reward_model={state_classifier}", "online.env_steps=60",
                 "online.eval_every=0", "online.eval_episodes=1", "progress=false", "filtered_bc.batch_size=8",
                 "filtered_bc.utd=0.5"]) == 0
    results = json.loads((out / "results.json").read_text())
    d = results["detector"]
    assert results["reward"] == "classifier" and results["curve"][-1]["detector"] == d
    assert d["true_pos"] + d["false_pos"] + d["false_neg"] + d["true_neg"] == results["episodes"] > 0
    assert results["success_rate"] is not None                     # the final evaluation: the twin's own check
    metas = EpisodeStore.open(out / "online.zarr").meta_list()
    assert all("true_success" in m["extra"] for m in metas)
    assert sum(bool(m["success"]) for m in metas) == d["true_pos"] + d["false_pos"]     # what the loop believed


def test_reward_classifier_without_a_model_is_a_clear_error(base_ckpt, tmp_path, capsys):
    assert main(["finetune", f"policy={base_ckpt}", "task=reach", f"out={tmp_path}", "reward=classifier"]) != 0
    assert "reward=classifier needs reward_model=<reward classifier checkpoint dir>" in capsys.readouterr().err


def test_a_pixel_classifier_trains_on_frames_and_proprio_and_runs_in_a_pixel_finetune(tmp_path):
    store = tmp_path / "cams.zarr"
    assert main(["collect", "task=reach", "episodes=3", "cameras=true", "task.params.time_limit=1.5",
                 f"store={store}", f"out={tmp_path / 'collect'}", "progress=false"]) == 0
    spec = pixel_spec()
    obs = [f for f in spec.obs]                                    # proprio + the front camera, no task_state
    torch.manual_seed(0)
    _, m = train_reward_classifier(EpisodeStore.open(store), obs, RewardConfig(steps=20, batch_size=16, val_ratio=0.0,
                                   positive_s=0.3, progress=False, device="cpu"), tmp_path / "reward", TINY_PIXEL_MODEL)
    assert m["train_positive_frames"] > 0 and 0.0 <= m["threshold"] <= 1.0
    out = tmp_path / "ft"
    assert main(["finetune", f"policy={save_pixel_policy(tmp_path / 'base')}", "task=reach",
                 "task.params.time_limit=1.0", f"out={out}", "device=cpu", "reward=classifier",
                 f"reward_model={tmp_path / 'reward'}", "online.env_steps=40", "online.eval_every=0",
                 "online.eval_episodes=1", "progress=false", "filtered_bc.batch_size=4"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert sum(v for k, v in results["detector"].items() if k.startswith(("true", "false"))) == results["episodes"]
    assert "task_state" not in EpisodeStore.open(out / "online.zarr").streams
