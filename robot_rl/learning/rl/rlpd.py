"""`robot-rl finetune algo=rlpd`: an RLPD-style learner from scratch with the demos in the batch.

The baseline the residual default is measured against: the same chunk MDP, replay (symmetric
sampling, n-step), LayerNorm critic ensemble (10 heads, min over a random subset of 2) and update code
(robot_rl.learning.rl.offpolicy), with a SAC actor instead of a residual: a tanh-Gaussian over the
normalized action chunk, no base policy, a learned temperature (target entropy -|A|/2) in the actor
loss and none in the backup (RLPD). It uses the base checkpoint only for the spec and the normalizer, and
with cameras for its frozen camera encoders (the actor and critic read their features, as the residual's
do; the exported policy keeps that encoder). Exported as a GaussianChunkPolicy (tanh of the mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robot_rl.core.config import dataclass_from_dict
from robot_rl.core.errors import ConfigError
from robot_rl.learning.rl.context import FinetuneContext, FinetuneResult
from robot_rl.learning.rl.offpolicy import OffPolicyConfig, OffPolicyLearner, UsesLearner, train_online
from robot_rl.policies.frozen_features import frozen_features
from robot_rl.policies.gaussian_chunk import GaussianChunkPolicy


@dataclass
class RLPDConfig(OffPolicyConfig):
    utd: float = 4.0                  # per chunk transition (8 env steps): RLPD's 20 per env step is out of CPU reach
    warmup_env_steps: int = 1000      # env steps of the untrained actor before updates
    init_temperature: float = 1.0
    target_entropy: float | None = None   # default -|A| / 2 over the flat chunk
    temperature_lr: float = 3e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.init_temperature > 0:
            raise ConfigError(f"rlpd.init_temperature={self.init_temperature}: must be > 0")


class Temperature(nn.Module):
    def __init__(self, init: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(float(init)).log())

    def forward(self) -> torch.Tensor:
        return self.log_alpha.exp()


class RLPDAgent(UsesLearner):
    """A SAC actor and its temperature, its update, and an OffPolicyLearner for the critic, the replay,
    the counters and the learner state (its reads: observe, allowed_updates, save_state, ...)."""

    def __init__(self, spec, normalizer, cfg: RLPDConfig, device="cpu", seed: int = 0, gamma: float = 0.99,
                 encoder=None):
        """encoder: with cameras, the (base) policy whose frozen camera encoders make the image features."""
        self.cfg, self.spec = cfg, spec
        frozen = frozen_features(encoder) if spec.images and encoder is not None else None
        self.learner = OffPolicyLearner(spec, normalizer, cfg, device, seed, gamma, frozen)
        self.device, self.features = self.learner.device, self.learner.features
        self.policy = GaussianChunkPolicy(spec, normalizer, cfg.actor_hidden, encoder=encoder)
        self.actor = self.policy.actor
        self.temperature = Temperature(cfg.init_temperature).to(self.device)
        self.temperature_opt = torch.optim.Adam(self.temperature.parameters(), lr=cfg.temperature_lr)
        self.learner.set_actor(self.actor, extra_state={
            "temperature": (self.temperature_opt, {"temperature": self.temperature})})
        self.target_entropy = (cfg.target_entropy if cfg.target_entropy is not None
                               else -0.5 * self.features.action_dim)

    @torch.no_grad()
    def act(self, obs, explore: bool = True):
        """Observation history {key: (n_obs, D), cameras (n_obs, H, W, C)} -> (raw actions (n_act, Da), no
        extras); samples while
        exploring, the warm-up included (the untrained actor is the warm-up's exploration)."""
        a, _ = self.actor(self.features.obs(self.learner.obs_tensors(obs)), deterministic=not explore)
        return self.learner.raw_chunk(a), {}

    def update(self) -> dict[str, float]:
        """Critic on y = R_n + D_n * min Q_target(s_n, a' ~ pi(s_n)) (no entropy term: RLPD); every
        actor_every updates the temperature, then the actor on alpha * log pi - mean Q."""
        learner = self.learner
        batch, obs, next_obs = learner.sample()
        with torch.no_grad():
            next_a, _ = self.actor(next_obs, deterministic=False)
        metrics = learner.critic_update(batch, obs, next_obs, next_a)
        if learner.actor_due():
            learner.actor_step(lambda: self.actor_loss(obs))
        return learner.finish_update(metrics)

    def actor_loss(self, obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        a, log_prob = self.actor(obs, deterministic=False)
        q = self.learner.critic(obs, a).mean(0)
        alpha = self.temperature().detach()
        loss = (alpha * log_prob - q).mean()
        # temperature: keep the policy's entropy near the target
        t_loss = -(self.temperature() * (log_prob.detach() + self.target_entropy)).mean()
        self.learner.step(self.temperature_opt, t_loss, self.temperature.parameters())
        return loss, {"q_pi": q.mean().item(), "entropy": -log_prob.mean().item(), "alpha": alpha.item()}

    def export_policy(self) -> GaussianChunkPolicy:
        return self.policy


def make_agent(ctx: FinetuneContext) -> tuple[RLPDAgent, RLPDConfig]:
    """The RLPD agent of a finetune context (the learner's, or an actor process's copy)."""
    cfg = dataclass_from_dict(RLPDConfig, ctx.config, "finetune rlpd")
    if ctx.base is None:
        raise ConfigError("finetune algo=rlpd needs policy=<checkpoint> for its observation/action spec and "
                          "normalizer (its weights are not used)")
    return RLPDAgent(ctx.base.spec, ctx.base.normalizer, cfg, ctx.device, ctx.seed, ctx.online.gamma,
                     encoder=ctx.base if ctx.base.spec.images else None), cfg


def run(ctx: FinetuneContext) -> FinetuneResult:
    agent, cfg = make_agent(ctx)
    return train_online(agent, ctx, cfg, "rlpd")
