"""Filtered BC: the run's successful episodes join the demos in symmetric batches, failed ones never do;
`robot-rl finetune algo=filtered_bc` end to end with resume from its learner state and online store."""

import json

import pytest
import torch

from robot_rl.cli import main
from robot_rl.core.errors import ConfigError
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.learning.rl.filtered_bc import FilteredBC, FilteredBCConfig
from robot_rl.policies.diffusion_policy import DiffusionPolicy
from robot_rl.policies.io import load_policy

TASK = ["task=reach", "task.params.time_limit=1.0"]
TINY = ["filtered_bc.batch_size=8", "filtered_bc.utd=0.5", "filtered_bc.save_every_episodes=1"]


def test_batches_mix_demos_and_own_successes_at_prior_fraction(base_ckpt, reach_store, tmp_path):
    base = load_policy(base_ckpt, device="cpu")
    cfg = FilteredBCConfig(batch_size=8, prior_fraction=0.25)
    algo = FilteredBC(base, cfg, 10, EpisodeStore.open(reach_store), tmp_path / "none.zarr")
    assert algo.online is None
    assert len(algo.batch()[base.spec.action.key]) == 8               # demos only until a success exists
    algo.online = algo.prior                                           # a second source: rows split 2 + 6
    batch = algo.batch()
    assert all(len(v) == 8 for v in batch.values())
    before = [p.detach().clone() for p in algo.policy.parameters()]
    algo.update()
    assert any(not torch.equal(a, b) for a, b in zip(before, algo.policy.parameters()))
    assert not any(not torch.equal(a, b) for a, b in zip(before, base.parameters()))  # the base stays as it was


def test_no_successful_windows_anywhere_is_a_clear_error(base_ckpt, tmp_path):
    base = load_policy(base_ckpt, device="cpu")
    algo = FilteredBC(base, FilteredBCConfig(batch_size=8), 10)
    with pytest.raises(ConfigError, match="no successful windows"):
        algo.batch()
    with pytest.raises(ConfigError, match="prior_fraction"):
        FilteredBCConfig(prior_fraction=1.5)


def test_finetune_filtered_bc_end_to_end_and_resume(base_ckpt, tmp_path):
    out = tmp_path / "ft"
    args = ["finetune", "algo=filtered_bc", f"policy={base_ckpt}", *TASK, f"out={out}", "device=cpu",
            "online.eval_every=40", "online.eval_episodes=1", "progress=false", *TINY]
    assert main([*args, "online.env_steps=40"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["algo"] == "filtered_bc" and results["env_steps"] >= 40 and results["updates"] > 0
    policy = load_policy(out / "policy", device="cpu")
    assert isinstance(policy, DiffusionPolicy)
    assert (out / "train_state" / "progress.yaml").is_file()
    online = EpisodeStore.open(out / "online.zarr")
    assert len(online) == results["episodes"]
    assert results["online_successes"] == sum(bool(m.get("success")) for m in online.meta_list())

    assert main([*args, "online.env_steps=60"]) == 0                  # continues: counters and curve
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["curve"][:len(results["curve"])] == results["curve"]
    assert resumed["env_steps"] >= 60 and resumed["updates"] > results["updates"]
    assert len(EpisodeStore.open(out / "online.zarr")) == resumed["episodes"]
