"""A small strided conv stack (DrQ / SERL-style) for CPU training and inference, trained from scratch."""

from __future__ import annotations

import torch
from torch import nn

from robot_rl.policies.encoders.resnet import group_norm


class ConvStack(nn.Module):
    """(N, C, H, W) float -> feature map (N, channels[-1], ~H / 2**len(channels), ~W / 2**len(channels)).

    One 3x3 stride-2 conv + GroupNorm + ReLU per entry of `channels`: every layer halves the map, so the
    cost is dominated by the first layers (a 58x58 crop: 29x29x16 after the first layer); DrQ's encoder
    keeps the map size after its first layer (stride 1), at several times the FLOPs.
    """

    def __init__(self, in_channels: int = 3, channels=(16, 32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for ch in channels:
            layers += [nn.Conv2d(prev, int(ch), 3, stride=2, padding=1, bias=False), group_norm(int(ch)),
                       nn.ReLU(inplace=True)]
            prev = int(ch)
        self.net = nn.Sequential(*layers)
        self.out_channels = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
