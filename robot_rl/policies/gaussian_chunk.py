"""GaussianChunkPolicy: a tanh-Gaussian actor over normalized action chunks, acting with its mean.

The policy an RLPD-style learner trained from scratch exports (robot_rl.learning.rl.rlpd): one MLP
forward per chunk on the normalized observation history; deterministic (tanh of the mean).
Checkpoint: policy.type = gaussian with the actor's weights and the spec's normalizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from robot_rl.core.spec import PolicySpec
from robot_rl.core.types import ActionChunk
from robot_rl.policies.actors import (GaussianActor, LowDimHistory, chunk_at, load_actor_checkpoint,
                                      load_actor_weights, observation_time)
from robot_rl.policies.critics import ChunkFeatures
from robot_rl.policies.device import resolve_device
from robot_rl.policies.normalizer import Normalizer


class GaussianChunkPolicy(nn.Module):
    kind = "gaussian"

    def __init__(self, spec: PolicySpec, normalizer: Normalizer, hidden=(256, 256), layer_norm: bool = True,
                 actor: GaussianActor | None = None) -> None:
        super().__init__()
        self.spec, self.normalizer = spec, normalizer
        self.features = ChunkFeatures(spec, normalizer)
        self.actor = actor if actor is not None else GaussianActor(
            self.features.obs_dim, self.features.action_dim, hidden, layer_norm)
        self.actor_cfg = {"hidden": [int(h) for h in hidden], "layer_norm": bool(layer_norm)}
        self._history = LowDimHistory(spec)

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

    def checkpoint_parts(self):
        """What robot_rl.policies.io.save_policy writes: actor config, actor weights, normalizer, no base."""
        return {"actor": self.actor_cfg}, self.actor, self.normalizer.flat(), None

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> "GaussianChunkPolicy":
        ckpt, spec, actor_cfg, normalizer = load_actor_checkpoint(path, cls.kind)
        policy = cls(spec, normalizer, tuple(actor_cfg.get("hidden", (256, 256))),
                     bool(actor_cfg.get("layer_norm", True)))
        load_actor_weights(policy.actor, ckpt, path)
        return policy.to(resolve_device(device)).eval()
