"""DiffusionPolicy: DDPM-trained denoiser over action chunks, sampled with DDIM (settable eta and steps)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

from robot_rl.core.spec import PolicySpec
from robot_rl.policies.base import ChunkPolicy
from robot_rl.policies.model_config import PolicyConfig
from robot_rl.policies.diffusion import NoiseSchedule, SampleResult, chain_log_probs, sample_chain
from robot_rl.policies.normalizer import Normalizer


class DiffusionPolicy(ChunkPolicy):
    """Conditional diffusion over normalized action chunks (B, horizon, Da) given the observation condition."""

    kind = "diffusion"

    def __init__(self, spec: PolicySpec, cfg: PolicyConfig | None = None, normalizer: Normalizer | None = None):
        super().__init__(spec, cfg, normalizer)
        self.schedule = NoiseSchedule(self.cfg.num_train_timesteps, self.cfg.beta_schedule, self.cfg.prediction_type,
                                      self.cfg.clip_sample)

    def compute_loss(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """DDPM loss: MSE between the denoiser output and the noise (or clean chunk) at a random timestep.

        batch: obs keys -> (B, S >= n_obs, *shape) (images uint8 or float in [0, 1], HWC or CHW);
        spec.action.key -> (B, horizon, Da) raw actions.
        """
        key = self.spec.action.key
        if key not in batch:
            raise ValueError(f"batch has no action key {key!r} (keys {sorted(batch)})")
        actions = torch.as_tensor(batch[key]).to(self.device)
        B = actions.shape[0]
        if tuple(actions.shape) != (B, self.spec.horizon, self.spec.action_dim):
            raise ValueError(f"batch[{key!r}] shape {tuple(actions.shape)}, expected (B, horizon={self.spec.horizon}, "
                             f"action_dim={self.spec.action_dim})")
        cond = self.encode(batch)
        x0 = self.normalize_action(actions)
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.schedule.num_train_timesteps, (B,), device=self.device)
        pred = self.denoiser(self.schedule.add_noise(x0, noise, t), t, cond)
        return F.mse_loss(pred, self.schedule.target(x0, noise))

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The training loss, so that DistributedDataParallel(policy)(batch) synchronizes gradients."""
        return self.compute_loss(batch)

    def sample(self, global_cond: torch.Tensor, init_noise: torch.Tensor | None = None,
               num_inference_steps: int | None = None, eta: float = 0.0, min_std: float = 0.0,
               generator: torch.Generator | None = None, return_chain: bool = False,
               return_log_probs: bool = False) -> SampleResult:
        """Noise-conditioned sampling: condition (B, C) + initial noise (B, horizon, Da) -> SampleResult with
        normalized actions, optionally the chain x_K..x_0 (B, K+1, horizon, Da) and per-step log-probs (B, K).

        eta=0, min_std=0: deterministic given init_noise. num_inference_steps=num_train_timesteps with eta=1
        is DDPM ancestral sampling. Differentiable (no no_grad here). A generator must live on the policy's device.
        """
        B = global_cond.shape[0]
        noise = self.make_noise(B, generator) if init_noise is None else self.check_noise(init_noise, B)
        steps = num_inference_steps or self.cfg.num_inference_steps
        return sample_chain(self.denoiser, self.schedule, noise, global_cond, steps, eta, min_std, generator,
                            return_chain, return_log_probs)

    def chain_log_probs(self, global_cond: torch.Tensor, chain: torch.Tensor, num_inference_steps: int,
                        eta: float, min_std: float, steps: slice | None = None) -> torch.Tensor:
        """(B, K') log-probs of the selected steps (default all) of a stored chain (B, K+1, horizon, Da)
        under the current weights (differentiable)."""
        return chain_log_probs(self.denoiser, self.schedule, chain, global_cond, num_inference_steps, eta, min_std,
                               steps)

    def sample_actions(self, global_cond: torch.Tensor, init_noise: torch.Tensor | None = None,
                       generator: torch.Generator | None = None, num_inference_steps: int | None = None,
                       eta: float | None = None) -> torch.Tensor:
        eta = self.cfg.eta if eta is None else eta
        return self.sample(global_cond, init_noise, num_inference_steps, eta, 0.0, generator).actions

    @torch.no_grad()
    def predict_action(self, obs: Mapping[str, Any], init_noise: torch.Tensor | None = None,
                       num_inference_steps: int | None = None, eta: float = 0.0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Batched raw obs {key: (B, n_obs, ...)} -> (B, horizon, Da) raw actions via a DDIM chain
        (num_inference_steps defaults to the config's; eta=0 is deterministic given init_noise)."""
        cond = self.encode(obs)
        return self.unnormalize_action(self.sample_actions(cond, init_noise, generator, num_inference_steps, eta))
