"""RL works, as CI can see it break: the default fine-tuning (filtered BC with the scripted corrector's
interventions, as the main job runs it) lifts a deliberately weak lift base (10 mixed-quality demos, a few
hundred BC steps) well clear of its noise, on the same held-out seeds, with the real twin and CLI.

Budgets are counted in env steps and episodes, never in wall-clock time."""

import json

import pytest

from robot_rl.cli import main
from robot_rl.core.results import success_interval

EPISODES = 30             # held-out evaluation of the base and of the fine-tuned policy, the same seeds


def _success(out):
    r = json.loads((out / "results.json").read_text())
    return round(r["success_rate"] * r["episodes"]), r["episodes"]


@pytest.mark.slow
def test_finetuning_lifts_a_weak_base_far_outside_the_evaluation_noise(tmp_path):
    store = tmp_path / "demos.zarr"
    assert main(["collect", "task=lift", "episodes=10", "noise=0.3", f"store={store}", f"out={tmp_path / 'c'}",
                 "progress=false"]) == 0
    assert main(["train", f"store={store}", f"out={tmp_path / 'bc'}", "train.steps=400", "train.eval_every=0",
                 "train.batch_size=64", "train.num_workers=0", "train.success_only=true",
                 "train.checkpoint_every=200", "progress=false"]) == 0
    base = tmp_path / "bc" / "checkpoints" / "best"
    held_out = ["task=lift", f"episodes={EPISODES}", "seed_offset=200000", "progress=false"]
    assert main(["eval", f"policy={base}", *held_out, f"out={tmp_path / 'base_eval'}"]) == 0
    assert main(["finetune", f"policy={base}", "task=lift", "corrector=scripted", f"out={tmp_path / 'ft'}",
                 "online.env_steps=3000", "online.eval_every=0", "online.eval_episodes=1", "progress=false"]) == 0
    assert main(["eval", f"policy={tmp_path / 'ft' / 'policy'}", *held_out, f"out={tmp_path / 'ft_eval'}"]) == 0

    before, after = _success(tmp_path / "base_eval"), _success(tmp_path / "ft_eval")
    low_after, high_before = success_interval(*after)[0], success_interval(*before)[1]
    assert low_after > high_before, f"base {before}, fine-tuned {after}: the 95 % intervals overlap"
