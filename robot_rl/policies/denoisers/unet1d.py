"""1-D temporal convolution U-Net over the action horizon with FiLM conditioning (diffusion_policy style).

Channels are the action dims, length is the horizon. Each residual block is modulated by
FiLM (per-channel scale and bias) from [diffusion-step embedding, global observation condition].
GroupNorm throughout (no BatchNorm: batch statistics hurt with EMA and small batches).
"""

from __future__ import annotations

import torch
from torch import nn

from robot_rl.policies.denoisers.embeddings import step_encoder


class Conv1dBlock(nn.Sequential):
    """Conv1d (same length) -> GroupNorm -> Mish."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, n_groups: int):
        super().__init__(nn.Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2),
                         nn.GroupNorm(n_groups, out_ch), nn.Mish())


class FiLMResBlock1d(nn.Module):
    """x (B, in_ch, L), cond (B, cond_dim) -> (B, out_ch, L)."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block1 = Conv1dBlock(in_ch, out_ch, kernel_size, n_groups)
        self.block2 = Conv1dBlock(out_ch, out_ch, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_ch))
        self.skip = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        h = self.block1(x) * scale + bias
        return self.block2(h) + self.skip(x)


class ConditionalUnet1D(nn.Module):
    """noisy_actions (B, T, Da), timestep (B,), global_cond (B, C) -> (B, T, Da).

    Levels: down_dims[i] channels at length T / 2**i; the horizon T must be divisible by
    2**(len(down_dims) - 1).
    """

    def __init__(self, action_dim: int, global_cond_dim: int, down_dims=(256, 512, 1024), kernel_size: int = 5,
                 n_groups: int = 8, step_embed_dim: int = 128):
        super().__init__()
        self.down_dims = tuple(down_dims)
        self.global_cond_dim = global_cond_dim
        self.step_encoder = step_encoder(step_embed_dim)
        cond_dim = step_embed_dim + global_cond_dim

        def block(i: int, o: int) -> FiLMResBlock1d:
            return FiLMResBlock1d(i, o, cond_dim, kernel_size, n_groups)

        dims = [action_dim, *self.down_dims]
        self.down = nn.ModuleList()
        for level, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            last = level == len(self.down_dims) - 1
            self.down.append(nn.ModuleList([
                block(cin, cout), block(cout, cout),
                nn.Identity() if last else nn.Conv1d(cout, cout, 3, stride=2, padding=1),
            ]))
        mid = self.down_dims[-1]
        self.mid = nn.ModuleList([block(mid, mid), block(mid, mid)])
        self.up = nn.ModuleList()  # from the deepest level up; concatenates that level's skip
        for cin, cout in reversed(list(zip(self.down_dims[:-1], self.down_dims[1:]))):
            self.up.append(nn.ModuleList([
                block(2 * cout, cin), block(cin, cin), nn.ConvTranspose1d(cin, cin, 4, stride=2, padding=1),
            ]))
        self.final = nn.Sequential(Conv1dBlock(self.down_dims[0], self.down_dims[0], kernel_size, n_groups),
                                   nn.Conv1d(self.down_dims[0], action_dim, 1))

    def forward(self, noisy_actions: torch.Tensor, timestep: torch.Tensor, global_cond: torch.Tensor) -> torch.Tensor:
        B, T, _ = noisy_actions.shape
        factor = 2 ** (len(self.down_dims) - 1)
        if T % factor:
            raise ValueError(f"ConditionalUnet1D: horizon {T} must be divisible by {factor} "
                             f"(2**(len(down_dims)-1) with down_dims={list(self.down_dims)})")
        if global_cond.shape != (B, self.global_cond_dim):
            raise ValueError(f"ConditionalUnet1D: global_cond shape {tuple(global_cond.shape)}, "
                             f"expected ({B}, {self.global_cond_dim})")
        cond = torch.cat([self.step_encoder(timestep.expand(B)), global_cond], dim=-1)
        x = noisy_actions.transpose(1, 2)  # (B, Da, T)
        skips = []
        for res1, res2, downsample in self.down:
            x = res2(res1(x, cond), cond)
            skips.append(x)
            x = downsample(x)
        for res in self.mid:
            x = res(x, cond)
        # up path: each stage concatenates the skip of the level it starts at (level 0's skip is unused,
        # as in diffusion_policy), then upsamples to the next finer level
        for (res1, res2, upsample), skip in zip(self.up, reversed(skips[1:])):
            x = res2(res1(torch.cat([x, skip], dim=1), cond), cond)
            x = upsample(x)
        return self.final(x).transpose(1, 2)
