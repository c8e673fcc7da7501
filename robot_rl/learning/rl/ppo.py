"""Online PPO over the denoising chain of a diffusion policy (RL-100 online stage, DPPO).

    robot-rl finetune algo=ppo policy=<bc ckpt> task=lift [ppo.<field>=<value> ...]

Acting: every chunk is sampled through a stochastic K-step DDIM chain (eta, per-step std clipped below at
min_std), and the chain x_K..x_0 with its per-step log-probs rides along in the transition's extras.
Learning: after `rollout_chunks` chunks (whole episodes), GAE (lambda 0.95) over the executed chunks
with a value net on the observation history gives advantages; then `epochs` passes of minibatches of the
clipped surrogate of robot_rl.learning.rl.denoising_ppo at every denoising step (one optimizer step per
step, RL-100; `finetune_steps` = K' restricts it to the last K' steps, DPPO), a value regression, and an
optional BC step (the DDPM loss on the prior store's successful windows). The rollout is then discarded.

Pixels: the camera encoders stay frozen (train_encoder then trains the proprio encoder only). The rollout
holds its uint8 frames until its iteration (rollout_chunks x 2 histories x n_obs_steps frames per camera:
~79 MB for 200 chunks of two 128x128 cameras at n_obs_steps 2); the iteration encodes each distinct frame
once (robot_rl.policies.frozen_features), and the value net, the surrogate's condition and the minibatches
read those features; the frames are dropped with the rollout.

The exported policy is a DiffusionPolicy with the fine-tuned weights, acting with `export_eta` over the
same K steps (all K steps share the weights, so the checkpoint is a plain diffusion policy). Training state
(weights, optimizers, counters) is saved after every iteration in <out>/train_state (a rerun with the
same out= continues from it) and each iteration's metrics are appended to <out>/iterations.jsonl.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from robot_rl.core.config import dataclass_from_dict
from robot_rl.core.errors import ConfigError
from robot_rl.learning.rl.context import FinetuneContext, FinetuneResult, save_finetuned
from robot_rl.learning.rl.denoising_ppo import ChainConfig, DenoisingPPO, executed_actions, sample_stochastic_chain
from robot_rl.learning.rl.gae import episode_ends, gae
from robot_rl.learning.rl.online import OnlineProgress, run_online
from robot_rl.learning.rl.transitions import Transitions, feature_transitions
from robot_rl.learning.train_state import has_learner_state, load_learner_state, save_learner_state
from robot_rl.policies.critics import ChunkFeatures, ValueNet
from robot_rl.policies.device import resolve_device
from robot_rl.policies.diffusion_policy import DiffusionPolicy
from robot_rl.policies.frozen_features import condition, frozen_features, view_spec


@dataclass
class PPOConfig:
    rollout_chunks: int = 200          # chunks (policy decisions, whole episodes) collected per PPO iteration
    epochs: int = 5                    # passes over a rollout
    minibatch_size: int = 50
    num_inference_steps: int = 10      # K: DDIM steps of the acting chain and of the exported policy
    finetune_steps: int = 0            # K': the surrogate covers the last K' denoising steps (0: all K)
    eta: float = 1.0                   # DDIM eta of the acting chain (1: DDPM-like posterior noise)
    min_std: float = 0.1               # per-step std floor (DPPO 0.1; RL-100 0.0067)
    log_prob_reduce: str = "mean"      # per-step log-prob over the chunk's dims: mean (DPPO) | sum (exact)
    clip: float = 0.01                 # ratio clip on the dim-averaged log-ratio (DPPO ~0.01; RL-100's 0.2
                                       # barely binds on an average over the chunk's dims: docs/rl.md)
    actor_lr: float = 1e-5
    critic_lr: float = 1e-3
    gae_lambda: float = 0.95
    normalize_advantages: bool = True
    target_kl: float = 0.0             # stop an iteration's epochs once the approximate KL exceeds this; 0 disables
    grad_clip: float = 1.0
    critic_hidden: tuple[int, ...] = (256, 256)
    critic_warmup_iterations: int = 1  # first iterations fit only the value net (a fresh critic gives noise)
    value_epochs: int = 0              # extra value-only passes per iteration (0: the value trains with the policy)
    bc_coef: float = 0.0               # > 0: a BC step (coef * DDPM loss on successful store windows) per minibatch
    bc_batch_size: int = 64
    train_encoder: bool = False        # fine-tune the observation encoder too (else only the denoiser)
    export_eta: float = 0.0            # DDIM eta of the exported policy's act() (0: deterministic given noise)
    resume: bool = True                # continue from <out>/train_state when present

    def __post_init__(self) -> None:
        self.critic_hidden = tuple(int(h) for h in self.critic_hidden)
        for name in ("rollout_chunks", "epochs", "minibatch_size", "num_inference_steps", "bc_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"ppo.{name}={getattr(self, name)}: must be >= 1")
        if not 0 <= self.finetune_steps <= self.num_inference_steps:
            raise ConfigError(f"ppo.finetune_steps={self.finetune_steps}: must be in [0, num_inference_steps="
                              f"{self.num_inference_steps}]")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ConfigError(f"ppo.gae_lambda={self.gae_lambda}: must be in [0, 1]")
        for name in ("actor_lr", "critic_lr", "bc_coef", "target_kl", "export_eta", "value_epochs",
                     "critic_warmup_iterations"):
            if getattr(self, name) < 0:
                raise ConfigError(f"ppo.{name}={getattr(self, name)}: must be >= 0")


def trainable_copy(base: DiffusionPolicy, **cfg_changes) -> DiffusionPolicy:
    """A DiffusionPolicy with the base's spec, normalizer and weights (the base itself stays untouched)."""
    normalizer = type(base.normalizer).from_flat(base.spec, base.normalizer.flat())
    policy = DiffusionPolicy(base.spec, replace(base.cfg, **cfg_changes), normalizer)
    policy.load_state_dict(base.state_dict())
    return policy.to(base.device)


