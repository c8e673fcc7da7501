"""One camera: resize -> crop augmentation -> backbone (ResNet-18 with GroupNorm, or a small strided conv stack)
-> spatial-softmax keypoints or average pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.policies.encoders.conv import ConvStack
from robot_rl.policies.encoders.resnet import ResNet18GN
from robot_rl.policies.encoders.spatial_softmax import SpatialSoftmax


def random_crop(x: torch.Tensor, h: int, w: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, h, w), an independent random window per image.

    One slice per image: a gather with broadcast 4-D indices cost as much as a conv layer on a CPU.
    """
    N, C, H, W = x.shape
    top = torch.randint(0, H - h + 1, (N,), generator=generator).tolist()
    left = torch.randint(0, W - w + 1, (N,), generator=generator).tolist()
    return torch.stack([x[i, :, t:t + h, l:l + w] for i, (t, l) in enumerate(zip(top, left))])


def center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    H, W = x.shape[-2:]
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top:top + h, left:left + w]


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, *size) by area averaging (an average pool when H, W are multiples of size)."""
    H, W = x.shape[-2:]
    h, w = size
    if H % h == 0 and W % w == 0 and H // h == W // w:
        return F.avg_pool2d(x, H // h)
    return F.interpolate(x, size=size, mode="area" if h <= H and w <= W else "bilinear")


class ImageEncoder(nn.Module):
    """(N, C, H, W) float in [0, 1] -> (N, out_dim) features.

    image_size > 0 first resizes every image to (image_size, image_size) (area averaging), in training and
    at run time alike, so the recorded frames and the policy's inputs keep the camera's size. Training mode
    then crops a random (crop_ratio * size) window per image; eval mode takes the center window, so the
    network always sees the same size. backbone: "resnet18" (ResNet18GN(width, blocks)) or "conv"
    (ConvStack(conv_channels)).
    """

    def __init__(self, shape: tuple[int, int, int], crop_ratio: float = 0.9, width: int = 64,
                 blocks=(2, 2, 2, 2), pool: str = "spatial_softmax", num_keypoints: int = 32,
                 backbone: str = "resnet18", image_size: int = 0, conv_channels=(16, 32, 64, 128)):
        super().__init__()
        C, H, W = shape
        self.shape = tuple(shape)
        self.size = (int(image_size), int(image_size)) if image_size else (H, W)
        h, w = self.size
        self.crop = (max(1, round(h * crop_ratio)), max(1, round(w * crop_ratio)))
        if backbone == "resnet18":
            self.backbone = ResNet18GN(C, width, blocks)
        elif backbone == "conv":
            self.backbone = ConvStack(C, conv_channels)
        else:
            raise ValueError(f"ImageEncoder backbone={backbone!r}: expected resnet18 or conv")
        if pool == "spatial_softmax":
            self.pool = SpatialSoftmax(self.backbone.out_channels, num_keypoints)
            self.out_dim = self.pool.out_dim
        elif pool == "avg":
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.out_dim = self.backbone.out_channels
        else:
            raise ValueError(f"ImageEncoder pool={pool!r}: expected spatial_softmax or avg")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.size != tuple(images.shape[-2:]):
            images = resize(images, self.size)
        h, w = self.crop
        if (h, w) != tuple(images.shape[-2:]):
            images = random_crop(images, h, w) if self.training else center_crop(images, h, w)
        return self.pool(self.backbone(images))
