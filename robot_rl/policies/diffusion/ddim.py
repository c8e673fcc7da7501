"""DDIM sampling where every denoising step is an explicit Gaussian.

A chain runs x_K (= the initial noise) -> ... -> x_0 over a subset of the training timesteps.
Step k maps x_t to x_{t_prev} ~ N(mean, std^2 I) with (Song et al. 2021, eq. 12):
    x0_hat, eps_hat = schedule.split_prediction(x_t, model_out, t)
    sigma = eta * sqrt((1 - ab_prev) / (1 - ab_t)) * sqrt(1 - ab_t / ab_prev)
    mean  = sqrt(ab_prev) * x0_hat + sqrt(1 - ab_prev - sigma^2) * eps_hat
    std   = max(sigma, min_std)
eta = 0, min_std = 0 is the deterministic DDIM path (a function of the initial noise only);
eta = 1 over all T timesteps is ancestral DDPM sampling (posterior variance beta_tilde);
min_std > 0 (RL-100: 0.0067, DPPO: 0.1) keeps every step stochastic so per-step log-probs exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from robot_rl.core.errors import ConfigError
from robot_rl.policies.diffusion.schedule import NoiseSchedule

# denoise(x_t (B, T, Da), t (B,) long, cond (B, C)) -> model output (B, T, Da)
Denoise = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

_LOG_SQRT_2PI = 0.5 * torch.log(torch.tensor(2 * torch.pi)).item()


def inference_timesteps(num_train_timesteps: int, num_steps: int) -> list[tuple[int, int]]:
    """(t, t_prev) pairs of a num_steps chain, evenly spaced ("leading"): T=100, K=10 -> (90, 80), ..., (0, -1).
    t_prev = -1 is the clean end (alpha_bar = 1)."""
    if not 1 <= int(num_steps) <= int(num_train_timesteps):
        raise ConfigError(f"num_inference_steps={num_steps}: must be in [1, num_train_timesteps={num_train_timesteps}]")
    ratio = num_train_timesteps // num_steps
    ts = [k * ratio for k in reversed(range(num_steps))]
    return [(t, t - ratio if t - ratio >= 0 else -1) for t in ts]


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, std^2 I) summed over all but the first (batch) dim -> (B,). Needs std > 0."""
    std = std.expand_as(mean)
    z = (x - mean) / std
    logp = -0.5 * z.square() - std.log() - _LOG_SQRT_2PI
    return logp.flatten(1).sum(1)


@dataclass
class GaussianStep:
    """One denoising step x_t -> x_{t_prev} ~ N(mean, std^2). mean: (B, T, Da); std: broadcastable (B, 1, 1)."""

    mean: torch.Tensor
    std: torch.Tensor

    @property
    def deterministic(self) -> bool:
        return bool((self.std == 0).all())

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.deterministic:
            return self.mean
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) log-density of x under this step, summed over (T, Da)."""
        if (self.std <= 0).any():
            raise ValueError("log_prob of a deterministic DDIM step: use eta > 0 and min_std > 0")
        return gaussian_log_prob(x, self.mean, self.std)


def ddim_step(schedule: NoiseSchedule, x_t: torch.Tensor, model_out: torch.Tensor, t: int | torch.Tensor,
              t_prev: int | torch.Tensor, eta: float = 0.0, min_std: float = 0.0) -> GaussianStep:
    """The Gaussian of x_{t_prev} given x_t and the denoiser output at (x_t, t). t, t_prev: ints or (B,)."""
    ab_t = schedule.alpha_bar(t, x_t)
    ab_prev = schedule.alpha_bar(t_prev, x_t)
    x0, eps = schedule.split_prediction(x_t, model_out, t)
    sigma = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).clamp(min=0).sqrt()
    mean = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma.square()).clamp(min=0).sqrt() * eps
    return GaussianStep(mean=mean, std=sigma.clamp(min=min_std))


@dataclass
class SampleResult:
    """actions: x_0 (B, T, Da) in normalized units; chain: (B, K+1, T, Da) = x_K (noise) .. x_0;
    log_probs: (B, K) log-density of each step's output under its Gaussian; timesteps: the (t, t_prev) pairs."""

    actions: torch.Tensor
    chain: torch.Tensor | None = None
    log_probs: torch.Tensor | None = None
    timesteps: list[tuple[int, int]] = field(default_factory=list)


def sample_chain(denoise: Denoise, schedule: NoiseSchedule, init_noise: torch.Tensor, cond: torch.Tensor,
                 num_steps: int, eta: float = 0.0, min_std: float = 0.0, generator: torch.Generator | None = None,
                 return_chain: bool = False, return_log_probs: bool = False) -> SampleResult:
    """Run a num_steps DDIM chain from init_noise (B, T, Da) under condition cond (B, C).

    Deterministic given init_noise when eta == 0 and min_std == 0; otherwise step noise comes from
    `generator` (or torch's global RNG). Per-step log-probs need min_std > 0.
    """
    if return_log_probs and min_std <= 0:
        raise ValueError(f"per-step log-probs need min_std > 0 (got {min_std}): the last DDIM step has sigma = 0")
    pairs = inference_timesteps(schedule.num_train_timesteps, num_steps)
    x = init_noise
    chain, log_probs = [x], []
    B = x.shape[0]
    for t, t_prev in pairs:
        t_batch = torch.full((B,), t, dtype=torch.long, device=x.device)
        step = ddim_step(schedule, x, denoise(x, t_batch, cond), t, t_prev, eta, min_std)
        x = step.sample(generator)
        if return_log_probs:
            log_probs.append(step.log_prob(x))
        if return_chain:
            chain.append(x)
    return SampleResult(
        actions=x,
        chain=torch.stack(chain, dim=1) if return_chain else None,
        log_probs=torch.stack(log_probs, dim=1) if return_log_probs else None,
        timesteps=pairs,
    )


def chain_log_probs(denoise: Denoise, schedule: NoiseSchedule, chain: torch.Tensor, cond: torch.Tensor,
                    num_steps: int, eta: float, min_std: float, steps: slice | None = None) -> torch.Tensor:
    """(B, K') log-probs of a stored chain (B, K+1, T, Da) under the current denoiser, the selected steps
    (default all K; e.g. slice(-5, None) for DPPO's last 5) in one batched forward (differentiable: this is
    what PPO-over-denoising optimizes)."""
    if min_std <= 0:
        raise ValueError(f"chain log-probs need min_std > 0 (got {min_std})")
    pairs = inference_timesteps(schedule.num_train_timesteps, num_steps)
    B, K1 = chain.shape[:2]
    if K1 != len(pairs) + 1:
        raise ValueError(f"chain has {K1} states, a {num_steps}-step chain has {len(pairs) + 1}")
    steps = steps or slice(None)
    pairs = pairs[steps]
    K = len(pairs)
    x_t = chain[:, :-1][:, steps].flatten(0, 1)  # (B*K', T, Da), step-major within each sample
    x_prev = chain[:, 1:][:, steps].flatten(0, 1)
    t = torch.tensor([p[0] for p in pairs], device=chain.device).repeat(B)
    t_prev = torch.tensor([p[1] for p in pairs], device=chain.device).repeat(B)
    out = denoise(x_t, t, cond.repeat_interleave(K, dim=0))
    step = ddim_step(schedule, x_t, out, t, t_prev, eta, min_std)
    return step.log_prob(x_prev).reshape(B, K)