def bc_batches(store, spec, batch_size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches of successful store windows {obs keys, action key} for the BC regularizer."""
    from robot_rl.data.dataset import endless_batches

    batches = endless_batches(store, spec, batch_size, seed, success=True)
    if batches is None:
        raise ConfigError(f"ppo.bc_coef > 0: {store.path} has no successful windows for the policy's spec")
    return batches


class DiffusionPPO:
    """The OnlineAlgorithm of robot_rl.learning.rl.online: PPO over a diffusion policy's denoising chain."""

    def __init__(self, base: DiffusionPolicy, cfg: PPOConfig, gamma: float = 0.99, device: str | torch.device = "cpu",
                 seed: int = 0, store=None, state_dir: str | Path | None = None,
                 log_path: str | Path | None = None) -> None:
        self.cfg, self.gamma = cfg, gamma
        self.log_path = Path(log_path) if log_path is not None else None
        self.spec = base.spec
        device = resolve_device(device)
        self.policy = trainable_copy(base.to(device), num_inference_steps=cfg.num_inference_steps,
                                     eta=cfg.export_eta)
        self.chain = ChainConfig(cfg.num_inference_steps, cfg.eta, cfg.min_std, cfg.log_prob_reduce)
        self.frozen = frozen_features(self.policy)     # cameras: frozen, read as cached features
        self.features = ChunkFeatures(view_spec(self.policy), self.policy.normalizer)
        self.value = ValueNet(self.features.obs_dim, cfg.critic_hidden).to(device)
        if not cfg.train_encoder:
            self.policy.encoder.requires_grad_(False)
        actor_params = [p for p in self.policy.parameters() if p.requires_grad]
        self.actor_opt = torch.optim.AdamW(actor_params, lr=cfg.actor_lr, betas=(0.9, 0.999), weight_decay=0.0)
        self.critic_opt = torch.optim.Adam(self.value.parameters(), lr=cfg.critic_lr)
        steps = slice(-cfg.finetune_steps, None) if cfg.finetune_steps else None
        self.ppo = DenoisingPPO(self.policy, self.actor_opt, self.chain, cfg.clip, cfg.grad_clip, cfg.train_encoder,
                                steps, encode=lambda o: condition(self.policy, self.frozen, o))
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.bc = bc_batches(store, self.spec, cfg.bc_batch_size, seed) if cfg.bc_coef > 0 and store else None
        if cfg.bc_coef > 0 and store is None:
            raise ConfigError("ppo.bc_coef > 0 needs prior data: store=<episode store> (or the base's training store)")
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.rollout: list[Transitions] = []
        self.iterations = 0
        self.seen = OnlineProgress()           # counters of everything observed (saved with the state)
        self.last_metrics: dict[str, float] = {}

    @property
    def device(self) -> torch.device:
        return self.policy.device

    # ---- acting -------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.policy.reset()

    @torch.no_grad()
    def act(self, obs: Mapping[str, np.ndarray], explore: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Observation history {key: (n_obs, D), cameras (n_obs, H, W, C)} -> raw executed actions (n_act, Da)
        and, when exploring, extras {chain (K+1, horizon, Da), log_prob (K,)} of the stochastic chain that
        produced them."""
        raw = {f.key: torch.as_tensor(np.asarray(obs[f.key])[None]) for f in self.spec.obs}
        cond = condition(self.policy, self.frozen, self.frozen.obs(raw) if self.frozen is not None else raw)
        if not explore:
            noise = self.policy.make_noise(1, self.generator)
            normalized = self.policy.sample(cond, noise, self.chain.num_steps, self.cfg.export_eta).actions
            return executed_actions(self.policy, normalized)[0].cpu().numpy(), {}
        res = sample_stochastic_chain(self.policy, cond, self.chain, self.generator)
        actions = executed_actions(self.policy, res.actions)[0].cpu().numpy()
        return actions, {"chain": res.chain[0].cpu().numpy(), "log_prob": res.log_probs[0].cpu().numpy()}

    # ---- learning ----------------------------------------------------------------------------------
    def observe(self, transitions: Transitions) -> None:
        if len(transitions) == 0:
            return
        if "chain" not in transitions.extras:
            raise ValueError("ppo: transitions lack the 'chain' extras (on-policy PPO learns from its own rollouts)")
        self.rollout.append(transitions)
        self.seen.env_steps += int(transitions.steps.sum())
        self.seen.transitions += len(transitions)
        self.seen.episodes += 1

    def buffered(self) -> int:
        return sum(len(t) for t in self.rollout)

    def allowed_updates(self, n_transitions: int) -> int:
        """PPO iterations earned: those done plus one when a full rollout is waiting (on-policy: the
        rollout size, not the transition count, is the throttle)."""
        return self.iterations + int(self.buffered() >= self.cfg.rollout_chunks)

    def update(self) -> dict[str, float]:
        """One PPO iteration on the buffered rollout (then discarded). Returns its metrics."""
        cfg, dev = self.cfg, self.device
        batch = feature_transitions(Transitions.concat(self.rollout), self.frozen)   # frames: each encoded once
        self.rollout = []
        t = batch.torch(dev)
        obs_flat = self.features.obs(t["obs"])
        with torch.no_grad():
            values = self.value(obs_flat).cpu().numpy()
            next_values = self.value(self.features.obs(t["next_obs"])).cpu().numpy()
        adv, returns = gae(batch.rewards, batch.discounts, values, next_values, episode_ends(batch.episodes),
                           cfg.gae_lambda)
        returns_t = torch.as_tensor(returns, device=dev)
        # intervened chunks were not produced by the chain: they train the value net only
        mine = np.flatnonzero(~batch.interventions)
        adv_t = torch.as_tensor(adv, device=dev)
        if cfg.normalize_advantages and len(mine) > 1:
            a = adv_t[mine]
            adv_t = (adv_t - a.mean()) / (a.std() + 1e-8)
        chain = t["extras"]["chain"].float()
        old = t["extras"]["log_prob"].float()
        train_policy = self.iterations >= cfg.critic_warmup_iterations and len(mine) > 0
        totals: dict[str, list[float]] = {}
        stop = False
        for epoch in range(cfg.epochs + cfg.value_epochs):
            policy_epoch = train_policy and epoch < cfg.epochs and not stop
            order = self.rng.permutation(len(batch))
            for s in range(0, len(order), cfg.minibatch_size):
                idx = order[s:s + cfg.minibatch_size]
                v_loss = self._value_step(obs_flat[idx], returns_t[idx])
                totals.setdefault("value_loss", []).append(v_loss)
                pidx = np.intersect1d(idx, mine)
                if not policy_epoch or len(pidx) == 0:
                    continue
                m = self.ppo.update({k: v[pidx] for k, v in t["obs"].items()}, chain[pidx], old[pidx], adv_t[pidx])
                if self.bc is not None:
                    m["bc_loss"] = self._bc_step()
                for k, v in m.items():
                    totals.setdefault(k, []).append(v)
                if cfg.target_kl and m["approx_kl"] > cfg.target_kl:
                    stop = True
                    break
        self.iterations += 1
        self.last_metrics = {k: float(np.mean(v)) for k, v in totals.items()} | {
            "iteration": self.iterations, "rollout_chunks": len(batch), "policy_updated": float(train_policy),
            "rollout_success": float(np.mean(batch.success[episode_ends(batch.episodes)])),
            "advantage_std": float(np.std(adv)), "value_mean": float(np.mean(values))}
        self.save_state()
        if self.log_path is not None:
            with self.log_path.open("a") as f:
                f.write(json.dumps(self.last_metrics | {"env_steps": self.seen.env_steps}) + "\n")
        return self.last_metrics

    def _value_step(self, obs_flat: torch.Tensor, target: torch.Tensor) -> float:
        loss = F.mse_loss(self.value(obs_flat), target)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.value.parameters(), self.cfg.grad_clip)
        self.critic_opt.step()
        return float(loss.detach())

    def _bc_step(self) -> float:
        batch = {k: v.to(self.device) for k, v in next(self.bc).items()}
        loss = self.cfg.bc_coef * self.policy.compute_loss(batch)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for g in self.actor_opt.param_groups for p in g["params"]],
                                           self.cfg.grad_clip)
        self.actor_opt.step()
        return float(loss.detach())

    def export_policy(self) -> DiffusionPolicy:
        return self.policy

    # ---- resume ------------------------------------------------------------------------------------
    def save_state(self) -> None:
        """Weights, both optimizers and the counters; the partial rollout is not kept (it is on-policy data
        of weights that a resumed run would not act with)."""
        if self.state_dir is None:
            return
        counters = {"iterations": self.iterations, "env_steps": self.seen.env_steps,
                    "transitions": self.seen.transitions - self.buffered(), "episodes": self.seen.episodes}
        save_learner_state(self.state_dir, self.iterations, self._optimizers(), counters)

    def load_state(self, out: str | Path) -> OnlineProgress | None:
        """Restore from state_dir if it holds a state; returns where run_online continues (None: fresh)."""
        if not has_learner_state(self.state_dir):
            return None
        c = load_learner_state(self.state_dir, self._optimizers())
        self.iterations = int(c["iterations"])
        self.seen = OnlineProgress(int(c["env_steps"]), int(c["transitions"]), self.iterations, int(c["episodes"]))
        return replace(self.seen, curve=OnlineProgress.load_curve(out, self.seen.env_steps))

    def _optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, dict[str, torch.nn.Module]]]:
        return {"actor": (self.actor_opt, {"policy": self.policy}), "critic": (self.critic_opt, {"value": self.value})}


def run(ctx: FinetuneContext) -> FinetuneResult:
    """`robot-rl finetune algo=ppo`: PPO over the denoising chain in the twin; the policy goes to <out>/policy."""
    if not isinstance(ctx.base, DiffusionPolicy):
        raise ConfigError(f"finetune algo=ppo fine-tunes a diffusion policy; policy= is a "
                          f"{type(ctx.base).__name__} ({getattr(ctx.base, 'kind', '?')})")
    if ctx.make_env is None:
        raise ConfigError("finetune algo=ppo collects its own rollouts: give task=<twin task>")
    cfg = dataclass_from_dict(PPOConfig, ctx.config, "finetune ppo")
    torch.manual_seed(ctx.seed)
    algo = DiffusionPPO(ctx.base, cfg, ctx.online.gamma, ctx.device, ctx.seed, ctx.store,
                        state_dir=Path(ctx.out) / "train_state", log_path=Path(ctx.out) / "iterations.jsonl")
    start = algo.load_state(ctx.out) if cfg.resume else None
    if start is not None:
        print(f"ppo: resumed at iteration {algo.iterations}, {start.env_steps} env steps")
    curve = run_online(algo, ctx.make_env, ctx.online, ctx.out, ctx.evaluate, ctx.make_corrector,
                       progress=ctx.progress, start=start, make_success_fn=ctx.make_success_fn)
    path = save_finetuned(ctx, algo.policy, "ppo", cfg,
                          meta={"iterations": algo.iterations, "env_steps": algo.seen.env_steps})
    metrics = {"iterations": algo.iterations, "base_success_rate": curve[0].success_rate if curve else math.nan,
               **{f"last_{k}": v for k, v in algo.last_metrics.items() if k not in ("iteration",)}}
    return FinetuneResult(policy=algo.policy, policy_path=path, curve=curve, metrics=metrics)
