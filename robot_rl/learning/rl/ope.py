"""Off-policy evaluation for the offline stage: a learned dynamics ensemble, the AM-Q score and the gate.

`DynamicsEnsemble` (for an image policy: on the feature view, predicting the next frozen camera features):
n MLPs over the critics' latent inputs (the normalized, flattened observation history
and action chunk) predicting the next history (as a delta), the chunk return and the termination logit;
trained on the store's chunk transitions, each member on its own minibatch stream.
`am_q`: roll a policy in the ensemble from dataset start states (a random member per rollout and step, fixed
seeds so two policies are compared on the same starts and noise) and average Q(s_h, a_h) over the steps
still alive (weighted by the predicted survival). The horizon should reach the task's reward.
`OPEGate`: keeps the last accepted ("old") policy; a candidate replaces it only when its AM-Q improves by
`threshold` (relative, RL-100: 5 %), otherwise the candidate's weights are restored to the old ones.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.core.progress import progress_bar
from robot_rl.core.errors import ConfigError
from robot_rl.learning.rl.denoising_ppo import executed_actions
from robot_rl.learning.rl.iql import TransitionBatches
from robot_rl.policies.critics import ChunkFeatures
from robot_rl.policies.frozen_features import FrozenFeatures, condition

QFunction = Callable[[Mapping[str, torch.Tensor], torch.Tensor], torch.Tensor]   # raw obs, raw actions -> (B,)


@dataclass
class DynamicsConfig:
    n_models: int                     # ensemble members (offline.OfflineConfig holds this default and hidden's)
    hidden: tuple[int, ...]
    lr: float = 1e-3
    batch_size: int = 256
    weight_decay: float = 1e-5

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.n_models < 1:
            raise ConfigError(f"ope.n_models={self.n_models}: must be >= 1")


def obs_from_flat(features: ChunkFeatures, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Inverse of ChunkFeatures.obs: normalized flat (B, n_obs * D) -> raw {key: (B, n_obs, D)}."""
    out, i = {}, 0
    n = features.spec.n_obs_steps
    for f in features.spec.obs:
        d = n * f.shape[0]
        out[f.key] = features.normalizer.unnormalize(f.key, flat[:, i:i + d].reshape(-1, n, f.shape[0]))
        i += d
    return out


