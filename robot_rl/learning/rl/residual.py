"""`robot-rl finetune algo=residual`: off-policy RL of a bounded residual on a frozen diffusion base (ResFiT).

    a = a_base + bound * tanh(f(obs, a_base))      normalized action units, one residual per executed chunk

f gives one offset per action dimension for the whole chunk (per_step=false, the default: the base keeps
the chunk's shape and timing, exploration noise is one draw per chunk) or one value per step, on the
action dimensions the successful prior demos vary (or `dims`: a gripper the demos keep closed around a
peg is never perturbed). a_base: the base's executable chunk from fresh initial noise every chunk (DDIM
eta = 0, so the base is a function of that noise); kept in the transitions as extras["base_action"],
and the base chunk at the n-step next state as extras["next_base_action"] (computed once at insert
time). The last layer of f starts at zero, so the first policy IS the base, and no output of f moves an
action by more than its dimension's bound.

Bounds, per action dimension (docs/rl.md, "Why the defaults are what they are", has the measurements):
positions `scale` 0.02, small because the actions are end-effector deltas and an offset held over a
chunk integrates; rotations 0.15 (`dim_scales`), wide enough to turn the gripper
towards a cube turned away from it; the gripper 1.0, an absolute command (an offset there does not
integrate).

Learner: TD3-style, not SAC. The residual is deterministic and explores with Gaussian noise
(explore_std * bound, clipped to the bound); critic targets use clipped smoothing noise. Reasons: an
entropy bonus would push a bounded residual towards noise at its bound even where the base is already
right (precise insertion needs it near zero), the exported policy is then exactly what the critic
evaluated, and exploration stays an explicit, bounded knob for a real robot. For the same reason the
actor loss carries `penalty` * mean (residual / bound)^2: without it the actor follows the critic's
extrapolation noise to the bound.
The shared part (robot_rl.learning.rl.offpolicy.OffPolicyLearner, owned by ResidualAgent below; its update
is this file's): LayerNorm Q ensemble on the executed action
(critic_heads 4 by default, for CPU cost; RLPD's 10 with critic_heads=10), target = min over a random
subset of 2 target heads, actor on the mean Q (every `actor_every` updates), n-step 3, `utd` updates per
chunk transition after `warmup_env_steps` steps of the base alone (the first of them train the critic
only), symmetric sampling of prior data (store demos, critic on their executed actions, actor input
a_base = the base's chunk at the demo state, computed once at load; plus every intervention) and online data.
Pixels: the residual, the critic and the base's chunks at insert time read the base's frozen camera features
(robot_rl.policies.frozen_features; docs/rl.md, "Pixels in the RL stages"); the replay holds no frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from robot_rl.core.config import dataclass_from_dict
from robot_rl.core.errors import ConfigError
from robot_rl.learning.rl.context import FinetuneContext, FinetuneResult
from robot_rl.learning.rl.offpolicy import OffPolicyConfig, OffPolicyLearner, UsesLearner, train_online
from robot_rl.learning.rl.transitions import Transitions
from robot_rl.policies.base import ChunkPolicy
from robot_rl.policies.frozen_features import frozen_features
from robot_rl.policies.residual_policy import ResidualPolicy

BASE_BATCH = 1024   # rows per base-policy call when relabelling stored transitions


@dataclass
class ResidualConfig(OffPolicyConfig):
    utd: float = 2.0                  # higher drives the actor onto critic errors (docs/rl.md)
    critic_heads: int = 4             # RLPD uses 10; 4 for CPU cost (docs/rl.md)
    actor_every: int = 2              # TD3's delayed actor updates
    scale: float = 0.02               # residual bound in normalized action units (see the module doc)
    dim_scales: dict | None = field(default_factory=lambda: {3: 0.15, 4: 0.15, 5: 0.15, 6: 1.0})
                                      # {action dimension: bound} overriding scale: the rotations and the absolute
                                      # gripper command of the twin's 7-D EE action (None: scale everywhere)
    explore_std: float = 0.5          # exploration noise std on the residual, as a fraction of each bound
    target_noise: float = 0.2         # TD3 target smoothing noise std, fraction of each bound
    target_noise_clip: float = 0.5    # ... clipped at this fraction of the bound
    actor_layer_norm: bool = True
    per_step: bool = False            # one residual per step of the chunk instead of one offset per dimension
    penalty: float = 0.5              # actor loss += penalty * mean (residual / bound)^2 (Q units; 0: off)
    dims: tuple[int, ...] | None = None   # action dimensions the residual acts on; default: those the prior
                                          # store's successful demos vary (one they hold constant, e.g. a
                                          # gripper kept closed around a peg, would only be perturbed)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.scale > 0:
            raise ConfigError(f"residual.scale={self.scale}: must be > 0 (normalized action units)")
        try:
            self.dim_scales = {int(d): float(b) for d, b in (self.dim_scales or {}).items()}
        except (TypeError, ValueError):
            raise ConfigError(f"residual.dim_scales={self.dim_scales}: must map action dimensions to bounds") from None
        if self.explore_std < 0 or self.target_noise < 0 or self.target_noise_clip < 0:
            raise ConfigError("residual: explore_std, target_noise and target_noise_clip must be >= 0")


class ResidualAgent(UsesLearner):
    """The residual on its frozen base, its TD3-style update, and an OffPolicyLearner for the critic, the
    replay, the counters and the learner state (its reads: observe, allowed_updates, save_state, ...)."""

    def __init__(self, base: ChunkPolicy, cfg: ResidualConfig, device="cpu", seed: int = 0,
                 gamma: float = 0.99, dims: list[int] | None = None) -> None:
        """dims: the action dimensions of the residual (default cfg.dims, else all)."""
        self.base, self.cfg, self.spec = base, cfg, base.spec
        self.dims = list(cfg.dims) if cfg.dims is not None else dims
        self.learner = OffPolicyLearner(base.spec, base.normalizer, cfg, device, seed, gamma, frozen_features(base))
        self.device, self.features = self.learner.device, self.learner.features
        self.policy = ResidualPolicy(base, cfg.scale, cfg.actor_hidden, cfg.actor_layer_norm, self.dims,
                                     cfg.per_step, cfg.dim_scales)
        self.learner.set_actor(self.policy.actor, prepare=self.prepare)
        self.actor = self.policy.actor

    # ---- acting: a = a_base + r, r explored with clipped Gaussian noise once the warm-up is over ---------
    @torch.no_grad()
    def act(self, obs, explore: bool = True):
        """Observation history {key: (n_obs, D), cameras (n_obs, H, W, C)} -> (raw actions (n_act, Da),
        {"base_action": raw base chunk}); base and residual read the same view (camera features)."""
        x = self.learner.obs_tensors(obs)
        base_raw = self.policy.base_actions(x, self.base.make_noise(1))
        base = self.features.action(base_raw)
        r = self.actor(self.features.obs(x), base)
        if explore and not self.learner.warming_up and self.cfg.explore_std > 0:
            r = self.actor.clamp(r + self.actor.noise(r, self.cfg.explore_std))
        return self.learner.raw_chunk(base + r), {"base_action": base_raw[0].cpu().numpy()}

    # ---- the update ----------------------------------------------------------------------------------------
    def update(self) -> dict[str, float]:
        """Critic on y = R_n + D_n * min Q_target(s_n, a_base' + smoothed r'); every actor_every updates the
        actor on mean Q(s, a_base + r) - penalty."""
        c, learner = self.cfg, self.learner
        batch, obs, next_obs = learner.sample()
        base = self.features.action(batch["extras"]["base_action"])
        next_base = self.features.action(batch["extras"]["next_base_action"])
        with torch.no_grad():
            r = self.actor(next_obs, next_base)
            if c.target_noise > 0:       # TD3 target smoothing
                r = self.actor.clamp(r + self.actor.noise(r, c.target_noise, c.target_noise_clip))
        metrics = learner.critic_update(batch, obs, next_obs, next_base + r)
        if learner.actor_due():
            learner.actor_step(lambda: self.actor_loss(obs, base))
        return learner.finish_update(metrics)

    def actor_loss(self, obs: torch.Tensor, base: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        a = base + self.actor(obs, base)
        q = self.learner.critic(obs, a).mean(0)
        metrics = {"q_pi": q.mean().item(), "residual_abs": (a - base).abs().mean().item()}
        return self.action_penalty(a, base) - q.mean(), metrics

    def action_penalty(self, action, base):
        """penalty * mean (residual / bound)^2 over the active elements: the residual leaves the base only
        where the critic's gain outweighs it (without it the actor saturates on critic noise)."""
        if self.cfg.penalty <= 0:
            return 0.0
        active = self.actor.bound > 0
        r = (action - base)[:, active] / self.actor.bound[active]
        return self.cfg.penalty * r.pow(2).mean()

    # ---- data: the base's chunks at obs and at the n-step next obs, once at insert time ---------------------
    @torch.no_grad()
    def base_chunks(self, obs: dict) -> torch.Tensor:
        """Obs {key: (N, n_obs, D)} arrays in the view (raw low-dim, camera features) -> the base's raw
        executable chunks (N, n_act, Da) on the CPU, each from its own fresh noise."""
        n = len(next(iter(obs.values())))
        parts = []
        for i in range(0, n, BASE_BATCH):
            x = {k: torch.as_tensor(v[i:i + BASE_BATCH], device=self.device) for k, v in obs.items()}
            parts.append(self.policy.base_actions(x, self.base.make_noise(len(next(iter(x.values()))))).cpu())
        return torch.cat(parts)

    def prepare(self, t: Transitions) -> Transitions:
        if len(t) == 0:
            return t
        if "base_action" not in t.extras:          # store data: relabel with the base at the demo state
            t.extras["base_action"] = self.base_chunks(t.obs).numpy()
        t.extras["next_base_action"] = self.base_chunks(t.next_obs).numpy()
        return t

    def export_policy(self) -> ResidualPolicy:
        return self.policy


