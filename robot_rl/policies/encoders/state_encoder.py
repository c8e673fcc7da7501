"""Proprio/state encoder: a per-timestep MLP over the concatenated low-dim observation features."""

from __future__ import annotations

import torch
from torch import nn


class StateEncoder(nn.Module):
    """(..., in_dim) -> (..., out_dim). dims=(64, 64): Linear-Mish-Linear; dims=() passes the input through."""

    def __init__(self, in_dim: int, dims=(64, 64)):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_dim
        for i, d in enumerate(dims):
            layers.append(nn.Linear(prev, int(d)))
            if i < len(dims) - 1:
                layers.append(nn.Mish())
            prev = int(d)
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
