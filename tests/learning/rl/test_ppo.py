"""Online PPO over the denoising chain: rollouts carry the chain, an update moves the exported policy's
log-probs, the clip holds the ratio near 1, resume continues the counters, and the CLI writes a policy."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from robot_rl.cli import main
from robot_rl.learning.run_setup import twin_env_factory
from robot_rl.learning.rl.chunk_env import ChunkEnv
from robot_rl.learning.rl.ppo import DiffusionPPO, PPOConfig
from robot_rl.learning.rl.transitions import Transitions
from robot_rl.policies.diffusion_policy import DiffusionPolicy
from robot_rl.policies.io import load_policy

FAST = PPOConfig(rollout_chunks=10, epochs=1, minibatch_size=10, num_inference_steps=5, critic_warmup_iterations=0,
                 critic_hidden=(32, 32))


def _rollout(algo, episodes=2, seed=0):
    """Episodes of the algorithm's stochastic chain in the reach twin (dense reward: advantages carry signal)."""
    env = ChunkEnv(twin_env_factory({"name": "reach", "params": {}}, algo.spec)(), algo.spec, 0.99, "dense")
    parts = []
    for e in range(episodes):
        obs, done = env.reset(seed=seed + e), False
        while not done:
            actions, extras = algo.act(obs)
            step = env.step(actions, extras)
            obs, done = step.obs, step.done
        parts.append(env.episode_transitions())
    env.close()
    return Transitions.concat(parts)


def _log_ratio(algo, batch, old_policy_logp):
    """Mean-over-dims log ratio (N, K) of the batch's chains under the algorithm's current policy."""
    t = batch.torch()
    with torch.no_grad():
        new = algo.policy.chain_log_probs(algo.policy.encode(t["obs"]), t["extras"]["chain"], algo.chain.num_steps,
                                          algo.chain.eta, algo.chain.min_std)
    return ((new - old_policy_logp) / batch.extras["chain"][0, 0].size).numpy()


@pytest.fixture(scope="module")
def base(base_ckpt):
    return load_policy(base_ckpt, device="cpu")


@pytest.fixture(scope="module")
def rollout(base):
    torch.manual_seed(0)
    algo = DiffusionPPO(base, FAST, seed=0)
    return _rollout(algo)


def test_rollout_stores_the_chain_and_log_probs_that_reproduce_under_the_policy(base, rollout):
    K, spec = FAST.num_inference_steps, base.spec
    assert rollout.extras["chain"].shape == (len(rollout), K + 1, spec.horizon, spec.action_dim)
    assert rollout.extras["log_prob"].shape == (len(rollout), K)
    # the executed actions are the chain's final sample, unnormalized, at the executable slice
    algo = DiffusionPPO(base, FAST, seed=0)
    start = spec.n_obs_steps - 1
    x0 = torch.as_tensor(rollout.extras["chain"][:, -1, start:start + spec.n_action_steps])
    np.testing.assert_allclose(algo.policy.unnormalize_action(x0).numpy()[rollout.steps == spec.n_action_steps],
                               rollout.actions[rollout.steps == spec.n_action_steps], atol=1e-5)
    ratio = _log_ratio(algo, rollout, torch.as_tensor(rollout.extras["log_prob"]))
    assert np.abs(ratio).max() < 1e-4                               # old log-probs == recomputed


def test_update_changes_the_exported_policy_and_the_clip_limits_the_ratio(base, rollout):
    old = torch.as_tensor(rollout.extras["log_prob"])
    shifts = {}
    for clip in (0.02, 0.9):
        torch.manual_seed(0)
        cfg = replace(FAST, clip=clip, epochs=10, actor_lr=3e-3)
        algo = DiffusionPPO(base, cfg, seed=0)
        before = [p.detach().clone() for p in algo.export_policy().denoiser.parameters()]
        algo.observe(rollout)
        assert algo.allowed_updates(len(rollout)) == 1
        m = algo.update()
        assert algo.allowed_updates(len(rollout)) == 1 and algo.buffered() == 0      # rollout consumed
        assert any(not torch.equal(a, b) for a, b in zip(before, algo.export_policy().denoiser.parameters()))
        assert isinstance(algo.export_policy(), DiffusionPolicy) and m["clip_frac"] > 0
        shifts[clip] = np.abs(_log_ratio(algo, rollout, old))
    assert shifts[0.02].mean() > 1e-4                                # the log-probs moved
    # many epochs at a high learning rate: the tight clip keeps ratios near 1, the loose one does not
    assert np.median(shifts[0.02]) < 3 * 0.02 < np.median(shifts[0.9])


def test_resume_restores_weights_optimizer_and_counters(base, rollout, tmp_path):
    algo = DiffusionPPO(base, FAST, seed=0, state_dir=tmp_path / "train_state")
    algo.observe(rollout)
    algo.update()
    again = DiffusionPPO(base, FAST, seed=0, state_dir=tmp_path / "train_state")
    start = again.load_state(tmp_path)
    assert start.updates == again.iterations == 1
    assert start.env_steps == int(rollout.steps.sum()) and start.episodes == 1 and start.transitions == len(rollout)
    for a, b in zip(algo.policy.state_dict().values(), again.policy.state_dict().values()):
        assert torch.equal(a, b)
    assert again.actor_opt.state_dict()["state"].keys() == algo.actor_opt.state_dict()["state"].keys()


def test_finetune_cli_writes_results_and_a_loadable_diffusion_policy_and_resumes(base_ckpt, tmp_path):
    out = tmp_path / "ppo"
    args = ["finetune", "algo=ppo", f"policy={base_ckpt}", "task=reach", "task.params.time_limit=2.0", f"out={out}",
            "online.eval_every=0",
            "online.eval_episodes=1", "ppo.rollout_chunks=10", "ppo.num_inference_steps=5", "ppo.epochs=1",
            "ppo.minibatch_size=10", "ppo.critic_hidden=[32,32]", "ppo.critic_warmup_iterations=0"]
    assert main([*args, "online.env_steps=40"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["algo"] == "ppo" and results["iterations"] == 1 and results["env_steps"] == 40
    policy = load_policy(out / "policy")
    assert isinstance(policy, DiffusionPolicy) and policy.cfg.num_inference_steps == 5
    base = load_policy(base_ckpt)
    assert any(not torch.equal(a, b) for a, b in zip(base.state_dict().values(), policy.state_dict().values()))
    assert main([*args, "online.env_steps=80"]) == 0                 # same out: continues at 40 env steps
    results = json.loads((out / "results.json").read_text())
    assert results["iterations"] == 2 and [p["env_steps"] for p in results["curve"]] == [0, 40, 80]
