"""Model configuration of a chunked diffusion policy (denoiser, observation encoder, diffusion process).

One flat dataclass so every default is visible here and overridable from `configs/model/*.yaml`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from robot_rl.core.config import dataclass_from_dict
from robot_rl.core.errors import ConfigError

DENOISERS = ("unet", "mlp")
IMAGE_ENCODERS = ("resnet18", "conv")
POOLS = ("spatial_softmax", "avg")
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear")
PREDICTION_TYPES = ("epsilon", "sample")


@dataclass
class PolicyConfig:
    """Defaults follow diffusion_policy (ConditionalUnet1D, GroupNorm ResNet-18, DDPM-100, DDIM-10)."""

    # denoiser: "unet" (1-D temporal conv U-Net with FiLM) or "mlp" (residual MLP, low-dim / short chunks)
    denoiser: str = "unet"
    down_dims: tuple[int, ...] = (256, 512, 1024)  # U-Net channels per level; horizon % 2**(levels-1) == 0
    kernel_size: int = 5
    n_groups: int = 8  # GroupNorm groups in the U-Net
    step_embed_dim: int = 128  # sinusoidal diffusion-step embedding
    mlp_hidden_dim: int = 256
    mlp_num_blocks: int = 3

    # observation encoder
    # per camera: resnet18 (GroupNorm ResNet-18: image_width, image_blocks) or conv (a strided conv stack:
    # conv_channels, configs/model/diffusion_cpu_image.yaml); a saved config without the key is a resnet18
    image_encoder: str = "resnet18"
    image_size: int = 0  # > 0: resize every camera image to image_size x image_size first; 0: the camera's size
    image_width: int = 64  # ResNet-18 base width (64 = standard ResNet-18)
    image_blocks: tuple[int, ...] = (2, 2, 2, 2)  # basic blocks per stage
    conv_channels: tuple[int, ...] = (16, 32, 64, 128)  # conv: one 3x3 stride-2 conv per entry
    image_pool: str = "spatial_softmax"  # spatial_softmax (2 x num_keypoints features) | avg (backbone channels)
    num_keypoints: int = 32
    crop_ratio: float = 0.9  # random crop (train) / center crop (eval) to this fraction of H and W
    state_dims: tuple[int, ...] = (64, 64)  # per-step proprio MLP; () passes low-dim features through

    # diffusion process
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"
    clip_sample: bool = True  # clip predicted clean actions to [-1, 1] (the normalized action range)
    num_inference_steps: int = 10  # DDIM steps used by predict_action/act
    eta: float = 0.0  # DDIM eta used by act(); 0 = deterministic given the initial noise

    def __post_init__(self) -> None:
        self.down_dims = tuple(int(d) for d in self.down_dims)
        self.image_blocks = tuple(int(b) for b in self.image_blocks)
        self.conv_channels = tuple(int(c) for c in self.conv_channels)
        self.state_dims = tuple(int(d) for d in self.state_dims)
        for name, allowed in (("denoiser", DENOISERS), ("image_encoder", IMAGE_ENCODERS), ("image_pool", POOLS),
                              ("beta_schedule", BETA_SCHEDULES), ("prediction_type", PREDICTION_TYPES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"policy.{name}={getattr(self, name)!r}: expected one of {allowed}")
        if not self.down_dims:
            raise ConfigError("policy.down_dims: at least one level is required")
        if not self.conv_channels:
            raise ConfigError("policy.conv_channels: at least one layer is required")
        if self.image_size < 0:
            raise ConfigError(f"policy.image_size={self.image_size}: must be >= 0 (0: the camera's size)")
        sizes = {"down_dims": self.down_dims, "image_blocks": self.image_blocks, "kernel_size": self.kernel_size,
                 "conv_channels": self.conv_channels,
                 "n_groups": self.n_groups, "mlp_hidden_dim": self.mlp_hidden_dim, "image_width": self.image_width,
                 "num_keypoints": self.num_keypoints, "num_train_timesteps": self.num_train_timesteps}
        for name, value in sizes.items():
            if any(v < 1 for v in (value if isinstance(value, tuple) else (value,))):
                shown = list(value) if isinstance(value, tuple) else value
                raise ConfigError(f"policy.{name}={shown}: must be >= 1")
        if self.mlp_num_blocks < 0 or any(d < 1 for d in self.state_dims):
            raise ConfigError(f"policy.mlp_num_blocks={self.mlp_num_blocks} / state_dims={list(self.state_dims)}: "
                              f"blocks must be >= 0 and state layer sizes >= 1")
        if self.step_embed_dim < 4 or self.step_embed_dim % 2:
            raise ConfigError(f"policy.step_embed_dim={self.step_embed_dim}: must be even and >= 4 (sinusoidal)")
        bad = [d for d in self.down_dims if d % self.n_groups]
        if bad:
            raise ConfigError(f"policy.down_dims={list(self.down_dims)}: {bad} not divisible by n_groups={self.n_groups}")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"policy.kernel_size={self.kernel_size}: must be odd")
        if not 0.0 < self.crop_ratio <= 1.0:
            raise ConfigError(f"policy.crop_ratio={self.crop_ratio}: must be in (0, 1]")
        if not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            raise ConfigError(f"policy.num_inference_steps={self.num_inference_steps}: must be in "
                              f"[1, num_train_timesteps={self.num_train_timesteps}]")
        if self.eta < 0:
            raise ConfigError(f"policy.eta={self.eta}: must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @staticmethod
    def from_dict(d: Mapping[str, Any] | None) -> "PolicyConfig":
        return dataclass_from_dict(PolicyConfig, d, "model")