class EnsembleLinear(nn.Module):
    """n independent linear layers applied as one batched matmul: (n, B, in) -> (n, B, out)."""

    def __init__(self, n: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / np.sqrt(in_dim)        # nn.Linear's default initialization range
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class DynamicsEnsemble(nn.Module):
    """(obs_flat, action_flat) -> (next obs_flat, chunk return, termination logit), n independent members
    evaluated together (batched matmuls)."""

    def __init__(self, features: ChunkFeatures, cfg: DynamicsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.features = features
        n, dims = self.cfg.n_models, (features.obs_dim + features.action_dim, *self.cfg.hidden)
        layers: list[nn.Module] = []
        for i, o in zip(dims[:-1], dims[1:]):
            layers += [EnsembleLinear(n, i, o), nn.SiLU()]
        layers.append(EnsembleLinear(n, dims[-1], features.obs_dim + 2))
        self.net = nn.Sequential(*layers)

    def forward(self, o: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """o (B, O) / a (B, A), or per member (n, B, O) / (n, B, A) -> next_o (n, B, O), reward (n, B),
        done_logit (n, B)."""
        x = torch.cat([o, a], dim=-1)
        if x.ndim == 2:
            x = x.expand(self.cfg.n_models, *x.shape)
        out = self.net(x)
        O = o.shape[-1]
        return o + out[..., :O], out[..., O], out[..., O + 1]

    def fit(self, batches: TransitionBatches, steps: int, progress: bool = True) -> dict[str, float]:
        """`steps` updates; every member gets its own minibatch each step (bootstrap-like diversity)."""
        opt = torch.optim.AdamW(self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        n, bs = self.cfg.n_models, self.cfg.batch_size
        self.train()
        tail = []
        for i in progress_bar(range(steps), desc="dynamics", enabled=progress, leave=False):
            b = batches.sample(n * bs)
            o, a = self.features.obs(b["obs"]), self.features.action(b["actions"])
            next_o, reward, done_logit = self(o.reshape(n, bs, -1), a.reshape(n, bs, -1))
            loss = (F.mse_loss(next_o, self.features.obs(b["next_obs"]).reshape(n, bs, -1))
                    + F.mse_loss(reward, b["rewards"].float().reshape(n, bs))
                    + F.binary_cross_entropy_with_logits(done_logit, (b["discounts"] == 0).float().reshape(n, bs)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= steps - max(1, steps // 10):
                tail.append(float(loss.detach()))
        self.eval()
        return {"dynamics_loss": float(np.mean(tail))} if tail else {}

    @torch.no_grad()
    def step(self, obs: Mapping[str, torch.Tensor], actions: torch.Tensor, generator: torch.Generator
             ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Raw obs {k: (B, n_obs, D)} and raw executed actions (B, n_act, Da) -> (next raw obs, chunk return (B,),
        termination probability (B,)), each sample from a member drawn with `generator`."""
        o, a = self.features.obs(obs), self.features.action(actions)
        next_o, reward, done = self(o, a)
        pick = torch.randint(self.cfg.n_models, (o.shape[0],), generator=generator).to(o.device)
        rows = torch.arange(o.shape[0], device=o.device)
        return obs_from_flat(self.features, next_o[pick, rows]), reward[pick, rows], done[pick, rows].sigmoid()


@torch.no_grad()
def am_q(policy, q: QFunction, model: DynamicsEnsemble, start_obs: Mapping[str, torch.Tensor], horizon: int,
         seed: int = 0, frozen: FrozenFeatures | None = None) -> float:
    """Mean Q along `horizon` chunk steps of model rollouts of `policy` (its deployed DDIM sampler) from the raw
    start observations {k: (S, n_obs, D)}, weighted by the predicted probability of not having terminated.
    Deterministic given `seed` (same starts, sampling noise and ensemble members for every policy).
    frozen: an image policy's camera features; observations, model and Q are then in the feature view."""
    gen = torch.Generator().manual_seed(int(seed))
    step_gen = torch.Generator(device=policy.device).manual_seed(int(seed) + 1)    # eta > 0 samplers
    obs = {k: v.to(policy.device) for k, v in start_obs.items()}
    S = next(iter(obs.values())).shape[0]
    alive = torch.ones(S, device=policy.device)
    total = weight = 0.0
    for _ in range(horizon):
        noise = torch.randn((S, policy.spec.horizon, policy.spec.action_dim), generator=gen).to(policy.device)
        actions = executed_actions(policy, policy.sample_actions(condition(policy, frozen, obs), noise, step_gen))
        total += float((alive * q(obs, actions)).sum())
        weight += float(alive.sum())
        obs, _, done = model.step(obs, actions, gen)
        alive = alive * (1.0 - done)
        if float(alive.sum()) < 1e-3 * S:
            break
    return total / max(weight, 1e-12)


@dataclass
class GateDecision:
    accepted: bool
    score: float          # the candidate's AM-Q
    reference: float      # the old policy's AM-Q it was compared with
    improvement: float    # (score - reference) / |reference|


class OPEGate:
    """Keeps a frozen copy of the last accepted policy (`old`, the policy actions are sampled from).
    check(candidate): accept -> old takes the candidate's weights; reject -> the candidate gets old's back."""

    def __init__(self, policy: nn.Module, score: Callable[[nn.Module], float], threshold: float = 0.05) -> None:
        if threshold < 0:
            raise ConfigError(f"ope gate threshold={threshold}: must be >= 0 (relative AM-Q improvement)")
        self.score_fn, self.threshold = score, float(threshold)
        self.old = copy.deepcopy(policy).eval().requires_grad_(False)
        self.reference = float(score(self.old))
        self.history: list[GateDecision] = []

    def check(self, candidate: nn.Module) -> GateDecision:
        was_training = candidate.training
        candidate.eval()
        s = float(self.score_fn(candidate))
        candidate.train(was_training)
        improvement = (s - self.reference) / max(abs(self.reference), 1e-8)
        accepted = bool(improvement >= self.threshold and np.isfinite(s))
        decision = GateDecision(accepted, s, self.reference, float(improvement))
        if decision.accepted:
            self.old.load_state_dict(candidate.state_dict())
            self.reference = s
        else:
            candidate.load_state_dict(self.old.state_dict())
        self.history.append(decision)
        return decision
