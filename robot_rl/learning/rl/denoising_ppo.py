"""The clipped PPO surrogate over the denoising chain of a DiffusionPolicy (RL-100, DPPO).

Every DDIM step x_t -> x_{t_prev} of a stochastic chain (eta > 0, std clipped below at min_std) is a
Gaussian policy step, so the chain's per-step log-probs are exact and differentiable. The surrogate of
denoising step k is the usual clipped PPO objective with the chunk's advantage A:

    r_k = exp(log pi_new(x_{k+1} | x_k, s) - log pi_old(x_{k+1} | x_k, s))
    L_k = -mean_B min(r_k A, clip(r_k, 1 - eps, 1 + eps) A)

`DenoisingPPO.update` takes one optimizer step per denoising step (RL-100), in chain order.
Shared by the offline stage (old policy frozen between OPE-gated advances) and online PPO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from robot_rl.core.errors import ConfigError
from robot_rl.policies.diffusion import SampleResult

LOG_PROB_REDUCE = ("sum", "mean")


@dataclass
class ChainConfig:
    """The stochastic DDIM chain RL acts and learns through (RL-100: K=10, eta=1, min std 0.0067).
    log_prob_reduce: 'sum' is the exact log-density of a step over all (horizon x Da) dimensions;
    'mean' divides it by their number (DPPO), which keeps ratios near 1 when the last step's std is tiny."""

    num_steps: int                    # no defaults here: ppo.PPOConfig and offline.OfflineConfig hold them
    eta: float
    min_std: float
    log_prob_reduce: str

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ConfigError(f"chain.num_steps={self.num_steps}: must be >= 1")
        if self.eta < 0:
            raise ConfigError(f"chain.eta={self.eta}: must be >= 0")
        if self.min_std <= 0:
            raise ConfigError(f"chain.min_std={self.min_std}: must be > 0 (per-step log-probs need a stochastic step)")
        if self.log_prob_reduce not in LOG_PROB_REDUCE:
            raise ConfigError(f"chain.log_prob_reduce={self.log_prob_reduce!r}: expected one of {LOG_PROB_REDUCE}")


@torch.no_grad()
def sample_stochastic_chain(policy, cond: torch.Tensor, chain: ChainConfig, generator: torch.Generator | None = None,
                 init_noise: torch.Tensor | None = None) -> SampleResult:
    """Act through the stochastic chain: normalized actions (B, horizon, Da), the chain (B, K+1, horizon, Da)
    and the per-step log-probs (B, K) (summed over dimensions) under the policy's current weights."""
    return policy.sample(cond, init_noise, chain.num_steps, chain.eta, chain.min_std, generator,
                         return_chain=True, return_log_probs=True)


def executed_actions(policy, normalized: torch.Tensor) -> torch.Tensor:
    """Normalized predicted chunks (B, horizon, Da) -> the raw executed actions (B, n_action_steps, Da)."""
    start = policy.spec.n_obs_steps - 1
    return policy.unnormalize_action(normalized[:, start:start + policy.spec.n_action_steps])


def denoising_ppo_loss(policy, cond: torch.Tensor, chain: torch.Tensor, old_log_probs: torch.Tensor,
                       advantages: torch.Tensor, clip: float, cfg: ChainConfig, steps: slice | None = None,
                       max_log_ratio: float = 20.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped PPO surrogate of the selected denoising steps (default all K), averaged over batch and steps.

    cond (B, C): the condition under the current weights (carry gradients to train the encoder);
    chain (B, K+1, horizon, Da) and old_log_probs (B, K) as returned by `sample_stochastic_chain` of the old policy;
    advantages (B,). Returns (loss, metrics: approx_kl, clip_frac, ratio mean/max)."""
    B, K1 = chain.shape[:2]
    if tuple(old_log_probs.shape) != (B, K1 - 1):
        raise ValueError(f"old_log_probs shape {tuple(old_log_probs.shape)}, expected (B, K) = ({B}, {K1 - 1})")
    if tuple(advantages.shape) != (B,):
        raise ValueError(f"advantages shape {tuple(advantages.shape)}, expected ({B},)")
    steps = steps or slice(None)
    new = policy.chain_log_probs(cond, chain, cfg.num_steps, cfg.eta, cfg.min_std, steps)      # (B, K')
    log_ratio = new - old_log_probs[:, steps]
    if cfg.log_prob_reduce == "mean":
        log_ratio = log_ratio / chain[0, 0].numel()
    log_ratio = log_ratio.clamp(-max_log_ratio, max_log_ratio)    # exp() stays finite; clipped ratios carry no grad
    ratio = log_ratio.exp()
    adv = advantages[:, None]
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
    loss = -surrogate.mean()
    with torch.no_grad():
        metrics = {"approx_kl": float(((ratio - 1) - log_ratio).mean()),
                   "clip_frac": float(((ratio - 1).abs() > clip).float().mean()),
                   "ratio_mean": float(ratio.mean()), "ratio_max": float(ratio.max())}
    return loss, metrics


class DenoisingPPO:
    """PPO updates of a DiffusionPolicy through its denoising chain: one optimizer step per denoising step.

    train_encoder: recompute the condition with gradients at every step (the observation encoder learns too);
    otherwise it is computed once without gradients. encode: observations -> the policy's condition (default
    policy.encode on raw observations; an image policy's RL stages pass the feature view and
    robot_rl.policies.frozen_features.condition, so only the proprio encoder can learn)."""

    def __init__(self, policy, optimizer: torch.optim.Optimizer, chain: ChainConfig, clip: float,
                 grad_clip: float = 1.0, train_encoder: bool = True, steps: slice | None = None,
                 encode: Callable[[Mapping[str, Any]], torch.Tensor] | None = None) -> None:
        if not 0.0 < clip < 1.0:
            raise ConfigError(f"ppo clip={clip}: must be in (0, 1)")
        self.policy, self.optimizer, self.chain, self.clip = policy, optimizer, chain, float(clip)
        self.grad_clip, self.train_encoder = grad_clip, train_encoder
        self.encode = encode or policy.encode
        self.steps = range(chain.num_steps)[steps or slice(None)]     # DPPO: e.g. slice(-5, None)

    def update(self, obs: Mapping[str, Any], chain: torch.Tensor, old_log_probs: torch.Tensor,
               advantages: torch.Tensor) -> dict[str, float]:
        """One pass over the denoising steps of a batch; returns metrics averaged over the steps."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        cond = None
        if not self.train_encoder:
            with torch.no_grad():
                cond = self.encode(obs)
        totals: dict[str, float] = {}
        for k in self.steps:
            c = self.encode(obs) if self.train_encoder else cond
            loss, m = denoising_ppo_loss(self.policy, c, chain, old_log_probs, advantages, self.clip, self.chain,
                                         slice(k, k + 1))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip:
                m["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
            self.optimizer.step()
            m["loss"] = float(loss.detach())
            for name, v in m.items():
                totals[name] = totals.get(name, 0.0) + v / len(self.steps)
        return totals
