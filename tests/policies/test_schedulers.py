"""DDPM noising and DDIM chains as explicit Gaussian steps."""

import math

import pytest
import torch

from robot_rl.policies.diffusion import (
    NoiseSchedule, chain_log_probs, ddim_step, inference_timesteps, make_betas, sample_chain,
)


def toy_denoiser(x, t, cond):
    """A fixed smooth function of (x, t, cond) standing in for a trained network."""
    return 0.3 * torch.tanh(x + cond[:, None, :1]) + 0.01 * t.float()[:, None, None] / 100


def test_squaredcos_betas_are_increasing_and_capped():
    betas = make_betas(100, "squaredcos_cap_v2")
    assert betas.shape == (100,)
    assert (betas > 0).all() and (betas <= 0.999).all()
    assert betas[-1] > betas[0]


def test_linear_betas_span_start_to_end():
    betas = make_betas(10, "linear", 1e-4, 0.02)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)


def test_add_noise_matches_closed_form():
    s = NoiseSchedule(100)
    x0, noise = torch.randn(4, 8, 3), torch.randn(4, 8, 3)
    t = torch.tensor([0, 10, 50, 99])
    ab = s.alphas_cumprod[t].float()[:, None, None]
    assert torch.allclose(s.add_noise(x0, noise, t), ab.sqrt() * x0 + (1 - ab).sqrt() * noise, atol=1e-6)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_split_prediction_recovers_x0_and_noise_from_the_true_target(prediction_type):
    s = NoiseSchedule(100, prediction_type=prediction_type, clip_sample=False)
    x0, noise, t = torch.rand(2, 8, 3) * 2 - 1, torch.randn(2, 8, 3), torch.tensor([20, 80])
    x_t = s.add_noise(x0, noise, t)
    x0_hat, eps_hat = s.split_prediction(x_t, s.target(x0, noise), t)
    assert torch.allclose(x0_hat, x0, atol=1e-4) and torch.allclose(eps_hat, noise, atol=1e-4)


def test_inference_timesteps_are_a_leading_subset_ending_at_the_clean_sample():
    assert inference_timesteps(100, 10) == [(90, 80), (80, 70), (70, 60), (60, 50), (50, 40), (40, 30),
                                           (30, 20), (20, 10), (10, 0), (0, -1)]
    assert len(inference_timesteps(100, 100)) == 100
    with pytest.raises(ValueError, match="num_inference_steps=0"):
        inference_timesteps(100, 0)


def test_ddim_step_log_prob_equals_normal_log_density():
    s = NoiseSchedule(100)
    x_t, out = torch.randn(3, 8, 2), torch.randn(3, 8, 2)
    step = ddim_step(s, x_t, out, 50, 40, eta=1.0, min_std=0.0067)
    x_prev = step.sample(torch.Generator().manual_seed(0))
    expected = torch.distributions.Normal(step.mean, step.std.expand_as(step.mean)).log_prob(x_prev).sum((1, 2))
    assert torch.allclose(step.log_prob(x_prev), expected, atol=1e-4)


def test_std_is_clipped_below_at_min_std():
    s = NoiseSchedule(100)
    final = ddim_step(s, torch.randn(2, 4, 2), torch.randn(2, 4, 2), 0, -1, eta=1.0, min_std=0.1)
    assert torch.allclose(final.std, torch.full_like(final.std, 0.1))  # the last step's sigma is 0
    mid = ddim_step(s, torch.randn(2, 4, 2), torch.randn(2, 4, 2), 90, 80, eta=1.0, min_std=0.0067)
    assert (mid.std > 0.0067).all()


def test_eta_zero_step_is_deterministic_and_has_no_log_prob():
    s = NoiseSchedule(100)
    step = ddim_step(s, torch.randn(1, 4, 2), torch.randn(1, 4, 2), 50, 40, eta=0.0)
    assert step.deterministic and torch.equal(step.sample(), step.mean)
    with pytest.raises(ValueError, match="deterministic"):
        step.log_prob(step.mean)


def test_eta_one_full_chain_step_is_the_ddpm_posterior():
    s = NoiseSchedule(100, clip_sample=False)
    x_t, eps = torch.randn(2, 4, 2), torch.randn(2, 4, 2)
    t = 60
    step = ddim_step(s, x_t, eps, t, t - 1, eta=1.0)
    ab, ab_prev = s.alphas_cumprod[t].item(), s.alphas_cumprod[t - 1].item()
    beta = 1 - ab / ab_prev
    x0 = (x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    mean = (math.sqrt(ab_prev) * beta / (1 - ab)) * x0 + (math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)) * x_t
    assert torch.allclose(step.mean, mean, atol=1e-5)
    assert step.std.flatten()[0].item() == pytest.approx(math.sqrt(beta * (1 - ab_prev) / (1 - ab)), rel=1e-5)


def test_deterministic_chain_depends_only_on_the_initial_noise():
    s, cond = NoiseSchedule(100), torch.randn(2, 4)
    noise = torch.randn(2, 8, 2)
    a = sample_chain(toy_denoiser, s, noise, cond, 10).actions
    torch.manual_seed(123)  # global RNG state must not matter
    b = sample_chain(toy_denoiser, s, noise, cond, 10).actions
    c = sample_chain(toy_denoiser, s, torch.randn(2, 8, 2), cond, 10).actions
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_chain_returns_states_and_log_probs_that_match_recomputation():
    s, cond = NoiseSchedule(100), torch.randn(3, 4)
    res = sample_chain(toy_denoiser, s, torch.randn(3, 8, 2), cond, 5, eta=1.0, min_std=0.0067,
                       generator=torch.Generator().manual_seed(1), return_chain=True, return_log_probs=True)
    assert res.chain.shape == (3, 6, 8, 2) and res.log_probs.shape == (3, 5)
    assert torch.equal(res.chain[:, -1], res.actions)
    again = chain_log_probs(toy_denoiser, s, res.chain, cond, 5, eta=1.0, min_std=0.0067)
    assert torch.allclose(again, res.log_probs, atol=1e-3)
    last_two = chain_log_probs(toy_denoiser, s, res.chain, cond, 5, eta=1.0, min_std=0.0067, steps=slice(-2, None))
    assert torch.allclose(last_two, res.log_probs[:, -2:], atol=1e-3)


def test_log_probs_without_min_std_are_refused():
    with pytest.raises(ValueError, match="min_std"):
        sample_chain(toy_denoiser, NoiseSchedule(100), torch.randn(1, 8, 2), torch.randn(1, 4), 5, eta=1.0,
                     return_log_probs=True)
