"""ResNet-18 with GroupNorm instead of BatchNorm, trained from scratch (no downloaded weights)."""

from __future__ import annotations

import torch
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """16 channels per group (diffusion_policy's BatchNorm replacement), at least one group."""
    return nn.GroupNorm(max(1, channels // 16), channels)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection; stride 2 halves H and W."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.norm1 = group_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), group_norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.norm1(self.conv1(x)))
        return self.relu(self.norm2(self.conv2(h)) + self.shortcut(x))


class ResNet18GN(nn.Module):
    """(N, C, H, W) float -> feature map (N, 8 * width, ceil(H / 32), ceil(W / 32)).

    width=64, blocks=(2, 2, 2, 2) is the standard ResNet-18 layout (11.2 M parameters without the fc head);
    smaller widths/blocks make tiny test models.
    """

    def __init__(self, in_channels: int = 3, width: int = 64, blocks=(2, 2, 2, 2)):
        super().__init__()
        if len(blocks) != 4:
            raise ValueError(f"ResNet18GN blocks={blocks}: expected 4 stages")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False), group_norm(width),
            nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, ch = [], width
        for i, n in enumerate(blocks):
            out = width * 2 ** i
            stride = 1 if i == 0 else 2
            stages += [BasicBlock(ch, out, stride)] + [BasicBlock(out, out) for _ in range(int(n) - 1)]
            ch = out
        self.stages = nn.Sequential(*stages)
        self.out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))
