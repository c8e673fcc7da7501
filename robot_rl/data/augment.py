"""Image augmentation on tensors: random crop and color jitter, the same for every step of a window.

Applied to (T, C, H, W) uint8 frames of one image feature; returns uint8. In eval mode
(`train=False`) the crop is centred and colors are left unchanged, so validation is deterministic.
A crop changes the output size to `crop` (H, W): the model's image encoder must expect that size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robot_rl.core.errors import ConfigError


@dataclass(frozen=True)
class ImageAugment:
    """crop: output (H, W) or None; brightness/contrast/saturation: jitter strengths in [0, 1)
    (a factor drawn uniformly in [1 - s, 1 + s]); train: random (True) or centred/no jitter (False)."""

    crop: tuple[int, int] | None = None
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    train: bool = True

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"augment.{name} must be in [0, 1), got {value}")
        if self.crop is not None:
            object.__setattr__(self, "crop", (int(self.crop[0]), int(self.crop[1])))

    def eval(self) -> "ImageAugment":
        return ImageAugment(self.crop, self.brightness, self.contrast, self.saturation, train=False)

    def __call__(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """frames: (T, C, H, W) uint8 -> (T, C, crop_h, crop_w) uint8."""
        if self.crop is not None:
            frames = self._crop(frames, generator)
        if self.train and (self.brightness or self.contrast or self.saturation) and frames.shape[1] == 3:
            frames = self._jitter(frames, generator)
        return frames

    def _crop(self, frames: torch.Tensor, generator) -> torch.Tensor:
        h, w = frames.shape[-2:]
        ch, cw = self.crop
        if ch > h or cw > w:
            raise ConfigError(f"augment.crop {self.crop} is larger than the image ({h}, {w})")
        if self.train:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        else:
            top, left = (h - ch) // 2, (w - cw) // 2
        return frames[..., top:top + ch, left:left + cw]

    def _jitter(self, frames: torch.Tensor, generator) -> torch.Tensor:
        def factor(strength: float) -> float:
            return 1.0 + strength * (2.0 * float(torch.rand((), generator=generator)) - 1.0)

        x = frames.float()
        if self.brightness:
            x = x * factor(self.brightness)
        if self.contrast:
            mean = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(-2, -1), keepdim=True)
            x = (x - mean[:, None]) * factor(self.contrast) + mean[:, None]
        if self.saturation:
            gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
            x = (x - gray) * factor(self.saturation) + gray
        return x.round_().clamp_(0, 255).to(torch.uint8)
