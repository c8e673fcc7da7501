"""DiffusionPolicy: training loss, noise-conditioned sampling, the act() interface."""

import numpy as np
import pytest
import torch

from robot_rl.core.types import ActionChunk
from robot_rl.policies import DiffusionPolicy, Normalizer

from .conftest import make_spec, random_obs, tiny_config
from .test_normalizer import STATS


def make_policy(n_cameras=0, denoiser="unet", **spec_kw):
    spec = make_spec(n_cameras, **spec_kw)
    return DiffusionPolicy(spec, tiny_config(denoiser=denoiser), Normalizer.from_stats(spec, STATS))


@pytest.mark.parametrize("denoiser", ["unet", "mlp"])
def test_ddpm_loss_decreases_when_overfitting_a_tiny_dataset(denoiser):
    policy = make_policy(0, denoiser)
    obs = random_obs(policy.spec, batch=8)
    actions = torch.linspace(-1.5, 1.5, 8 * 8 * 3).reshape(8, 8, 3)
    batch = {**obs, "action": actions}
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3 if denoiser == "unet" else 1e-2)
    losses = []
    for _ in range(100):
        loss = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-20:]) < 0.7 * np.mean(losses[:20])


def test_compute_loss_accepts_uint8_images_in_either_layout_and_longer_windows():
    policy = make_policy(2)
    for hwc in (True, False):
        batch = {**random_obs(policy.spec, batch=2, steps=policy.spec.horizon, hwc=hwc), "action": torch.randn(2, 8, 3)}
        assert torch.isfinite(policy.compute_loss(batch))


def test_compute_loss_names_a_bad_action_shape():
    policy = make_policy()
    with pytest.raises(ValueError, match=r"batch\['action'\] shape \(2, 8, 2\)"):
        policy.compute_loss({**random_obs(policy.spec), "action": torch.randn(2, 8, 2)})


def test_predict_action_is_deterministic_given_the_initial_noise():
    policy = make_policy(1).eval()
    obs = random_obs(policy.spec, batch=2)
    noise = torch.randn(2, 8, 3)
    a = policy.predict_action(obs, init_noise=noise)
    b = policy.predict_action(obs, init_noise=noise.clone())
    c = policy.predict_action(obs, init_noise=torch.randn(2, 8, 3))
    assert a.shape == (2, 8, 3)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_predict_action_returns_raw_units():
    policy = make_policy().eval()
    a = policy.predict_action(random_obs(policy.spec), num_inference_steps=4)
    # clipped normalized samples in [-1, 1] -> the action limits [-2, 2] x [-2, 2] x [0, 1]
    lo, hi = torch.tensor(STATS["action"]["min"]).float(), torch.tensor(STATS["action"]["max"]).float()
    assert (a >= lo - 1e-5).all() and (a <= hi + 1e-5).all()


def test_sample_exposes_chain_and_log_probs_for_rl():
    policy = make_policy().eval()
    cond = policy.encode(random_obs(policy.spec, batch=3))
    res = policy.sample(cond, num_inference_steps=5, eta=1.0, min_std=0.0067, return_chain=True,
                        return_log_probs=True)
    assert res.chain.shape == (3, 6, 8, 3) and res.log_probs.shape == (3, 5)
    again = policy.chain_log_probs(cond, res.chain, 5, eta=1.0, min_std=0.0067)
    assert torch.allclose(again, res.log_probs, rtol=1e-4, atol=1e-2)
    again.sum().backward()  # differentiable w.r.t. the denoiser
    assert policy.denoiser.final[-1].weight.grad is not None


def test_bad_init_noise_shape_is_named():
    policy = make_policy()
    with pytest.raises(ValueError, match=r"init_noise shape \(2, 8, 2\), expected \(2, 8, 3\)"):
        policy.predict_action(random_obs(policy.spec), init_noise=torch.randn(2, 8, 2))


def test_missing_observation_key_is_named():
    policy = make_policy(1)
    obs = random_obs(policy.spec)
    del obs["cam0"]
    with pytest.raises(ValueError, match="observation 'cam0' missing"):
        policy.predict_action(obs)


def one_step_obs(spec, seed=0):
    g = np.random.default_rng(seed)
    obs = {f.key: g.normal(size=f.shape).astype(np.float32) for f in spec.low_dim}
    obs |= {f.key: g.integers(0, 256, size=(f.shape[1], f.shape[2], f.shape[0]), dtype=np.uint8) for f in spec.images}
    return obs


def test_act_returns_the_executable_slice_at_absolute_times():
    policy = make_policy(1, n_obs=2, n_act=4, rate_hz=20.0)
    obs = one_step_obs(policy.spec) | {"t": 100.0}
    noise = torch.randn(1, 8, 3)
    chunk = policy.act(obs, init_noise=noise)
    assert isinstance(chunk, ActionChunk) and chunk.actions.shape == (4, 3)
    assert np.allclose(chunk.t, 100.0 + np.arange(4) / 20.0)
    # the executable slice starts at n_obs_steps - 1 of the predicted horizon
    history = {k: np.stack([v, v]) for k, v in one_step_obs(policy.spec).items()}
    full = policy.predict_action({k: v[None] for k, v in history.items()}, init_noise=noise)
    assert np.allclose(chunk.actions, full[0, 1:5].numpy(), atol=1e-5)


def test_act_keeps_history_until_reset():
    policy = make_policy(1)
    noise = torch.randn(1, 8, 3)
    first = policy.act(one_step_obs(policy.spec, 0), init_noise=noise)
    second = policy.act(one_step_obs(policy.spec, 1), init_noise=noise)
    both = {k: np.stack([one_step_obs(policy.spec, 0)[k], one_step_obs(policy.spec, 1)[k]])
            for k in one_step_obs(policy.spec)}
    assert np.allclose(second.actions, policy.act(both, init_noise=noise).actions, atol=1e-5)
    policy.reset()
    assert np.allclose(policy.act(one_step_obs(policy.spec, 0), init_noise=noise).actions, first.actions, atol=1e-5)


def test_act_without_timestamp_uses_now_and_keeps_training_mode():
    import time

    policy = make_policy().train()
    before = time.monotonic()
    chunk = policy.act(one_step_obs(policy.spec))
    assert before <= chunk.t[0] <= time.monotonic()
    assert policy.training
