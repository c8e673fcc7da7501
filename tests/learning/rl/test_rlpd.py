"""RLPD from scratch: the tanh-Gaussian actor's log-probs, `robot-rl finetune algo=rlpd` end to end, and
its actor-only checkpoint read back by load_policy and eval."""

import json

import numpy as np
import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from robot_rl.cli import main
from robot_rl.policies.actors import GaussianActor
from robot_rl.policies.gaussian_chunk import GaussianChunkPolicy
from robot_rl.policies.io import load_policy

TASK = ["task=reach", "task.params.time_limit=1.0"]     # 20 env steps per episode
TINY = ["rlpd.critic_heads=2", "rlpd.critic_hidden=[32,32]", "rlpd.actor_hidden=[32,32]", "rlpd.batch_size=32",
        "rlpd.warmup_env_steps=20", "rlpd.utd=0.5", "rlpd.log_every=0"]


def test_tanh_gaussian_log_probs_match_torch_distributions():
    torch.manual_seed(0)
    actor = GaussianActor(obs_dim=5, action_dim=3, hidden=(16,))
    obs = torch.randn(64, 5)
    gen = torch.Generator().manual_seed(1)
    a, log_prob = actor(obs, generator=gen)
    mean, log_std = actor.net(obs).chunk(2, dim=-1)
    log_std = -5.0 + 3.5 * (torch.tanh(log_std) + 1.0)
    dist = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform(cache_size=1)])
    reference = dist.log_prob(a.clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    assert (a.abs() < 1).all()
    torch.testing.assert_close(log_prob, reference, rtol=1e-3, atol=1e-3)
    mode, _ = actor(obs, deterministic=True)
    torch.testing.assert_close(mode, torch.tanh(mean))


def test_finetune_rlpd_from_scratch_writes_a_policy_that_eval_reads(base_ckpt, tmp_path):
    out = tmp_path / "rlpd"
    assert main(["finetune", "algo=rlpd", f"policy={base_ckpt}", *TASK, f"out={out}", "device=cpu",
                 "online.env_steps=40", "online.eval_every=40", "online.eval_episodes=1", *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["algo"] == "rlpd" and results["env_steps"] >= 40 and results["updates"] > 0
    assert results["prior_transitions"] > 0                  # the reach demos are in the batch
    policy = load_policy(out / "policy", device="cpu")
    assert isinstance(policy, GaussianChunkPolicy) and policy.kind == "gaussian"

    # the checkpoint acts exactly like the policy that was trained (deterministic: tanh of the mean)
    obs = {f.key: np.random.default_rng(0).normal(size=(policy.spec.n_obs_steps, *f.shape)).astype(np.float32)
           for f in policy.spec.obs}
    again = GaussianChunkPolicy.load(out / "policy", device="cpu")
    np.testing.assert_allclose(policy.act(obs).actions, again.act(obs).actions)
    assert policy.act(obs).actions.shape == (policy.spec.n_action_steps, policy.spec.action_dim)

    ev = tmp_path / "eval"
    assert main(["eval", f"policy={out / 'policy'}", *TASK, "episodes=1", f"out={ev}", "device=cpu"]) == 0
    evaluated = json.loads((ev / "results.json").read_text())
    [episode] = evaluated["per_episode"]
    assert evaluated["episodes"] == 1 and evaluated["success_rate"] == float(episode["success"])
    # the same policy on the same fixed seed (100000) as the run's final evaluation: the same outcome
    assert evaluated["seeds"] == [100000] and evaluated["success_rate"] == results["success_rate"]
    # the Wilson 95 % interval of one episode: [0.207, 1] after a success, [0, 0.793] after a failure
    expected = [0.20654, 1.0] if episode["success"] else [0.0, 0.79346]
    assert evaluated["success_ci95"] == pytest.approx(expected, abs=1e-5)
