"""Residual MLP denoiser over the flattened action chunk (low-dim observations, short chunks, one step)."""

from __future__ import annotations

import torch
from torch import nn

from robot_rl.policies.denoisers.embeddings import step_encoder


class ResidualBlock(nn.Module):
    """x + Linear(Mish(Linear(LayerNorm(x)))), width preserved."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.Mish(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class ResidualMLPDenoiser(nn.Module):
    """noisy_actions (B, T, Da), timestep (B,), global_cond (B, C) -> (B, T, Da).

    Input: [flattened chunk, step embedding, global condition] -> hidden -> residual blocks -> chunk.
    """

    def __init__(self, action_dim: int, horizon: int, global_cond_dim: int, hidden_dim: int = 256,
                 num_blocks: int = 3, step_embed_dim: int = 64):
        super().__init__()
        self.horizon, self.action_dim, self.global_cond_dim = horizon, action_dim, global_cond_dim
        self.step_encoder = step_encoder(step_embed_dim, hidden_mult=2)
        self.inp = nn.Linear(horizon * action_dim + step_embed_dim + global_cond_dim, hidden_dim)
        self.blocks = nn.Sequential(*[ResidualBlock(hidden_dim) for _ in range(num_blocks)])
        self.out = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Mish(), nn.Linear(hidden_dim, horizon * action_dim))

    def forward(self, noisy_actions: torch.Tensor, timestep: torch.Tensor, global_cond: torch.Tensor) -> torch.Tensor:
        B = noisy_actions.shape[0]
        if noisy_actions.shape[1:] != (self.horizon, self.action_dim):
            raise ValueError(f"ResidualMLPDenoiser: noisy_actions shape {tuple(noisy_actions.shape)}, "
                             f"expected (B, {self.horizon}, {self.action_dim})")
        if global_cond.shape != (B, self.global_cond_dim):
            raise ValueError(f"ResidualMLPDenoiser: global_cond shape {tuple(global_cond.shape)}, "
                             f"expected ({B}, {self.global_cond_dim})")
        h = torch.cat([noisy_actions.flatten(1), self.step_encoder(timestep.expand(B)), global_cond], dim=-1)
        return self.out(self.blocks(self.inp(h))).reshape(B, self.horizon, self.action_dim)
