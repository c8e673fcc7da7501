"""The clipped PPO surrogate over the denoising chain: ratio 1 at the old policy, clipping, the direction of an
update, and one optimizer step per denoising step."""

import pytest
import torch

from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.learning.rl.denoising_ppo import (
    ChainConfig, DenoisingPPO, denoising_ppo_loss, executed_actions, sample_stochastic_chain,
)
from robot_rl.policies.model_config import PolicyConfig
from robot_rl.policies.diffusion_policy import DiffusionPolicy

SPEC = PolicySpec(obs=(FeatureSpec("state", (3,)),), action=FeatureSpec("action", (2,)), n_obs_steps=2, horizon=4,
                  n_action_steps=2, rate_hz=10.0)
CHAIN = ChainConfig(num_steps=5, eta=1.0, min_std=0.0067, log_prob_reduce="sum")


def _policy(seed=0):
    torch.manual_seed(seed)
    return DiffusionPolicy(SPEC, PolicyConfig(denoiser="mlp", mlp_hidden_dim=32, mlp_num_blocks=1, state_dims=(16,),
                                              step_embed_dim=8, num_train_timesteps=20, num_inference_steps=5))


def _batch(policy, B=16, seed=1):
    obs = {"state": torch.randn(B, 2, 3, generator=torch.Generator().manual_seed(seed))}
    with torch.no_grad():
        cond = policy.encode(obs)
    res = sample_stochastic_chain(policy, cond, CHAIN, torch.Generator().manual_seed(seed))
    return obs, cond, res


def test_loss_at_the_old_policy_is_minus_mean_advantage_with_no_clipping():
    policy = _policy()
    obs, cond, res = _batch(policy)
    assert res.chain.shape == (16, 6, 4, 2) and res.log_probs.shape == (16, 5)
    adv = torch.linspace(-1, 2, 16)
    loss, m = denoising_ppo_loss(policy, cond, res.chain, res.log_probs, adv, 0.25, CHAIN)
    assert float(loss.detach()) == pytest.approx(-float(adv.mean()), abs=1e-4)
    assert m["clip_frac"] == 0.0 and m["approx_kl"] == pytest.approx(0.0, abs=1e-5)
    assert executed_actions(policy, res.actions).shape == (16, 2, 2)


def test_clipped_ratio_carries_no_gradient():
    policy = _policy()
    obs, cond, res = _batch(policy)
    old = res.log_probs - 1.0             # ratio e > 1 + clip for every step
    loss, m = denoising_ppo_loss(policy, policy.encode(obs), res.chain, old, torch.ones(16), 0.25, CHAIN)
    loss.backward()
    assert m["clip_frac"] == 1.0
    assert all(p.grad is None or float(p.grad.abs().max()) == 0.0 for p in policy.parameters())


def test_update_takes_one_optimizer_step_per_denoising_step():
    policy = _policy()
    obs, cond, res = _batch(policy)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-5)
    metrics = DenoisingPPO(policy, opt, CHAIN, clip=0.25).update(obs, res.chain, res.log_probs, torch.randn(16))
    assert {int(s["step"]) for s in opt.state.values()} == {CHAIN.num_steps}
    assert {"loss", "approx_kl", "clip_frac", "grad_norm"} <= set(metrics)


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_a_step_raises_the_log_prob_of_positive_advantage_samples_and_lowers_negative_ones(reduce):
    policy = _policy()
    chain = ChainConfig(num_steps=5, eta=1.0, min_std=0.0067, log_prob_reduce=reduce)
    obs, cond, res = _batch(policy)
    adv = torch.where(torch.arange(16) < 8, 1.0, -1.0)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
    DenoisingPPO(policy, opt, chain, clip=0.25, steps=slice(0, 1)).update(obs, res.chain, res.log_probs, adv)
    with torch.no_grad():
        new = policy.chain_log_probs(policy.encode(obs), res.chain, 5, 1.0, 0.0067, slice(0, 1))[:, 0]
    delta = new - res.log_probs[:, 0]
    assert float(delta[:8].mean()) > 0 > float(delta[8:].mean())


def test_bad_shapes_and_config_are_rejected():
    policy = _policy()
    obs, cond, res = _batch(policy)
    with pytest.raises(ValueError, match="old_log_probs"):
        denoising_ppo_loss(policy, cond, res.chain, res.log_probs[:, :3], torch.ones(16), 0.25, CHAIN)
    with pytest.raises(ValueError, match="min_std"):
        ChainConfig(num_steps=5, eta=1.0, min_std=0.0, log_prob_reduce="mean")
