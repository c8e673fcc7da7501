"""GaussianChunkPolicy: a tanh-Gaussian actor over normalized action chunks, acting with its mean.

The policy an RLPD-style learner trained from scratch exports (robot_rl.learning.rl.rlpd): one MLP
forward per chunk on the normalized observation history; deterministic (tanh of the mean).
Checkpoint: policy.type = gaussian with the actor's weights and the spec's normalizer. With cameras the
actor reads the frozen camera features of the policy whose encoder it was trained on (`encoder`,
robot_rl.policies.frozen_features), saved beside it in <path>/base, so the checkpoint acts on raw frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from robot_rl.core.errors import CheckpointError, ConfigError
from robot_rl.core.spec import PolicySpec
from robot_rl.core.types import ActionChunk
from robot_rl.policies.actors import (GaussianActor, LowDimHistory, chunk_at, load_actor_checkpoint,
                                      load_actor_weights, observation_time)
from robot_rl.policies.critics import ChunkFeatures
from robot_rl.policies.device import resolve_device
from robot_rl.policies.frozen_features import frozen_features
from robot_rl.policies.normalizer import Normalizer


class GaussianChunkPolicy(nn.Module):
    kind = "gaussian"

    def __init__(self, spec: PolicySpec, normalizer: Normalizer, hidden=(256, 256), layer_norm: bool = True,
                 actor: GaussianActor | None = None, encoder=None) -> None:
        """encoder: with cameras in the spec, the policy (same spec) whose frozen camera encoders give the
        actor its image features; kept as this policy's base (never trained)."""
        super().__init__()
        if spec.images and (encoder is None or encoder.spec.to_dict() != spec.to_dict()):
            raise ConfigError(f"gaussian policy on cameras {[f.key for f in spec.images]}: needs the policy with "
                              f"the same spec whose frozen encoder makes the image features")
        self.spec, self.normalizer = spec, normalizer
        self.feature_base = encoder.eval().requires_grad_(False) if spec.images else None
        self.frozen = frozen_features(self.feature_base) if self.feature_base is not None else None
        self.features = ChunkFeatures(self.frozen.view if self.frozen else spec, normalizer)
        self.actor = actor if actor is not None else GaussianActor(
            self.features.obs_dim, self.features.action_dim, hidden, layer_norm)
        self.actor_cfg = {"hidden": [int(h) for h in hidden], "layer_norm": bool(layer_norm)}
        self._history = LowDimHistory(spec, self.frozen)

    @property
    def device(self) -> torch.device:
        return next(self.actor.parameters()).device

    def reset(self) -> None:
        self._history.reset()

    @torch.no_grad()
    def act(self, obs: Mapping[str, Any]) -> ActionChunk:
        """One step or a full history (+ optional obs["t"]) -> executable raw actions with target times."""
        t_obs = observation_time(obs)
        history = {k: v.to(self.device) for k, v in self._history.push(obs).items()}
        a, _ = self.actor(self.features.obs(history), deterministic=True)
        raw = self.normalizer.unnormalize(self.spec.action.key, a.view(1, self.spec.n_action_steps, -1))
        return chunk_at(raw[0].cpu().numpy(), t_obs, self.spec)

    def train(self, mode: bool = True) -> "GaussianChunkPolicy":
        super().train(mode)
        if self.feature_base is not None:
            self.feature_base.eval()         # frozen: center crops, no augmentation
        return self

    def checkpoint_parts(self):
        """What robot_rl.policies.io.save_policy writes: actor config, actor weights, normalizer, and the
        encoder's policy as the base (None without cameras)."""
        return {"actor": self.actor_cfg}, self.actor, self.normalizer.flat(), self.feature_base

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> "GaussianChunkPolicy":
        from robot_rl.policies.io import BASE_DIR, load_policy

        ckpt, spec, actor_cfg, normalizer = load_actor_checkpoint(path, cls.kind)
        encoder = None
        if spec.images:
            if not (Path(path) / BASE_DIR).is_dir():
                raise CheckpointError(f"{Path(path) / BASE_DIR}: missing; a gaussian policy on cameras holds the "
                                      f"policy whose encoder makes its image features there")
            encoder = load_policy(Path(path) / BASE_DIR, device)
            if encoder.spec.to_dict() != spec.to_dict():
                raise CheckpointError(f"{Path(path) / 'config.yaml'}: policy.spec differs from the encoder's in "
                                      f"{Path(path) / BASE_DIR}")
        policy = cls(spec, normalizer, tuple(actor_cfg.get("hidden", (256, 256))),
                     bool(actor_cfg.get("layer_norm", True)), encoder=encoder)
        load_actor_weights(policy.actor, ckpt, path)
        return policy.to(resolve_device(device)).eval()
