"""Per-key affine normalization in torch: x_norm = x * scale + offset.

Contract with the data layer: for each low-dim key (observations and the action) it provides stats
{min, max, mean, std} as arrays of the feature's shape; `affine_from_stats` turns them into `scale`
and `offset` according to the key's `normalize` mode in the PolicySpec:
    limits    [min, max] -> [-1, 1] (constant dimensions map to 0)
    gaussian  (x - mean) / std
    none      identity
    image     uint8 -> x / 255; float images are taken to be in [0, 1] already
The checkpoint stores the result in normalizer.safetensors as "<key>.scale" / "<key>.offset"
("<key>.min/max/mean/std" written by robot_rl.data beside them are accepted and ignored).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from robot_rl.core.errors import CheckpointError, ConfigError
from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.data.normalizer_stats import STAT_NAMES, affine_from_stats  # one formula for both layers



class Normalizer(nn.Module):
    """Affine normalizers for the low-dim features and the action of a PolicySpec.

    Keys without stats (or with normalize=none) are passed through as float32; image keys are
    converted to [0, 1]. Buffers are not part of the policy's state_dict: they travel in the
    checkpoint's normalizer.safetensors (see `flat()` / `from_flat()`).
    """

    def __init__(self, spec: PolicySpec, affine: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None):
        super().__init__()
        self.features: dict[str, FeatureSpec] = {f.key: f for f in (*spec.obs, spec.action)}
        self.keys: list[str] = []
        for key, (scale, offset) in (affine or {}).items():
            feature = self.features.get(key)
            if feature is None:
                raise ConfigError(f"normalizer key {key!r} is not in the spec (keys {sorted(self.features)})")
            scale = torch.as_tensor(np.asarray(scale), dtype=torch.float32)
            offset = torch.as_tensor(np.asarray(offset), dtype=torch.float32)
            for name, t in (("scale", scale), ("offset", offset)):
                try:
                    torch.broadcast_shapes(t.shape, feature.shape)
                except RuntimeError:
                    raise ConfigError(f"normalizer {key}.{name}: shape {tuple(t.shape)} does not broadcast to "
                                      f"the feature shape {feature.shape}") from None
            self.register_buffer(f"_scale_{len(self.keys)}", scale, persistent=False)
            self.register_buffer(f"_offset_{len(self.keys)}", offset, persistent=False)
            self.keys.append(key)

    @staticmethod
    def from_stats(spec: PolicySpec, stats: Mapping[str, Mapping[str, np.ndarray]]) -> "Normalizer":
        """Stats per key {min, max, mean, std} (from the data layer) -> Normalizer for every low-dim key."""
        affine = {}
        for f in (*spec.low_dim, spec.action):
            if f.normalize == "none":
                continue
            if f.key not in stats:
                raise ConfigError(f"normalizer: no stats for {f.key!r} (normalize={f.normalize}); "
                                  f"stats have keys {sorted(stats)}")
            affine[f.key] = affine_from_stats(stats[f.key], f.normalize, f.key)
        return Normalizer(spec, affine)

    def flat(self) -> dict[str, torch.Tensor]:
        """{"<key>.scale": tensor, "<key>.offset": tensor} for normalizer.safetensors."""
        out = {}
        for i, key in enumerate(self.keys):
            out[f"{key}.scale"] = getattr(self, f"_scale_{i}").cpu()
            out[f"{key}.offset"] = getattr(self, f"_offset_{i}").cpu()
        return out

    @staticmethod
    def from_flat(spec: PolicySpec, flat: Mapping[str, np.ndarray], source: str = "normalizer") -> "Normalizer":
        affine: dict[str, list] = {}
        for name, value in flat.items():
            key, _, part = name.rpartition(".")
            if part in STAT_NAMES and key:  # raw stats the data layer may store beside the affine
                continue
            if part not in ("scale", "offset") or not key:
                raise CheckpointError(f"{source}: unexpected tensor {name!r} (expected '<key>.scale'/'<key>.offset')")
            affine.setdefault(key, [None, None])[part == "offset"] = value
        incomplete = [k for k, v in affine.items() if v[0] is None or v[1] is None]
        if incomplete:
            raise CheckpointError(f"{source}: keys {incomplete} lack a scale or an offset")
        try:
            return Normalizer(spec, {k: (v[0], v[1]) for k, v in affine.items()})
        except ConfigError as e:
            raise CheckpointError(f"{source}: {e}") from None

    def _affine(self, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        if key not in self.keys:
            return None
        i = self.keys.index(key)
        return getattr(self, f"_scale_{i}"), getattr(self, f"_offset_{i}")

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """Raw feature values (..., *shape) -> normalized float32."""
        feature = self.features.get(key)
        if feature is not None and feature.kind != "low_dim":
            return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        ab = self._affine(key)
        x = x.float()
        return x if ab is None else x * ab[0] + ab[1]

    def unnormalize(self, key: str, y: torch.Tensor) -> torch.Tensor:
        """Normalized values -> raw units (inverse of `normalize` for low-dim keys)."""
        ab = self._affine(key)
        return y if ab is None else (y - ab[1]) / ab[0]
