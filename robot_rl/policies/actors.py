"""Actor networks of the off-policy RL stages and what their policies share.

Both act on the critic's inputs (robot_rl.policies.critics.ChunkFeatures): the normalized observation
history flattened (B, n_obs * D) and action chunks in normalized units flattened (B, n_act * Da).

    ResidualActor   (obs, a_base) -> bound * tanh(f(obs, a_base)), last layer zero: starts as exactly 0
    GaussianActor   obs -> tanh-Gaussian over the normalized chunk (SAC), deterministic mode tanh(mean)

`LowDimHistory` keeps the raw observation history act() needs, and `load_actor_checkpoint` reads the actor
part of a policy checkpoint directory (robot_rl.policies.io.save_policy writes it).
"""

from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from robot_rl.core.checkpoint import WEIGHTS, check_shapes, load_checkpoint
from robot_rl.core.errors import CheckpointError, ConfigError
from robot_rl.core.spec import PolicySpec
from robot_rl.core.types import ActionChunk
from robot_rl.policies.critics import mlp
from robot_rl.policies.frozen_features import FrozenFeatures
from robot_rl.policies.normalizer import Normalizer
from robot_rl.policies.observation_tensors import single_obs

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class ResidualActor(nn.Module):
    """Bounded residual on a base action chunk: |output| <= bound elementwise, whatever the weights.

    The flat chunk (A = n_steps * Da, step-major) gets either one offset per action dimension, the same on
    every step of the chunk (per_step=False: Da outputs; the base keeps the chunk's shape and timing), or an
    independent value per element (per_step=True: A outputs). bound: (Da,) per action dimension, repeated
    over the chunk into the saved `bound` buffer (A,); 0 masks a dimension (one the demos never vary)."""

    def __init__(self, obs_dim: int, action_dim: int, bound: torch.Tensor, hidden=(256, 256),
                 layer_norm: bool = True, n_steps: int = 1, per_step: bool = False) -> None:
        super().__init__()
        if action_dim % n_steps:
            raise ConfigError(f"residual: flat chunk of {action_dim} elements is not {n_steps} steps")
        bound = torch.as_tensor(bound, dtype=torch.float32).reshape(-1)
        if bound.shape != (action_dim // n_steps,) or not bool(torch.isfinite(bound).all()) \
                or bool((bound < 0).any()) or not bool((bound > 0).any()):
            raise ConfigError(f"residual bound {bound.tolist()}: need {action_dim // n_steps} finite values >= 0, "
                              f"at least one > 0 (normalized action units)")
        self.n_steps, self.per_step = int(n_steps), bool(per_step)
        self.register_buffer("bound", bound.repeat(self.n_steps))
        self.net = mlp(obs_dim + action_dim, tuple(hidden), action_dim if per_step else action_dim // n_steps,
                       layer_norm)
        last = self.net[-1]
        nn.init.zeros_(last.weight)       # the initial policy IS the base
        nn.init.zeros_(last.bias)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs in the actor's parameterization (B, Da) or (B, A) -> per element of the flat chunk (B, A)."""
        return x if self.per_step else x.repeat(1, self.n_steps)

    def forward(self, obs: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """(B, O) features, (B, A) normalized base chunk -> (B, A) residual in normalized units."""
        return self.bound * torch.tanh(self.expand(self.net(torch.cat([obs, base], dim=-1))))

    def noise(self, like: torch.Tensor, fraction: float, clip: float | None = None) -> torch.Tensor:
        """Gaussian noise (B, A) with std `fraction` of each element's bound, shaped like the residual's
        parameterization (one draw per chunk offset); clip: at most this fraction of the bound."""
        n = like.shape[1] if self.per_step else like.shape[1] // self.n_steps
        eps = self.expand(torch.randn(like.shape[0], n, device=like.device, dtype=like.dtype)) * fraction
        if clip is not None:
            eps = eps.clamp(-clip, clip)
        return eps * self.bound

    def clamp(self, residual: torch.Tensor) -> torch.Tensor:
        """A residual plus noise back inside the bound."""
        return torch.maximum(torch.minimum(residual, self.bound), -self.bound)


class GaussianActor(nn.Module):
    """tanh-Gaussian policy over the normalized action chunk (SAC / RLPD)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden=(256, 256), layer_norm: bool = True) -> None:
        super().__init__()
        self.net = mlp(obs_dim, tuple(hidden), 2 * action_dim, layer_norm)

    def forward(self, obs: torch.Tensor, deterministic: bool = False,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, O) -> (actions (B, A) in (-1, 1), log-probs (B,)); deterministic gives tanh(mean) and the
        log-prob of that point."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1.0)
        std = log_std.exp()
        eps = torch.zeros_like(mean) if deterministic else torch.randn(
            mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + std * eps
        a = torch.tanh(u)
        # N(u; mean, std) with the tanh change of variables, log(1 - tanh(u)^2) in a stable form
        log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))).sum(-1)
        return a, log_prob


class LowDimHistory:
    """Raw low-dim observation history for act(): one step per call (padded by repeating the first step
    after reset(), as ChunkPolicy.act does) or a full history (n_obs, D) that replaces it. With `features`
    (robot_rl.policies.frozen_features.FrozenFeatures of an image policy) camera frames are encoded as they
    arrive (each frame once) and the history is the feature view."""

    def __init__(self, spec: PolicySpec, features: FrozenFeatures | None = None) -> None:
        if spec.images and features is None:
            raise ConfigError(f"RL actors read low-dim observations; spec has images {[f.key for f in spec.images]} "
                              f"and no frozen encoder features were given")
        self.spec, self.features = spec, features
        self._steps: deque[dict[str, np.ndarray]] = deque(maxlen=spec.n_obs_steps)

    def reset(self) -> None:
        self._steps.clear()

    def push(self, obs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """obs as given to act() -> {key: (1, n_obs, D) float32 tensor} (the feature view of an image policy)."""
        arrays, single = single_obs(self.spec, obs)
        if self.features is not None:
            arrays = self.features.arrays(arrays)[0]
        if single:
            step = {k: v[0, 0] for k, v in arrays.items()}
            if not self._steps:
                self._steps.extend([step] * (self.spec.n_obs_steps - 1))
            self._steps.append(step)
        else:
            S = next(iter(arrays.values())).shape[1]
            if S != self.spec.n_obs_steps:
                raise ValueError(f"act(): history of {S} steps, expected n_obs_steps={self.spec.n_obs_steps}")
            self._steps.clear()
            self._steps.extend({k: v[0, i] for k, v in arrays.items()} for i in range(S))
        return {f.key: torch.as_tensor(np.stack([s[f.key] for s in self._steps]), dtype=torch.float32)[None]
                for f in self.spec.obs}


def observation_time(obs: Mapping[str, Any]) -> float:
    """obs["t"] (last element; seconds on the host monotonic clock) or now."""
    return float(np.asarray(obs["t"], dtype=np.float64).reshape(-1)[-1]) if "t" in obs else time.monotonic()


def chunk_at(actions: np.ndarray, t_obs: float, spec: PolicySpec, **info) -> ActionChunk:
    """Executable raw actions (n_act, Da) with target times t_obs + k / rate_hz."""
    return ActionChunk(actions, t_obs + np.arange(len(actions)) / spec.rate_hz, info=info)


def load_actor_checkpoint(path: str | Path, kind: str):
    """-> (Checkpoint, PolicySpec, actor config dict, Normalizer); raises CheckpointError naming the file."""
    ckpt = load_checkpoint(path)
    config_file = Path(path) / "config.yaml"
    section = ckpt.config.get("policy")
    if not isinstance(section, dict) or section.get("type") != kind or not {"spec", "actor"} <= set(section):
        raise CheckpointError(f"{config_file}: expected a policy section with type {kind!r}, spec and actor")
    try:
        spec = PolicySpec.from_dict(section["spec"])
    except ConfigError as e:
        raise CheckpointError(f"{config_file}: {e}") from None
    normalizer = Normalizer.from_flat(spec, ckpt.normalizer, source=str(Path(path) / "normalizer.safetensors"))
    return ckpt, spec, dict(section["actor"]), normalizer


def load_actor_weights(actor: nn.Module, ckpt, path: str | Path) -> None:
    expected = {k: tuple(v.shape) for k, v in actor.state_dict().items()}
    check_shapes(expected, ckpt.weights, str(Path(path) / WEIGHTS))
    actor.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ckpt.weights.items()})
