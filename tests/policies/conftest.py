"""Tiny specs and models so the whole folder runs in seconds on 2 CPU cores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.policies import PolicyConfig

TINY = dict(down_dims=(16, 32), kernel_size=3, n_groups=4, step_embed_dim=16, mlp_hidden_dim=32,
            mlp_num_blocks=2, image_width=8, image_blocks=(1, 1, 1, 1), num_keypoints=4, state_dims=(16,))


def make_spec(n_cameras: int = 0, image_hw: int = 24, horizon: int = 8, n_obs: int = 2, n_act: int = 4,
              action_dim: int = 3, rate_hz: float = 10.0) -> PolicySpec:
    cams = tuple(FeatureSpec(f"cam{i}", (3, image_hw, image_hw), "rgb", normalize="image") for i in range(n_cameras))
    return PolicySpec(obs=(*cams, FeatureSpec("proprio", (5,))), action=FeatureSpec("action", (action_dim,)),
                      n_obs_steps=n_obs, horizon=horizon, n_action_steps=n_act, rate_hz=rate_hz)


def tiny_config(**overrides) -> PolicyConfig:
    return PolicyConfig(**{**TINY, **overrides})


def random_obs(spec: PolicySpec, batch: int = 2, steps: int | None = None, hwc: bool = True, seed: int = 0) -> dict:
    """Raw batched observations {key: (B, S, ...)}; images uint8 (HWC by default, as stored)."""
    g = np.random.default_rng(seed)
    steps = steps or spec.n_obs_steps
    out = {}
    for f in spec.obs:
        if f.kind == "low_dim":
            out[f.key] = torch.as_tensor(g.normal(size=(batch, steps, *f.shape)), dtype=torch.float32)
        else:
            C, H, W = f.shape
            shape = (batch, steps, H, W, C) if hwc else (batch, steps, C, H, W)
            out[f.key] = torch.as_tensor(g.integers(0, 256, size=shape, dtype=np.uint8))
    return out


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Tiny models run fastest on one thread (and do not oversubscribe a busy 2-core CI box)."""
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
