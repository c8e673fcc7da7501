"""Fuse every camera and the low-dim features of a PolicySpec over n_obs_steps into one condition vector."""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from robot_rl.core.spec import PolicySpec
from robot_rl.policies.model_config import PolicyConfig
from robot_rl.policies.encoders.image import ImageEncoder
from robot_rl.policies.encoders.state_encoder import StateEncoder


class ObsEncoder(nn.Module):
    """Normalized obs {key: (B, S, *shape)} -> per-step features (B, S, step_dim) -> condition (B, S * step_dim).

    One ImageEncoder per camera declared in the spec (0..N cameras), one StateEncoder over the concatenated
    low-dim keys (in spec order). Every step is encoded independently, so features of past steps can be cached.
    """

    def __init__(self, spec: PolicySpec, cfg: PolicyConfig):
        super().__init__()
        self.spec = spec
        self.n_obs_steps = spec.n_obs_steps
        self.cameras = nn.ModuleDict({
            f.key: ImageEncoder(f.shape, cfg.crop_ratio, cfg.image_width, cfg.image_blocks, cfg.image_pool,
                                cfg.num_keypoints, cfg.image_encoder, cfg.image_size, cfg.conv_channels)
            for f in spec.images
        })
        low_dim = sum(math.prod(f.shape) for f in spec.low_dim)
        self.state = StateEncoder(low_dim, cfg.state_dims) if low_dim else None
        self.step_dim = sum(c.out_dim for c in self.cameras.values()) + (self.state.out_dim if self.state else 0)
        self.out_dim = self.step_dim * self.n_obs_steps

    def encode_steps(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """{key: (B, S, *shape)} normalized float -> (B, S, step_dim), any number of steps S."""
        first = obs[self.spec.obs[0].key]
        B, S = first.shape[:2]
        for f in self.spec.obs:
            x = obs[f.key]
            if tuple(x.shape) != (B, S, *f.shape):
                raise ValueError(f"observation {f.key!r}: shape {tuple(x.shape)}, expected ({B}, {S}, "
                                 f"{', '.join(map(str, f.shape))}) (batch, steps, *spec shape)")
        return self.fuse({key: cam(obs[key].flatten(0, 1)).reshape(B, S, -1) for key, cam in self.cameras.items()},
                         obs)

    def fuse(self, camera_features: Mapping[str, torch.Tensor], obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Per-step camera features {key: (B, S, D)} and normalized low-dim obs {key: (B, S, *shape)} ->
        (B, S, step_dim): the cameras in this encoder's order, then the state encoder over the low-dim keys."""
        feats = [camera_features[key] for key in self.cameras]
        if self.state is not None:
            low = torch.cat([obs[f.key].flatten(2) for f in self.spec.low_dim], dim=-1)
            feats.append(self.state(low))
        return torch.cat(feats, dim=-1)

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """{key: (B, n_obs_steps, *shape)} -> (B, n_obs_steps * step_dim)."""
        feats = self.encode_steps(obs)
        if feats.shape[1] != self.n_obs_steps:
            raise ValueError(f"ObsEncoder: got {feats.shape[1]} observation steps, expected n_obs_steps={self.n_obs_steps}")
        return feats.flatten(1)
