"""Spatial softmax: a feature map -> expected image coordinates of learned keypoints."""

from __future__ import annotations

import torch
from torch import nn


class SpatialSoftmax(nn.Module):
    """(N, C, H, W) -> (N, 2 * num_keypoints): per keypoint the softmax-weighted mean (x, y) in [-1, 1]."""

    def __init__(self, in_channels: int, num_keypoints: int = 32):
        super().__init__()
        self.keypoints = nn.Conv2d(in_channels, num_keypoints, 1)
        self.out_dim = 2 * num_keypoints

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        h = self.keypoints(feature_map)
        N, K, H, W = h.shape
        attention = h.flatten(2).softmax(dim=-1)  # (N, K, H*W)
        ys = torch.linspace(-1, 1, H, device=h.device, dtype=h.dtype)
        xs = torch.linspace(-1, 1, W, device=h.device, dtype=h.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)  # (H*W, 2)
        return (attention @ grid).flatten(1)
