"""The policy interface shared by the diffusion teacher and the one-step student.

    reset()                       forget the observation history
    act(obs) -> ActionChunk       batch-1 numpy obs -> executable actions with absolute target times
    predict_action(obs, ...)      batched tensors -> (B, horizon, Da) actions in raw units
    encode(obs) -> global_cond    the observation condition the denoiser sees
    sample_actions(cond, noise)   condition + initial noise -> normalized actions (subclasses)

Deterministic given the initial noise. Layer 3: no data files, ROS or hardware here.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from robot_rl.core.errors import ConfigError
from robot_rl.core.spec import PolicySpec
from robot_rl.core.types import ActionChunk
from robot_rl.policies.model_config import PolicyConfig
from robot_rl.policies.denoisers import ConditionalUnet1D, ResidualMLPDenoiser
from robot_rl.policies.encoders import ObsEncoder
from robot_rl.policies.normalizer import Normalizer
from robot_rl.policies.observation_tensors import batch_obs, single_obs


def build_denoiser(spec: PolicySpec, cfg: PolicyConfig, cond_dim: int) -> nn.Module:
    if cfg.denoiser == "unet":
        factor = 2 ** (len(cfg.down_dims) - 1)
        if spec.horizon % factor:
            raise ConfigError(f"spec.horizon={spec.horizon} must be divisible by {factor} for the U-Net with "
                              f"down_dims={list(cfg.down_dims)}; change horizon or use fewer levels")
        return ConditionalUnet1D(spec.action_dim, cond_dim, cfg.down_dims, cfg.kernel_size, cfg.n_groups,
                                 cfg.step_embed_dim)
    return ResidualMLPDenoiser(spec.action_dim, spec.horizon, cond_dim, cfg.mlp_hidden_dim, cfg.mlp_num_blocks,
                               cfg.step_embed_dim)


class ChunkPolicy(nn.Module):
    """Observation encoder + denoiser + normalizer for a PolicySpec. Subclasses define sample_actions."""

    kind = "base"

    def __init__(self, spec: PolicySpec, cfg: PolicyConfig | None = None, normalizer: Normalizer | None = None):
        super().__init__()
        if spec.n_action_steps > spec.max_action_steps:
            raise ConfigError(f"spec: n_obs_steps - 1 + n_action_steps = {spec.n_obs_steps - 1 + spec.n_action_steps} "
                              f"exceeds horizon={spec.horizon}; the executable actions must lie inside the chunk")
        self.spec = spec
        self.cfg = cfg or PolicyConfig()
        self.normalizer = normalizer if normalizer is not None else Normalizer(spec)
        self.encoder = ObsEncoder(spec, self.cfg)
        self.denoiser = build_denoiser(spec, self.cfg, self.encoder.out_dim)
        self._features: deque[torch.Tensor] = deque(maxlen=spec.n_obs_steps)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- observations and actions ---------------------------------------------------------------
    def encode(self, obs: Mapping[str, Any]) -> torch.Tensor:
        """{key: (B, S, *shape)} raw obs, S >= n_obs_steps (the first n_obs_steps are used, as in the windowed
        training batches) -> global condition (B, n_obs_steps * step_dim)."""
        x = batch_obs(self.spec, obs, self.device)
        S = next(iter(x.values())).shape[1]
        if S < self.spec.n_obs_steps:
            raise ValueError(f"observations have {S} steps, the policy needs n_obs_steps={self.spec.n_obs_steps}")
        x = {k: self.normalizer.normalize(k, v[:, :self.spec.n_obs_steps]) for k, v in x.items()}
        return self.encoder(x)

    def normalize_action(self, actions: torch.Tensor) -> torch.Tensor:
        return self.normalizer.normalize(self.spec.action.key, actions)

    def unnormalize_action(self, actions: torch.Tensor) -> torch.Tensor:
        return self.normalizer.unnormalize(self.spec.action.key, actions)

    def make_noise(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard-normal initial noise (batch, horizon, action_dim) on the policy's device."""
        return torch.randn((batch, self.spec.horizon, self.spec.action_dim), generator=generator, device=self.device)

    def check_noise(self, noise: torch.Tensor, batch: int) -> torch.Tensor:
        expected = (batch, self.spec.horizon, self.spec.action_dim)
        noise = torch.as_tensor(noise)
        if tuple(noise.shape) != expected:
            raise ValueError(f"init_noise shape {tuple(noise.shape)}, expected {expected} (batch, horizon, action_dim)")
        return noise.to(self.device, torch.float32)

    def sample_actions(self, global_cond: torch.Tensor, init_noise: torch.Tensor | None = None,
                       generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
        """(B, C) condition -> (B, horizon, Da) normalized actions."""
        raise NotImplementedError

    @torch.no_grad()
    def predict_action(self, obs: Mapping[str, Any], init_noise: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Batched raw obs {key: (B, n_obs, ...)} -> (B, horizon, Da) actions in raw (unnormalized) units."""
        return self.unnormalize_action(self.sample_actions(self.encode(obs), init_noise, **kwargs))

    # ---- the runtime interface ------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the observation history (call at the start of every episode)."""
        self._features.clear()

    @torch.no_grad()
    def act(self, obs: Mapping[str, Any], init_noise: torch.Tensor | None = None,
            n_actions: int | None = None) -> ActionChunk:
        """Batch-1 numpy obs -> the executable actions with absolute target times.

        obs[key]: one step (*shape; images HWC uint8 or CHW) appended to an internal history (padded by
        repeating the first step after reset(); past steps' features are cached), or a full history
        (n_obs, *shape). obs["t"] (optional): observation time in seconds on the host monotonic clock (last
        element if an array); defaults to now. Returns actions[n_obs-1 : n_obs-1+n] at times t_obs + k / rate_hz,
        k = 0..n-1, n = n_actions (at most spec.max_action_steps; the runtime asks for actions to stand in while
        it computes the next chunk) or n_action_steps.
        """
        t_start = time.monotonic()
        t_obs = float(np.asarray(obs["t"], dtype=np.float64).reshape(-1)[-1]) if "t" in obs else t_start
        arrays, single = single_obs(self.spec, obs)
        was_training = self.training
        self.eval()
        try:
            x = batch_obs(self.spec, arrays, self.device)
            feats = self.encoder.encode_steps({k: self.normalizer.normalize(k, v) for k, v in x.items()})
            if single:
                if not self._features:
                    self._features.extend([feats] * (self.spec.n_obs_steps - 1))
                self._features.append(feats)
            else:
                if feats.shape[1] != self.spec.n_obs_steps:
                    raise ValueError(f"act(): history of {feats.shape[1]} steps, expected n_obs_steps="
                                     f"{self.spec.n_obs_steps}")
                self._features.clear()
                self._features.extend(feats.split(1, dim=1))
            cond = torch.cat(list(self._features), dim=1).flatten(1)
            noise = None if init_noise is None else torch.as_tensor(init_noise).reshape(
                1, self.spec.horizon, self.spec.action_dim)
            actions = self.unnormalize_action(self.sample_actions(cond, noise))
        finally:
            self.train(was_training)
        start = self.spec.n_obs_steps - 1
        n = self.spec.n_action_steps if n_actions is None else min(int(n_actions), self.spec.max_action_steps)
        chunk = actions[0, start:start + n].float().cpu().numpy()
        t = t_obs + np.arange(len(chunk)) / self.spec.rate_hz
        return ActionChunk(chunk, t, info={"t_obs": t_obs, "inference_s": time.monotonic() - t_start})
