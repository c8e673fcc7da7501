"""Raw observations -> tensors with checked shapes: image layout (HWC or CHW), history, batch-1 numpy input."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from robot_rl.core.spec import FeatureSpec, PolicySpec


def to_chw(feature: FeatureSpec, x: torch.Tensor) -> torch.Tensor:
    """Images (..., C, H, W) or stored layout (..., H, W, C) -> (..., C, H, W); anything else is an error."""
    C, H, W = feature.shape
    if tuple(x.shape[-3:]) == (C, H, W):
        return x
    if tuple(x.shape[-3:]) == (H, W, C):
        return x.movedim(-1, -3).contiguous()  # NCHW-contiguous convs are faster than permuted views
    raise ValueError(f"observation {feature.key!r}: image shape {tuple(x.shape)} ends in neither (C, H, W) = "
                     f"{(C, H, W)} nor (H, W, C) = {(H, W, C)}")


def batch_obs(spec: PolicySpec, obs: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """{key: (B, S, *shape) array/tensor} -> {key: tensor on device}, images as (B, S, C, H, W) in their dtype.
    Extra keys (e.g. "t") are ignored; missing keys and wrong shapes raise ValueError naming the key."""
    out = {}
    for f in spec.obs:
        if f.key not in obs:
            raise ValueError(f"observation {f.key!r} missing (got keys {sorted(obs)})")
        x = torch.as_tensor(obs[f.key]).to(device, non_blocking=True)
        if f.kind != "low_dim":
            x = to_chw(f, x)
        if x.ndim != 2 + len(f.shape) or tuple(x.shape[2:]) != f.shape:
            raise ValueError(f"observation {f.key!r}: shape {tuple(x.shape)}, expected (B, steps, "
                             f"{', '.join(map(str, f.shape))})")
        out[f.key] = x
    return out


def single_obs(spec: PolicySpec, obs: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
    """A batch-1 numpy obs dict as given to act() -> ({key: (1, S, ...)}, is_single_step).

    Per key either one step (*shape, images also HWC), a history (S, *shape), or (1, S, *shape).
    All keys must use the same form.
    """
    forms, out = set(), {}
    for f in spec.obs:
        if f.key not in obs:
            raise ValueError(f"observation {f.key!r} missing (got keys {sorted(obs)})")
        x = np.asarray(obs[f.key])
        extra = x.ndim - len(f.shape)
        if extra not in (0, 1, 2) or (extra == 2 and x.shape[0] != 1):
            raise ValueError(f"observation {f.key!r}: shape {x.shape}; act() takes one step {f.shape}, a history "
                             f"(steps, {', '.join(map(str, f.shape))}) or (1, steps, ...)")
        forms.add(extra == 0)
        out[f.key] = x.reshape((1,) * (2 - extra) + x.shape)
    if len(forms) > 1:
        raise ValueError("act(): mix of single-step and history observations; give every key in the same form")
    return out, forms.pop()
