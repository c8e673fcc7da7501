"""Filtered BC: the run's successful episodes join the demos in symmetric batches, failed ones never do;
`robot-rl finetune algo=filtered_bc` end to end with resume from its learner state and online store."""

import json

import numpy as np
import pytest
import torch

from robot_rl.cli import main
from robot_rl.core.errors import ConfigError
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.sampler import GridData, WindowSampler
from robot_rl.learning.rl.filtered_bc import FilteredBC, FilteredBCConfig, takeover_windows
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


def test_the_run_rows_split_with_takeover_windows_at_intervention_fraction(base_ckpt, reach_store, tmp_path):
    base = load_policy(base_ckpt, device="cpu")
    algo = FilteredBC(base, FilteredBCConfig(batch_size=8, prior_fraction=0.5, intervention_fraction=0.25), 10,
                      EpisodeStore.open(reach_store), tmp_path / "none.zarr")
    key, demo = base.spec.action.key, next(algo.prior)
    tagged = lambda v: iter([{**demo, key: torch.full_like(demo[key], v)}] * 2)  # noqa: E731
    algo.prior, algo.online, algo.took_over = tagged(0.0), tagged(1.0), tagged(2.0)
    sources = algo.batch()[key][:, 0, 0].tolist()
    assert sources == [0.0] * 4 + [1.0] * 3 + [2.0]          # 8 rows: 4 demos, of the run's 4 one takeover's
    algo.took_over = None                                   # no takeover windows yet: the run's rows as before
    algo.prior, algo.online = tagged(0.0), tagged(1.0)
    assert algo.batch()[key][:, 0, 0].tolist() == [0.0] * 4 + [1.0] * 4
    with pytest.raises(ConfigError, match="intervention_fraction"):
        FilteredBCConfig(intervention_fraction=-0.1)


class _Windows:
    """Two episodes of 6 and 5 grid steps, windows executing 2 steps each (a WindowSampler's shape)."""

    def __init__(self, took: list[int]) -> None:
        self.grid = GridData(np.array([0, 1]), np.array([0, 6, 11]), np.zeros(11),
                             {"intervention": np.array(took, np.float32)[:, None]}, {})

    def executed_rows(self) -> np.ndarray:
        return np.array([[r, min(r + 1, e - 1)] for s, e in ((0, 6), (6, 11)) for r in range(s, e)])


def test_takeover_windows_mark_the_takeover_and_the_policy_steps_just_before_it():
    #            episode 0: takeover at steps 3-4    episode 1: takeover from its first step
    windows = _Windows([0, 0, 0, 1, 1, 0] + [1, 1, 0, 0, 0])
    took, lead = takeover_windows(windows, lead_in=2)
    rows = windows.executed_rows()
    assert took.tolist() == [any(r in (3, 4, 6, 7) for r in w) for w in rows]
    # steps 1 and 2 led into episode 0's takeover; episode 0's last steps lead into nothing in episode 1
    assert lead.tolist() == [any(r in (1, 2) for r in w) for w in rows]
    assert not takeover_windows(windows, lead_in=0)[1].any()


def test_a_sampler_keeps_the_windows_a_mask_selects(base_ckpt, reach_store):
    sampler = WindowSampler(reach_store, load_policy(base_ckpt, device="cpu").spec, flag_streams=("intervention",))
    rows = sampler.executed_rows()
    assert rows.shape == (len(sampler), sampler.spec.n_action_steps) and "intervention" in sampler.grid.low_dim
    mask = np.arange(len(sampler)) % 3 == 0
    kept = sampler.keep(mask)
    assert len(kept) == mask.sum() and np.array_equal(kept.executed_rows(), rows[mask])


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
