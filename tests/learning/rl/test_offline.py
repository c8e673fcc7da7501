"""`robot-rl finetune algo=offline` end to end on the tiny reach base, and best-of-N by Q as a saveable policy."""

import json

import numpy as np
import pytest
import torch

from robot_rl.cli import main
from robot_rl.core.config import dataclass_from_dict
from robot_rl.core.errors import ConfigError
from robot_rl.learning.rl.offline import OfflineConfig
from robot_rl.policies.best_of_n import BestOfNPolicy
from robot_rl.policies.critics import ChunkFeatures, QEnsemble
from robot_rl.policies.io import load_policy, save_policy

TINY = ["offline.rounds=2", "offline.critic_steps=30", "offline.critic_steps_per_round=10",
        "offline.critic_hidden=[32,32]", "offline.batch_size=32", "offline.improve_steps=4", "offline.improve_batch=16",
        "offline.gate_every=2", "offline.chain_steps=5", "offline.dynamics_models=2", "offline.dynamics_hidden=[32]",
        "offline.dynamics_steps=20", "offline.ope_horizon=3", "offline.ope_starts=8", "offline.best_of_n=4",
        "offline.rollout_episodes=1",
        "online.eval_episodes=1", "task=reach", "task.params.time_limit=1.5"]


def test_finetune_offline_writes_rounds_results_and_a_loadable_policy(base_ckpt, tmp_path):
    out = tmp_path / "offline"
    assert main(["finetune", "algo=offline", f"policy={base_ckpt}", f"out={out}", *TINY]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["algo"] == "offline" and res["base_success_rate"] is not None
    assert [r["round"] for r in res["rounds"]] == [0, 1]
    r0 = res["rounds"][0]
    assert len(r0["gate"]) == 2 and r0["updates"] == 4           # gate checked every 2 of 4 updates
    assert r0["transitions"] < res["rounds"][1]["transitions"]    # round 0's rollouts joined the data
    assert {"success_rate", "best_of_n_success_rate", "rollout_success_rate", "round_accepted"} <= set(r0)
    assert len(res["curve"]) == 4                                  # base, one point per round, the exported policy
    assert res["success_rate"] == res["final_success_rate"]
    for r in (0, 1):
        assert json.loads((out / "rounds" / str(r) / "eval.json").read_text())["round"] == r
        assert load_policy(out / "rounds" / str(r) / "policy").kind == "diffusion"
    from robot_rl.data.episode_store import EpisodeStore

    rollouts = EpisodeStore.open(out / "rollouts.zarr")
    assert len(rollouts) == 3 and rollouts.episode_meta(0)["source"] == "policy"   # the base's, then each round's
    policy = load_policy(out / "policy")
    chunk = policy.act({"state": np.zeros(policy.spec.obs[0].shape, np.float32)})
    assert chunk.actions.shape == (policy.spec.n_action_steps, policy.spec.action_dim)
    bon = load_policy(out / "rounds" / "1" / "best_of_n")
    assert isinstance(bon, BestOfNPolicy) and bon.n == 4


def test_best_of_n_executes_the_argmax_q_chunk_and_round_trips(base_ckpt, tmp_path):
    base = load_policy(base_ckpt)
    features = ChunkFeatures(base.spec, base.normalizer)
    torch.manual_seed(0)
    q = QEnsemble(features.obs_dim, features.action_dim, 2, (16,))
    bon = BestOfNPolicy(base, q, {"n": 2, "hidden": [16], "layer_norm": True}, n=8)
    # observations inside the demos' range: far outside it (unit Gaussians in metres) the tiny base
    # saturates and its candidates coincide, which would make the argmax check vacuous
    dim = base.spec.obs[0].shape[0]
    inside = torch.rand(3, base.spec.n_obs_steps, dim, generator=torch.Generator().manual_seed(1)) - 0.5
    obs = {"state": base.normalizer.unnormalize("state", inside)}
    chunks, scores = bon.scored_candidates(obs, torch.Generator().manual_seed(2))
    assert chunks.shape == (3, 8, base.spec.horizon, base.spec.action_dim) and scores.shape == (3, 8)
    best = bon.predict_action(obs, torch.Generator().manual_seed(2))
    torch.testing.assert_close(best, chunks[torch.arange(3), scores.argmax(1)])
    assert len({float(s) for s in scores[0]}) > 1                  # candidates really differ

    path = save_policy(bon, tmp_path / "bon")
    back = load_policy(path)
    assert isinstance(back, BestOfNPolicy) and back.n == 8
    _, scores_back = back.scored_candidates(obs, torch.Generator().manual_seed(2))
    torch.testing.assert_close(scores_back, scores)
    torch.manual_seed(3)
    chunk = back.act({"state": obs["state"][0].numpy()})             # a full history, as evaluate() passes it
    torch.manual_seed(3)                                              # ... scored against the same candidates
    candidates, q = back.scored_candidates({"state": obs["state"][:1]})
    best, start = int(q[0].argmax()), base.spec.n_obs_steps - 1
    np.testing.assert_allclose(chunk.actions, candidates[0, best, start:start + base.spec.n_action_steps].numpy())
    assert chunk.info["q"] == pytest.approx(float(q[0, best])) and chunk.info["q_mean"] == pytest.approx(float(q[0].mean()))
    assert chunk.info["q"] > chunk.info["q_mean"]                     # 8 candidates with distinct scores


def test_offline_config_rejects_unknown_fields_and_bad_values():
    with pytest.raises(ConfigError, match="bogus"):
        dataclass_from_dict(OfflineConfig, {"bogus": 1}, "finetune offline")
    with pytest.raises(ConfigError, match="export"):
        dataclass_from_dict(OfflineConfig, {"export": "nope"}, "finetune offline")
