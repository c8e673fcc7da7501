"""Sinusoidal embedding of the integer diffusion timestep."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """t (B,) -> (B, dim): [sin(t w_i), cos(t w_i)] with w_i log-spaced from 1 to 1/10000."""

    def __init__(self, dim: int):
        super().__init__()
        if dim < 4 or dim % 2:
            raise ValueError(f"SinusoidalEmbedding dim={dim}: must be even and >= 4")
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / (half - 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.float()[:, None] * self.freqs[None, :]
        return torch.cat([args.sin(), args.cos()], dim=-1)


def step_encoder(dim: int, hidden_mult: int = 4) -> nn.Sequential:
    """Timestep (B,) -> (B, dim) learned embedding on top of the sinusoidal one."""
    return nn.Sequential(SinusoidalEmbedding(dim), nn.Linear(dim, dim * hidden_mult), nn.Mish(),
                         nn.Linear(dim * hidden_mult, dim))
