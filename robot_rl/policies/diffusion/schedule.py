"""DDPM forward process: betas, q(x_t | x_0), and conversions between model outputs.

Timesteps are integers t = 0 .. T-1 (T = num_train_timesteps); t = 0 is the least noisy.
alpha_bar[t] = prod_{s<=t} (1 - beta_s);  x_t = sqrt(alpha_bar[t]) x_0 + sqrt(1 - alpha_bar[t]) eps.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from robot_rl.core.errors import ConfigError


def make_betas(num_train_timesteps: int, beta_schedule: str = "squaredcos_cap_v2",
               beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """(T,) float64 betas. squaredcos_cap_v2: Nichol & Dhariwal cosine schedule, betas capped at 0.999."""
    T = int(num_train_timesteps)
    if T < 1:
        raise ConfigError(f"num_train_timesteps={T}: must be >= 1")
    if beta_schedule == "linear":
        return np.linspace(beta_start, beta_end, T, dtype=np.float64)
    if beta_schedule == "squaredcos_cap_v2":
        def alpha_bar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array([min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)])
    raise ConfigError(f"beta_schedule={beta_schedule!r}: expected squaredcos_cap_v2 or linear")


class NoiseSchedule:
    """The discrete DDPM process shared by training (add_noise/target) and sampling (split_prediction)."""

    def __init__(self, num_train_timesteps: int = 100, beta_schedule: str = "squaredcos_cap_v2",
                 prediction_type: str = "epsilon", clip_sample: bool = True, clip_range: float = 1.0):
        if prediction_type not in ("epsilon", "sample"):
            raise ConfigError(f"prediction_type={prediction_type!r}: expected epsilon or sample")
        self.num_train_timesteps = int(num_train_timesteps)
        self.prediction_type = prediction_type
        self.clip_sample = bool(clip_sample)
        self.clip_range = float(clip_range)
        self.betas = torch.as_tensor(make_betas(num_train_timesteps, beta_schedule))
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)  # float64, (T,)
        self._cache: dict[tuple, torch.Tensor] = {}

    def alpha_bar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """alpha_bar at integer timesteps t (B,) (t = -1 means the clean end, alpha_bar = 1), shaped to
        broadcast against `like` (B, ...), in like's dtype/device."""
        key = (like.device, like.dtype)
        if key not in self._cache:  # [1, alpha_bar_0, ..., alpha_bar_{T-1}] so that index t+1 works for t=-1
            self._cache[key] = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod]).to(
                device=like.device, dtype=like.dtype)
        t = torch.as_tensor(t).long()
        if t.device.type == "cpu" and (t.min() < -1 or t.max() >= self.num_train_timesteps):  # no GPU sync
            raise ValueError(f"timesteps must be in [-1, {self.num_train_timesteps - 1}], got {t.tolist()}")
        t = t.to(like.device)
        if t.ndim == 0:
            t = t.expand(like.shape[0])
        return self._cache[key][t + 1].reshape(-1, *([1] * (like.ndim - 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Sample q(x_t | x_0) with the given standard-normal noise. x0, noise: (B, ...); t: (B,) int."""
        ab = self.alpha_bar(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the denoiser is trained to output: the noise (epsilon) or the clean sample."""
        return noise if self.prediction_type == "epsilon" else x0

    def split_prediction(self, x_t: torch.Tensor, model_out: torch.Tensor, t: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Model output at (x_t, t) -> (x0_hat, eps_hat), with x0_hat clipped to the sample range when
        clip_sample is set (eps_hat then recomputed so both stay consistent with x_t)."""
        ab = self.alpha_bar(t, x_t)
        if self.prediction_type == "epsilon":
            eps = model_out
            x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        else:
            x0 = model_out
            eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        if self.clip_sample:
            x0 = x0.clamp(-self.clip_range, self.clip_range)
            eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        return x0, eps
