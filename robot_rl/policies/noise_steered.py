"""A frozen diffusion base steered through its initial noise (DSRL): the base stays a black box that is
deterministic given the noise (DDIM, eta 0); a small actor picks the noise w from the observation history.

    w     = max_noise * tanh(u),  u ~ N(mu(s), sigma(s)^2)   (NoiseActor)
    chunk = base(s, w)

act() samples w, as the base samples its own noise: a Gaussian in 112 dimensions puts its mass far from
its mode, and a diffusion policy run from the atypical w = 0 gives an averaged chunk (measured on lift:
the base from w = 0 succeeds less often than from N(0, I)). deterministic=True takes the mode instead.
With cameras the actor and the base's condition read the base's frozen camera features (the feature view,
robot_rl.policies.frozen_features), each frame encoded once as it arrives.

Checkpoint: a robot_rl checkpoint directory whose model.safetensors holds the actor, config.yaml
{"policy": {"type": "noise_steered", "spec", "actor"}}, and the base as a normal checkpoint in <path>/base.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from robot_rl.core.checkpoint import WEIGHTS, check_shapes, load_checkpoint
from robot_rl.core.errors import CheckpointError
from robot_rl.core.spec import PolicySpec
from robot_rl.core.types import ActionChunk
from robot_rl.policies.actors import LOG_STD_MAX, LOG_STD_MIN, GaussianActor, LowDimHistory, observation_time
from robot_rl.policies.critics import ChunkFeatures
from robot_rl.policies.frozen_features import condition, frozen_features, view_spec

class NoiseActor(nn.Module):
    """A tanh-Gaussian actor (robot_rl.policies.actors.GaussianActor) over the base's initial noise, scaled
    to [-max_noise, max_noise]: obs_flat (B, O) -> w (B, horizon, Da). The mean starts at zero (w = 0: the
    base's DDIM from zero noise) and the pre-squash std at 1, so the initial exploration is close to the
    base's own standard-normal sampling."""

    def __init__(self, obs_dim: int, noise_shape: tuple[int, int], hidden=(256, 256), max_noise: float = 1.5):
        super().__init__()
        self.noise_shape, self.max_noise = tuple(noise_shape), float(max_noise)
        self.noise_dim = int(np.prod(self.noise_shape))
        self.hidden = tuple(int(h) for h in hidden)
        self.gaussian = GaussianActor(obs_dim, self.noise_dim, self.hidden)
        last = self.gaussian.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        with torch.no_grad():   # log_std = LOG_STD_MIN + (LOG_STD_MAX - LOG_STD_MIN) (tanh(b) + 1) / 2 = 0
            last.bias[self.noise_dim:] = math.atanh(2 * -LOG_STD_MIN / (LOG_STD_MAX - LOG_STD_MIN) - 1)

    def forward(self, obs_flat: torch.Tensor, deterministic: bool = False,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (w (B, horizon, Da), log-density of w (B,)); deterministic: the mode max_noise * tanh(mean)."""
        a, log_prob = self.gaussian(obs_flat, deterministic, generator)
        w = (self.max_noise * a).reshape(-1, *self.noise_shape)
        return w, log_prob - self.noise_dim * math.log(self.max_noise)


class NoiseSteeredPolicy(nn.Module):
    """The policy interface (reset, act -> ActionChunk, predict_action, spec, kind) over base + NoiseActor.
    deterministic=True takes the actor's mode instead of sampling the noise from its distribution."""

    kind = "noise_steered"

    def __init__(self, base, actor: NoiseActor, deterministic: bool = False) -> None:
        super().__init__()
        if actor.noise_shape != (base.spec.horizon, base.spec.action_dim):
            raise ValueError(f"noise actor shape {actor.noise_shape} does not match the base's (horizon, action_dim) "
                             f"= {(base.spec.horizon, base.spec.action_dim)}")
        if base.cfg.eta != 0.0:     # DSRL needs the base deterministic given its noise
            base.cfg = replace(base.cfg, eta=0.0)
        self.base, self.actor, self.deterministic = base, actor, deterministic
        self.spec: PolicySpec = base.spec
        self.frozen = frozen_features(base)
        self.features = ChunkFeatures(view_spec(base), base.normalizer)
        self._history = LowDimHistory(self.spec, self.frozen)

    @property
    def device(self) -> torch.device:
        return self.base.device

    def view(self, obs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Raw obs {key: (B, n_obs, ...)} -> the view the actor reads (camera features, raw low-dim)."""
        if self.frozen is not None:
            return self.frozen.obs(obs)
        return {f.key: torch.as_tensor(obs[f.key], device=self.device) for f in self.spec.obs}

    def noise(self, obs: Mapping[str, Any], deterministic: bool | None = None,
              generator: torch.Generator | None = None, in_view: bool = False) -> torch.Tensor:
        """Raw obs {key: (B, n_obs, ...)} (or the view, in_view=True) -> initial noise (B, horizon, Da) from the
        actor (default: the policy's own deterministic setting; sampled noise comes from `generator` or
        torch's global RNG)."""
        view = obs if in_view else self.view(obs)
        obs_flat = self.features.obs({k: torch.as_tensor(view[k], device=self.device) for k in
                                      (f.key for f in self.spec.obs)})
        deterministic = self.deterministic if deterministic is None else deterministic
        return self.actor(obs_flat, deterministic=deterministic, generator=generator)[0]

    def chunks(self, view: Mapping[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        """The base's normalized chunks (B, horizon, Da) from the view and initial noise (DDIM, eta 0)."""
        return self.base.sample_actions(condition(self.base, self.frozen, view), noise)

    def reset(self) -> None:
        self.base.reset()
        self._history.reset()

    @torch.no_grad()
    def act(self, obs: Mapping[str, Any]) -> ActionChunk:
        """Batch-1 numpy obs (one step or a full history, as DiffusionPolicy.act) -> the base's executable
        actions from the actor's noise, with absolute target times."""
        t_start = time.monotonic()
        t_obs = observation_time(obs)
        history = {k: v.to(self.device) for k, v in self._history.push(obs).items()}
        actions = self.base.unnormalize_action(self.chunks(history, self.noise(history, in_view=True)))
        start = self.spec.n_obs_steps - 1
        chunk = actions[0, start:start + self.spec.n_action_steps].float().cpu().numpy()
        return ActionChunk(chunk, t_obs + np.arange(len(chunk)) / self.spec.rate_hz,
                           info={"t_obs": t_obs, "inference_s": time.monotonic() - t_start})

    @torch.no_grad()
    def predict_action(self, obs: Mapping[str, Any], init_noise: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Batched raw obs {key: (B, n_obs, D)} -> (B, horizon, Da) raw actions (init_noise is the actor's)."""
        view = self.view(obs)
        return self.base.unnormalize_action(self.chunks(view, self.noise(view, in_view=True)))

    # ---- checkpoints ------------------------------------------------------------------------------
    def checkpoint_parts(self):
        """What robot_rl.policies.io.save_policy writes: actor config, actor weights, no normalizer, base."""
        section = {"actor": {"hidden": list(self.actor.hidden), "max_noise": self.actor.max_noise},
                   "deterministic": self.deterministic}
        return section, self.actor, None, self.base

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> "NoiseSteeredPolicy":
        from robot_rl.policies.io import BASE_DIR, load_policy

        ckpt = load_checkpoint(path)
        section = ckpt.config["policy"]
        where = Path(path) / "config.yaml"
        if not isinstance(section.get("actor"), dict) or "spec" not in section:
            raise CheckpointError(f"{where}: noise_steered policy section needs 'spec' and 'actor'")
        base = load_policy(Path(path) / BASE_DIR, device)
        spec = PolicySpec.from_dict(section["spec"])
        if spec != base.spec:
            raise CheckpointError(f"{where}: spec differs from the base's in {Path(path) / 'base'}")
        features = ChunkFeatures(view_spec(base), base.normalizer)
        try:
            actor = NoiseActor(features.obs_dim, (spec.horizon, spec.action_dim), section["actor"]["hidden"],
                               section["actor"]["max_noise"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{where}: bad policy.actor section ({e})") from None
        check_shapes({k: tuple(v.shape) for k, v in actor.state_dict().items()}, ckpt.weights,
                     str(Path(path) / WEIGHTS))
        actor.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ckpt.weights.items()})
        return cls(base, actor.to(base.device), bool(section.get("deterministic", False))).eval()
