"""ResidualPolicy: a frozen chunk policy (the base) plus a bounded learned residual on each executed chunk.

    a = a_base + bound * tanh(f(obs, a_base))      in normalized action units, per executed chunk

on the action dimensions `dims` (default all; the others stay exactly the base's), each bounded by
`scale` or by its own entry in `dim_scales`; f gives one offset per dimension for the whole chunk
(default) or one per step (per_step). a_base is the base's executable slice for the same observation
history and initial noise; the base is deterministic given that noise (DDIM with eta = 0), so the
whole policy is too. The residual's last layer starts at zero, so a fresh ResidualPolicy acts exactly
like its base, and |a - a_base| <= the dimension's bound (normalized units; 0 outside `dims`) holds
for any weights. With cameras, the residual and the base's condition read the base's frozen camera
features (robot_rl.policies.frozen_features), computed here from the raw frames, each frame once.
Checkpoint: the actor as a normal checkpoint directory (policy.type = residual) with the base checkpoint
inside it at <path>/base.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from robot_rl.core.errors import CheckpointError, ConfigError
from robot_rl.core.types import ActionChunk
from robot_rl.policies.actors import (LowDimHistory, ResidualActor, load_actor_checkpoint,
                                      load_actor_weights, observation_time)
from robot_rl.policies.base import ChunkPolicy
from robot_rl.policies.critics import ChunkFeatures
from robot_rl.policies.frozen_features import condition, frozen_features, view_spec



class ResidualPolicy(nn.Module):
    kind = "residual"

    def __init__(self, base: ChunkPolicy, scale: float = 0.1, hidden=(256, 256), layer_norm: bool = True,
                 dims: list[int] | None = None, per_step: bool = False,
                 dim_scales: Mapping[int, float] | None = None) -> None:
        """dims: the action dimensions the residual acts on (default all); the others stay the base's.
        per_step: a residual per step of the chunk instead of one offset per dimension for the whole chunk.
        dim_scales: {dimension: bound} overriding `scale` on those of `dims`."""
        super().__init__()
        if getattr(base.cfg, "eta", 0.0):   # the residual is learned on a base that is a function of its noise
            base.cfg = replace(base.cfg, eta=0.0)
        self.base = base.eval().requires_grad_(False)
        self.frozen = frozen_features(base)
        self.features = ChunkFeatures(view_spec(base), base.normalizer)
        Da = base.spec.action_dim
        dims = list(range(Da)) if dims is None else sorted(int(d) for d in dims)
        if any(not 0 <= d < Da for d in dims):
            raise ConfigError(f"residual dims={dims}: action dimensions are 0..{Da - 1}")
        dim_scales = {int(d): float(s) for d, s in (dim_scales or {}).items()}
        if any(not 0 <= d < Da for d in dim_scales):
            raise ConfigError(f"residual dim_scales={dim_scales}: action dimensions are 0..{Da - 1}")
        bound = torch.zeros(Da)
        for d in dims:
            bound[d] = dim_scales.get(d, scale)
        self.actor = ResidualActor(self.features.obs_dim, self.features.action_dim, bound, hidden, layer_norm,
                                   base.spec.n_action_steps, per_step)
        self.scale = float(scale)
        self.actor_cfg = {"scale": self.scale, "hidden": [int(h) for h in hidden], "layer_norm": bool(layer_norm),
                          "dims": dims, "per_step": bool(per_step),
                          "dim_scales": {str(d): s for d, s in sorted(dim_scales.items())}}
        self._history = LowDimHistory(base.spec, self.frozen)

    @property
    def spec(self):
        return self.base.spec

    @property
    def device(self) -> torch.device:
        return self.base.device

    def train(self, mode: bool = True) -> "ResidualPolicy":
        super().train(mode)
        self.base.eval()            # the base stays frozen in inference mode
        return self

    # ---- batched pieces (training) ---------------------------------------------------------------
    @torch.no_grad()
    def base_actions(self, obs: Mapping[str, torch.Tensor], noise: torch.Tensor | None = None) -> torch.Tensor:
        """Obs {key: (B, n_obs, D)} in the view (raw low-dim, camera features) + initial noise (B, horizon, Da)
        -> the base's executable raw actions (B, n_act, Da)."""
        start = self.spec.n_obs_steps - 1
        cond = condition(self.base, self.frozen, obs)
        if noise is not None:
            noise = self.base.check_noise(noise, cond.shape[0])
        actions = self.base.unnormalize_action(self.base.sample_actions(cond, noise))
        return actions[:, start:start + self.spec.n_action_steps]

    def chunk(self, obs_flat: torch.Tensor, base_flat: torch.Tensor) -> torch.Tensor:
        """Normalized flat features (B, O) and base chunk (B, A) -> the policy's normalized chunk (B, A)."""
        return base_flat + self.actor(obs_flat, base_flat)

    # ---- the policy interface --------------------------------------------------------------------
    def reset(self) -> None:
        self.base.reset()
        self._history.reset()

    @torch.no_grad()
    def act(self, obs: Mapping[str, Any], init_noise: torch.Tensor | None = None) -> ActionChunk:
        """Like ChunkPolicy.act: one step or a full history (+ optional obs["t"]) -> executable actions with
        absolute target times; info["base_action"] holds the base's chunk. The base acts on the same history
        (camera frames encoded once, into the feature view both read)."""
        t_start = time.monotonic()
        t_obs = observation_time(obs)
        history = {k: v.to(self.device) for k, v in self._history.push(obs).items()}
        noise = None if init_noise is None else torch.as_tensor(init_noise).reshape(
            1, self.spec.horizon, self.spec.action_dim)
        was_training = self.actor.training
        self.actor.eval()
        try:
            base_raw = self.base_actions(history, noise)
            a = self.chunk(self.features.obs(history), self.features.action(base_raw))
        finally:
            self.actor.train(was_training)
        raw = self.base.unnormalize_action(a.view(1, *base_raw.shape[1:]))[0].cpu().numpy()
        return ActionChunk(raw, t_obs + np.arange(len(raw)) / self.spec.rate_hz,
                           info={"t_obs": t_obs, "inference_s": time.monotonic() - t_start,
                                 "base_action": base_raw[0].cpu().numpy()})

    # ---- checkpoints -----------------------------------------------------------------------------
    def checkpoint_parts(self):
        """What robot_rl.policies.io.save_policy writes: actor config, actor weights, base normalizer, base."""
        return {"actor": self.actor_cfg}, self.actor, self.base.normalizer.flat(), self.base

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> "ResidualPolicy":
        from robot_rl.policies.io import BASE_DIR, load_policy

        ckpt, spec, actor_cfg, _ = load_actor_checkpoint(path, cls.kind)
        if not (Path(path) / BASE_DIR).is_dir():
            raise CheckpointError(f"{Path(path) / BASE_DIR}: missing; a residual checkpoint holds its base there")
        base = load_policy(Path(path) / BASE_DIR, device)
        if base.spec.to_dict() != spec.to_dict():
            raise CheckpointError(f"{Path(path) / 'config.yaml'}: policy.spec differs from the base's spec in "
                                  f"{Path(path) / BASE_DIR}")
        try:
            policy = cls(base, float(actor_cfg["scale"]), tuple(actor_cfg["hidden"]), bool(actor_cfg["layer_norm"]),
                         actor_cfg["dims"], bool(actor_cfg["per_step"]), actor_cfg.get("dim_scales"))
        except KeyError as e:
            raise CheckpointError(f"{Path(path) / 'config.yaml'}: policy.actor lacks {e}") from None
        load_actor_weights(policy.actor, ckpt, path)
        return policy.to(base.device).eval()
