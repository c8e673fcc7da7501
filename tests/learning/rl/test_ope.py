"""Off-policy evaluation: the latent round trip, the dynamics ensemble learning a known system, AM-Q and the
gate accepting an improving candidate and restoring a worse one exactly."""

import numpy as np
import pytest
import torch

from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.learning.rl.iql import TransitionBatches
from robot_rl.learning.rl.ope import DynamicsConfig, DynamicsEnsemble, OPEGate, am_q, obs_from_flat
from robot_rl.learning.rl.transitions import Transitions
from robot_rl.policies.model_config import PolicyConfig
from robot_rl.policies.critics import ChunkFeatures
from robot_rl.policies.diffusion_policy import DiffusionPolicy
from robot_rl.policies.normalizer import Normalizer

SPEC = PolicySpec(obs=(FeatureSpec("a", (2,)), FeatureSpec("b", (1,))), action=FeatureSpec("action", (2,)),
                  n_obs_steps=2, horizon=4, n_action_steps=2, rate_hz=10.0)


def _normalizer():
    stats = {k: {"min": np.full(d, -2.0), "max": np.full(d, 3.0), "mean": np.zeros(d), "std": np.ones(d)}
             for k, d in (("a", 2), ("b", 1))}
    stats["action"] = {"min": -np.ones(2), "max": np.ones(2), "mean": np.zeros(2), "std": np.ones(2)}
    return Normalizer.from_stats(SPEC, stats)


def test_obs_from_flat_inverts_the_critic_features():
    features = ChunkFeatures(SPEC, _normalizer())
    obs = {"a": torch.randn(5, 2, 2), "b": torch.randn(5, 2, 1)}
    back = obs_from_flat(features, features.obs(obs))
    for k in obs:
        torch.testing.assert_close(back[k], obs[k])


def _linear_system(n=512, seed=0):
    """next = obs + 0.5 * mean executed action (every history step), reward = a_0 of the first action,
    terminal when the first feature exceeds 1."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-2, 3, (n, 2, 2)).astype(np.float32)
    b = rng.uniform(-2, 3, (n, 2, 1)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, 2, 2)).astype(np.float32)
    shift = 0.5 * act.mean(1, keepdims=True)
    done = np.where(a[:, -1, 0] > 1, 0.0, 0.9).astype(np.float32)
    return Transitions({"a": a, "b": b}, act, act[:, 0, 0].copy(), done,
                       {"a": a + shift, "b": b + shift[..., :1]}, np.full(n, 2, np.int32), np.zeros(n, bool),
                       np.zeros(n, np.uint8), np.zeros(n, np.int64), np.zeros(n, bool))


def test_dynamics_ensemble_learns_a_known_system():
    torch.manual_seed(0)
    t = _linear_system()
    model = DynamicsEnsemble(ChunkFeatures(SPEC, _normalizer()), DynamicsConfig(n_models=2, hidden=(64, 64), lr=3e-3,
                                                                                  batch_size=128))
    batches = TransitionBatches(t, seed=0)
    before = model.fit(batches, 1, progress=False)["dynamics_loss"]
    after = model.fit(batches, 250, progress=False)["dynamics_loss"]
    assert after < 0.25 * before
    test = _linear_system(64, seed=1).torch()
    nxt, reward, done = model.step(test["obs"], test["actions"], torch.Generator().manual_seed(0))
    assert float((nxt["a"] - test["next_obs"]["a"]).abs().mean()) < 0.1
    assert float((reward - test["rewards"]).abs().mean()) < 0.1
    assert float(((done > 0.5) == (test["discounts"] == 0)).float().mean()) > 0.9


def _policy():
    torch.manual_seed(0)
    return DiffusionPolicy(SPEC, PolicyConfig(denoiser="mlp", mlp_hidden_dim=32, mlp_num_blocks=1, state_dims=(16,),
                                              step_embed_dim=8, num_train_timesteps=20, num_inference_steps=5),
                           _normalizer())


def _shifted(policy, eps_bias):
    """A copy whose epsilon prediction is offset: a negative offset moves every sampled action up."""
    p = _policy()
    p.load_state_dict(policy.state_dict())
    with torch.no_grad():
        p.denoiser.out[-1].bias += eps_bias
    return p


def test_gate_accepts_an_improving_candidate_and_restores_a_worse_one_exactly():
    policy = _policy()
    torch.manual_seed(1)
    model = DynamicsEnsemble(ChunkFeatures(SPEC, policy.normalizer), DynamicsConfig(n_models=2, hidden=(16,)))
    starts = {"a": torch.rand(32, 2, 2), "b": torch.rand(32, 2, 1)}

    def q(obs, actions):            # hand-built critic: higher executed actions are better
        return 2.0 + actions.mean((1, 2))

    def score(p):
        return am_q(p, q, model, starts, horizon=3, seed=7)

    assert score(policy) == score(policy)                       # common random numbers: a repeatable score
    gate = OPEGate(policy, score, threshold=0.05)
    worse = _shifted(policy, +0.5)
    before = {k: v.clone() for k, v in gate.old.state_dict().items()}
    decision = gate.check(worse)
    assert not decision.accepted and decision.score < decision.reference
    for k, v in worse.state_dict().items():                      # reverted to the old weights, bit for bit
        assert torch.equal(v, before[k])

    better = _shifted(policy, -0.5)
    decision = gate.check(better)
    assert decision.accepted and decision.improvement >= 0.05
    assert gate.reference == decision.score
    for k, v in gate.old.state_dict().items():                   # the old policy advanced to the candidate
        assert torch.equal(v, better.state_dict()[k])

    with pytest.raises(ValueError, match="threshold"):
        OPEGate(policy, score, threshold=-1)
