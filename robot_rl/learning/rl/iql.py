"""Implicit Q-learning critics over chunk transitions (Kostrikov et al. 2021; RL-100's offline critics).

    V loss  L_V = E[ |tau - 1(u < 0)| u^2 ],  u = min_i Qtarget_i(s, a) - V(s)     (expectile tau, 0.7)
    Q loss  L_Q = sum_i E[ (Q_i(s, a) - (r + d V(s')))^2 ]
    Qtarget <- (1 - polyak) Qtarget + polyak Q

r is the chunk return sum_k gamma^k r_k and d = gamma^k (0 at termination), both from `Transitions`, so
a chunk of k executed steps discounts its successor by gamma^k. V never queries actions outside the data:
the expectile of Q over dataset actions approximates the value of the best in-support behaviour.
Advantages A(s, a) = min_i Qtarget_i(s, a) - V(s) score actions sampled from a policy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn

from robot_rl.core.progress import progress_bar
from robot_rl.core.errors import ConfigError
from robot_rl.learning.rl.transitions import Transitions
from robot_rl.policies.critics import ChunkFeatures, QEnsemble, ValueNet


@dataclass
class IQLConfig:
    """The critics' settings; the offline algorithm's config (offline.OfflineConfig) holds their defaults."""

    expectile: float
    n_q: int                         # Q heads, min over them
    hidden: tuple[int, ...]
    lr: float
    polyak: float                    # target Q update rate
    batch_size: int
    layer_norm: bool = True
    grad_clip: float = 10.0

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if not 0.0 < self.expectile < 1.0:
            raise ConfigError(f"iql.expectile={self.expectile}: must be in (0, 1)")
        if self.n_q < 1:
            raise ConfigError(f"iql.n_q={self.n_q}: must be >= 1")
        if not 0.0 < self.polyak <= 1.0:
            raise ConfigError(f"iql.polyak={self.polyak}: must be in (0, 1]")


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """mean |tau - 1(diff < 0)| diff^2: minimized over V by the tau-expectile of Q (diff = Q - V)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


class TransitionBatches:
    """Transitions as tensors once, random minibatches by index (no per-batch copies of the whole set)."""

    def __init__(self, transitions: Transitions, device: torch.device | str = "cpu", seed: int = 0) -> None:
        if len(transitions) == 0:
            raise ConfigError("IQL: no transitions to learn from (empty store?)")
        self.data = transitions.torch(device)
        self.n = len(transitions)
        self.gen = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> dict:
        idx = torch.as_tensor(self.gen.integers(0, self.n, batch_size))
        return {k: {kk: vv[idx] for kk, vv in v.items()} if isinstance(v, dict) else v[idx]
                for k, v in self.data.items()}


class IQLCritics(nn.Module):
    """Twin Q (+ Polyak target) and V over the base policy's normalized observation history and action chunk."""

    def __init__(self, features: ChunkFeatures, cfg: IQLConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.features = features
        self.q = QEnsemble(features.obs_dim, features.action_dim, self.cfg.n_q, self.cfg.hidden, self.cfg.layer_norm)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.v = ValueNet(features.obs_dim, self.cfg.hidden, self.cfg.layer_norm)
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=self.cfg.lr)
        self.v_opt = torch.optim.Adam(self.v.parameters(), lr=self.cfg.lr)

    # ---- values on raw observations / actions ----------------------------------------------------
    def q_value(self, obs: Mapping[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        """min over the target Q heads at raw obs {k: (B, n_obs, D)} and raw executed actions (B, n_act, Da): (B,)."""
        return self.q_target(self.features.obs(obs), self.features.action(actions)).min(0).values

    def value(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.v(self.features.obs(obs))

    @torch.no_grad()
    def advantage(self, obs: Mapping[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        o = self.features.obs(obs)
        return self.q_target(o, self.features.action(actions)).min(0).values - self.v(o)

    # ---- learning -------------------------------------------------------------------------------
    def update(self, batch: dict) -> dict[str, float]:
        """One IQL step (V, then Q, then the target) on a batch from `Transitions.torch()`."""
        o = self.features.obs(batch["obs"])
        o2 = self.features.obs(batch["next_obs"])
        a = self.features.action(batch["actions"])
        with torch.no_grad():
            q_t = self.q_target(o, a).min(0).values
        v = self.v(o)
        v_loss = expectile_loss(q_t - v, self.cfg.expectile)
        self._step(self.v_opt, v_loss, self.v)
        with torch.no_grad():
            target = batch["rewards"].float() + batch["discounts"].float() * self.v(o2)
        q = self.q(o, a)
        q_loss = (q - target).square().mean(1).sum()
        self._step(self.q_opt, q_loss, self.q)
        with torch.no_grad():
            for p, pt in zip(self.q.parameters(), self.q_target.parameters()):
                pt.lerp_(p, self.cfg.polyak)
        return {"v_loss": float(v_loss.detach()), "q_loss": float(q_loss.detach()), "q_mean": float(q_t.mean()),
                "v_mean": float(v.detach().mean())}

    def _step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, module: nn.Module) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(module.parameters(), self.cfg.grad_clip)
        opt.step()

    def fit(self, batches: TransitionBatches, steps: int, progress: bool = True, desc: str = "iql") -> dict[str, float]:
        """`steps` updates on random minibatches; returns the metrics averaged over the last 10 % of steps."""
        self.train()
        tail: list[dict[str, float]] = []
        bar = progress_bar(range(steps), desc=desc, enabled=progress, leave=False)
        for i in bar:
            m = self.update(batches.sample(self.cfg.batch_size))
            if i >= steps - max(1, steps // 10):
                tail.append(m)
            if i % 100 == 0:
                bar.set_postfix(q=f"{m['q_mean']:.3f}", v=f"{m['v_mean']:.3f}")
        self.eval()
        return {k: float(np.mean([m[k] for m in tail])) for k in tail[0]} if tail else {}
