"""Critics for the RL stages: an ensemble of Q heads over (observation, action chunk) and a state value.

Inputs are the policy's normalized observation history flattened (B, n_obs * D) and the normalized
action chunk flattened (B, n_act * Da); `ChunkFeatures` makes both from raw tensors with the base
policy's normalizer (an image policy's cameras enter as the frozen encoder's features, passed as they are:
robot_rl.policies.frozen_features), so every critic sees the same scale the policy was trained on. LayerNorm after
every hidden layer (RLPD) keeps ensembles calibrated under high update-to-data ratios.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from robot_rl.core.spec import PolicySpec
from robot_rl.policies.normalizer import Normalizer


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, layer_norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h)] + ([nn.LayerNorm(h)] if layer_norm else []) + [nn.Mish()]
        in_dim = h
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class ChunkFeatures(nn.Module):
    """Raw low-dim obs {key: (B, n_obs, D)} and raw action chunks (B, n_act, Da) -> flat normalized inputs."""

    def __init__(self, spec: PolicySpec, normalizer: Normalizer) -> None:
        super().__init__()
        if spec.images:
            raise ValueError(f"critics read low-dim observations; spec has images {[f.key for f in spec.images]} "
                             f"(give the feature view: robot_rl.policies.frozen_features.view_spec(policy))")
        self.spec, self.normalizer = spec, normalizer
        self.obs_dim = spec.n_obs_steps * sum(f.shape[0] for f in spec.obs)
        self.action_dim = spec.n_action_steps * spec.action_dim

    def obs(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for f in self.spec.obs:
            x = obs[f.key].float()
            if x.shape[1:] != (self.spec.n_obs_steps, f.shape[0]):
                raise ValueError(f"obs[{f.key!r}] shape {tuple(x.shape)}, expected (B, {self.spec.n_obs_steps}, "
                                 f"{f.shape[0]})")
            parts.append(self.normalizer.normalize(f.key, x).flatten(1))
        return torch.cat(parts, dim=1)

    def action(self, actions: torch.Tensor) -> torch.Tensor:
        """Raw (B, n_act, Da) -> normalized flat (B, n_act * Da)."""
        return self.normalizer.normalize(self.spec.action.key, actions.float()).flatten(1)


class QEnsemble(nn.Module):
    """n independent Q heads: (obs_flat (B, O), action_flat (B, A)) -> (n, B)."""

    def __init__(self, obs_dim: int, action_dim: int, n: int = 2, hidden=(256, 256), layer_norm: bool = True):
        super().__init__()
        self.heads = nn.ModuleList(mlp(obs_dim + action_dim, tuple(hidden), 1, layer_norm) for _ in range(n))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        return torch.stack([h(x).squeeze(-1) for h in self.heads])

    def subset_min(self, obs: torch.Tensor, action: torch.Tensor, k: int = 2,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """min over a random subset of k heads (RLPD/REDQ target): (B,)."""
        idx = torch.randperm(len(self.heads), generator=generator)[:k]
        x = torch.cat([obs, action], dim=-1)
        return torch.stack([self.heads[int(i)](x).squeeze(-1) for i in idx]).min(0).values


class ValueNet(nn.Module):
    """V(obs_flat) -> (B,)."""

    def __init__(self, obs_dim: int, hidden=(256, 256), layer_norm: bool = True):
        super().__init__()
        self.net = mlp(obs_dim, tuple(hidden), 1, layer_norm)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)
