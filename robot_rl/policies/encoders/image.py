"""One camera: crop augmentation -> ResNet-18 (GroupNorm) -> spatial-softmax keypoints or average pooling."""

from __future__ import annotations

import torch
from torch import nn

from robot_rl.policies.encoders.resnet import ResNet18GN
from robot_rl.policies.encoders.spatial_softmax import SpatialSoftmax


def random_crop(x: torch.Tensor, h: int, w: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, h, w), an independent random window per image."""
    N, C, H, W = x.shape
    top = torch.randint(0, H - h + 1, (N,), generator=generator).to(x.device)
    left = torch.randint(0, W - w + 1, (N,), generator=generator).to(x.device)
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, h, 1)
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, w)
    n = torch.arange(N, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return x[n, c, rows, cols]


def center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    H, W = x.shape[-2:]
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top:top + h, left:left + w]


class ImageEncoder(nn.Module):
    """(N, C, H, W) float in [0, 1] -> (N, out_dim) features.

    Training mode crops a random (crop_ratio * H, crop_ratio * W) window per image; eval mode takes the
    center window, so the network always sees the same size.
    """

    def __init__(self, shape: tuple[int, int, int], crop_ratio: float = 0.9, width: int = 64,
                 blocks=(2, 2, 2, 2), pool: str = "spatial_softmax", num_keypoints: int = 32):
        super().__init__()
        C, H, W = shape
        self.shape = tuple(shape)
        self.crop = (max(1, round(H * crop_ratio)), max(1, round(W * crop_ratio)))
        self.backbone = ResNet18GN(C, width, blocks)
        if pool == "spatial_softmax":
            self.pool = SpatialSoftmax(self.backbone.out_channels, num_keypoints)
            self.out_dim = self.pool.out_dim
        elif pool == "avg":
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.out_dim = self.backbone.out_channels
        else:
            raise ValueError(f"ImageEncoder pool={pool!r}: expected spatial_softmax or avg")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = self.crop
        if (h, w) != tuple(images.shape[-2:]):
            images = random_crop(images, h, w) if self.training else center_crop(images, h, w)
        return self.pool(self.backbone(images))