def make_agent(ctx: FinetuneContext) -> tuple[ResidualAgent, ResidualConfig]:
    """The residual agent of a finetune context (the learner's, or an actor process's copy)."""
    cfg = dataclass_from_dict(ResidualConfig, ctx.config, "finetune residual")
    if ctx.base is None:
        raise ConfigError("finetune algo=residual needs policy=<base checkpoint>")
    if not isinstance(ctx.base, ChunkPolicy):
        raise ConfigError(f"finetune algo=residual: the base must be a diffusion or one-step policy checkpoint, "
                          f"got a {type(ctx.base).__name__} ({getattr(ctx.base, 'kind', '?')})")
    dims = varying_action_dims(ctx.store, ctx.base.spec) if ctx.store is not None and cfg.dims is None else None
    agent = ResidualAgent(ctx.base, cfg, ctx.device, ctx.seed, ctx.online.gamma, dims)
    print(f"residual: acts on action dimensions {agent.policy.actor_cfg['dims']} of {ctx.base.spec.action_dim}")
    return agent, cfg


def run(ctx: FinetuneContext) -> FinetuneResult:
    agent, cfg = make_agent(ctx)
    return train_online(agent, ctx, cfg, "residual")


def varying_action_dims(store, spec) -> list[int]:
    """Action dimensions the store's successful episodes (all, if none succeeded) change at all: range at or
    above the normalizer's constant threshold. Failed demos may vary a dimension success never touches."""
    from robot_rl.data.normalizer_stats import RANGE_EPS, stream_stats

    if len(store) == 0:
        return list(range(spec.action_dim))
    ok = [i for i, m in enumerate(store.meta_list()) if m.get("success")]
    stats = stream_stats(store, spec.action.stream, ok or None)
    return [d for d in range(spec.action_dim) if stats.max[d] - stats.min[d] >= RANGE_EPS]
