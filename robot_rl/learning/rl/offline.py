"""Offline RL of a diffusion policy (RL-100's offline stage), in rounds:

    data  <- chunk transitions of every store episode (demos, failed demos, earlier rollouts), stride 1
    (validate_rounds) rollouts of the base on fixed validation seeds join the data; their success is the bar
    round r = 0 .. rounds-1:
        IQL critics (twin Q, expectile V) on data               (warm-started from the previous round)
        dynamics ensemble on data                               (for the OPE gate)
        improve: repeat improve_steps times
            states s ~ data; the frozen old policy samples a K-step stochastic DDIM chain (eta 1, min std)
            A = Q(s, a) - V(s) (normalized over the batch)
            clipped PPO surrogate at every denoising step, one optimizer step each (lr decays linearly to 0)
            every gate_every updates: AM-Q in the dynamics ensemble; the old policy advances only when AM-Q
            improves by gate_threshold, otherwise the policy reverts to it
        save rounds/r/policy (+ rounds/r/best_of_n: N samples of it, argmax Q) and evaluate them in the twin
        rollout_episodes twin episodes of the policy on the validation seeds -> <out>/rollouts.zarr, data += them;
        (validate_rounds) the round is kept only if they succeed at least as often as the last kept policy's,
        otherwise the policy reverts to it
The last kept policy (or best-of-N over it, `export`) is <out>/policy.
Pixels: the data, the critics, the dynamics model and the improvement's condition use the base's frozen
camera features (robot_rl.policies.frozen_features; each store frame encoded once), so the policy's camera
encoders stay as BC left them (train_encoder then trains the proprio encoder) and no frame is held in memory.
The learning rate is a knife edge, and AM-Q can rise while twin success falls (the policy exploits Q and
model errors the same way), so the rollout-validated round gate is on by default; the OPE gate still
limits each step (docs/rl.md, "Why the defaults are what they are").
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from robot_rl.core.progress import progress_bar
from robot_rl.core.config import dataclass_from_dict
from robot_rl.core.errors import ConfigError
from robot_rl.learning.rl.context import FinetuneContext, FinetuneResult, save_finetuned
from robot_rl.learning.rl.denoising_ppo import ChainConfig, DenoisingPPO, executed_actions, sample_stochastic_chain
from robot_rl.learning.rl.iql import IQLConfig, IQLCritics, TransitionBatches
from robot_rl.learning.rl.online import CurvePoint
from robot_rl.learning.rl.ope import DynamicsConfig, DynamicsEnsemble, OPEGate, am_q
from robot_rl.learning.rl.transitions import Transitions, store_transitions
from robot_rl.policies.best_of_n import BestOfNPolicy
from robot_rl.policies.critics import ChunkFeatures
from robot_rl.policies.device import resolve_device
from robot_rl.policies.frozen_features import FrozenFeatures, condition, frozen_features, view_spec
from robot_rl.policies.io import save_policy
from robot_rl.data.writer import EpisodeWriter

EXPORTS = ("policy", "best_of_n")


@dataclass
class OfflineConfig:
    rounds: int = 1                     # later rounds tend to collapse (docs/rl.md)
    # IQL critics
    critic_steps: int = 3000            # first round
    critic_steps_per_round: int = 1500  # later rounds (warm-started)
    expectile: float = 0.7
    n_q: int = 2
    critic_hidden: tuple[int, ...] = (256, 256)
    critic_lr: float = 3e-4
    polyak: float = 0.005
    batch_size: int = 256
    # RL-100 improvement over the denoising chain
    improve_steps: int = 200            # PPO updates per round (each: one optimizer step per denoising step)
    improve_batch: int = 256
    lr: float = 1e-5                    # decays linearly to 0 over each round's updates
    clip: float = 0.25
    chain_steps: int = 10               # K DDIM steps, eta 1, std clipped below at min_std
    eta: float = 1.0
    min_std: float = 0.0067
    log_prob_reduce: str = "mean"       # see denoising_ppo.ChainConfig
    grad_clip: float = 1.0
    train_encoder: bool = True
    advantage_clip: float = 3.0         # normalized advantages clipped to +-this
    # OPE gate (AM-Q in a learned dynamics ensemble)
    gate: bool = True
    gate_every: int = 50
    gate_threshold: float = 0.05        # relative AM-Q improvement needed to advance the old policy
    dynamics_models: int = 5
    dynamics_hidden: tuple[int, ...] = (256, 256)
    dynamics_steps: int = 2000          # first round; later rounds continue with half as many
    ope_horizon: int = 12               # chunks per model rollout (must reach the task's reward)
    ope_starts: int = 256               # rollouts, from episode start states (repeated with other noise)
    # extraction, rounds, export
    best_of_n: int = 16                 # 0: no best-of-N policy per round
    rollout_episodes: int = 20          # twin episodes of each round's policy (validation seeds) added to the data
    validate_rounds: bool = True        # keep a round only if its rollouts succeed at least as often as the last
                                        # kept policy's (the base's first); otherwise revert to it
    export: str = "policy"              # policy | best_of_n: what goes to <out>/policy

    def __post_init__(self) -> None:
        for name in ("rounds", "chain_steps", "gate_every", "improve_batch", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"offline.{name}={getattr(self, name)}: must be >= 1")
        for name in ("critic_steps", "critic_steps_per_round", "improve_steps", "dynamics_steps", "best_of_n",
                     "rollout_episodes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"offline.{name}={getattr(self, name)}: must be >= 0")
        if self.lr < 0:
            raise ConfigError(f"offline.lr={self.lr}: must be >= 0")
        if self.export not in EXPORTS:
            raise ConfigError(f"offline.export={self.export!r}: expected one of {EXPORTS}")
        if self.export == "best_of_n" and self.best_of_n < 1:
            raise ConfigError("offline.export=best_of_n needs offline.best_of_n >= 1")

    def iql(self) -> IQLConfig:
        return IQLConfig(self.expectile, self.n_q, self.critic_hidden, self.critic_lr, self.polyak, self.batch_size)

    def chain(self) -> ChainConfig:
        return ChainConfig(self.chain_steps, self.eta, self.min_std, self.log_prob_reduce)


def episode_starts(t: Transitions) -> dict[str, np.ndarray]:
    """Raw observation histories at the first transition of every episode in `t` (stride-1 store transitions)."""
    _, first = np.unique(t.episodes, return_index=True)
    return {k: v[np.sort(first)] for k, v in t.obs.items()}


def improve(policy, critics: IQLCritics, batches: TransitionBatches, gate: OPEGate | None, cfg: OfflineConfig,
            progress: bool = True, desc: str = "improve", frozen: FrozenFeatures | None = None) -> dict[str, Any]:
    """RL-100 policy improvement of `policy` in place against the frozen critics (see the module docstring).
    Without a gate the old policy advances after every gate_every updates unconditionally. frozen: the camera
    features of an image policy (batches then hold the feature view)."""
    chain = cfg.chain()
    old = gate.old if gate is not None else copy.deepcopy(policy).eval().requires_grad_(False)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1.0 - i / max(1, cfg.improve_steps)))
    ppo = DenoisingPPO(policy, opt, chain, cfg.clip, cfg.grad_clip, cfg.train_encoder,
                       encode=lambda o: condition(policy, frozen, o))
    decisions, metrics = [], []
    bar = progress_bar(range(cfg.improve_steps), desc=desc, enabled=progress, leave=False)
    policy.eval()   # no dropout/batch statistics: the new and old log-probs use the same network mode
    for u in bar:
        obs = batches.sample(cfg.improve_batch)["obs"]
        with torch.no_grad():
            res = sample_stochastic_chain(old, condition(old, frozen, obs), chain)
            adv = critics.advantage(obs, executed_actions(old, res.actions))
            adv = ((adv - adv.mean()) / (adv.std() + 1e-6)).clamp(-cfg.advantage_clip, cfg.advantage_clip)
        m = ppo.update(obs, res.chain, res.log_probs, adv)
        sched.step()
        metrics.append(m)
        last = u + 1 == cfg.improve_steps
        if (u + 1) % cfg.gate_every == 0 or last:
            if gate is None:
                old.load_state_dict(policy.state_dict())
                continue
            d = gate.check(policy)
            decisions.append(asdict(d))
            if not d.accepted:
                opt.state.clear()           # the moments belonged to the reverted weights
            bar.set_postfix(am_q=f"{gate.reference:.3f}", accepted=sum(x["accepted"] for x in decisions),
                            kl=f"{m['approx_kl']:.2e}")
    bar.close()
    mean = {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]} if metrics else {}
    return {"updates": cfg.improve_steps, "ppo": mean, "gate": decisions,
            "accepted": sum(d["accepted"] for d in decisions), "am_q": gate.reference if gate else None}


class RolloutCollector:
    """Records twin episodes of a policy into <out>/rollouts.zarr and returns their chunk transitions."""

    def __init__(self, ctx: FinetuneContext, spec, gamma: float, reward: str,
                 frozen: FrozenFeatures | None = None) -> None:
        from robot_rl.data.episode_store import EpisodeStore
        from robot_rl.sim.gym_tasks import GymTaskEnv, stream_specs

        probe = ctx.make_env()
        self.task = probe.task_id if isinstance(probe, GymTaskEnv) else probe.task.name
        self.store = EpisodeStore.create(ctx.out / "rollouts.zarr", stream_specs(probe), exist_ok=True)
        probe.close()
        self.ctx, self.spec, self.gamma, self.reward, self.frozen = ctx, spec, gamma, reward, frozen
        self.env_steps = 0

    def collect(self, policy, episodes: int, seed: int, note: str) -> tuple[Transitions, float]:
        from robot_rl.learning.evaluate import evaluate

        first = len(self.store)
        with EpisodeWriter(self.store) as w:
            r = evaluate(policy, self.ctx.make_env, self.spec, episodes, seed=seed, writer=w,
                         meta={"task": self.task, "rig": "twin", "notes": note}, progress=self.ctx.progress)
        self.store.refresh()
        self.env_steps += r.env_steps
        t = store_transitions(self.store, self.spec, self.gamma, episodes=range(first, len(self.store)),
                              reward="success" if self.reward == "sparse" else "reward", stride=1,
                              features=self.frozen)
        return t, r.success_rate


def run(ctx: FinetuneContext) -> FinetuneResult:
    cfg = dataclass_from_dict(OfflineConfig, ctx.config, "finetune offline")
    base = ctx.base
    if base is None or getattr(base, "kind", None) != "diffusion":
        raise ConfigError(f"finetune algo=offline improves a diffusion policy through its denoising chain; "
                          f"policy= is a {getattr(base, 'kind', None)!r} policy")
    if ctx.store is None:
        raise ConfigError("finetune algo=offline needs prior data: store=<episode store> (or a base trained on one)")
    if cfg.rounds > 1 and ctx.make_env is None:
        raise ConfigError(f"finetune algo=offline offline.rounds={cfg.rounds}: collecting rollouts between rounds "
                          f"needs a twin task (task=...); use offline.rounds=1 on robot data")
    device = resolve_device(ctx.device)
    torch.manual_seed(ctx.seed)
    gamma, reward = ctx.online.gamma, ctx.online.reward
    spec = base.spec
    base = base.to(device).eval().requires_grad_(False)
    frozen = frozen_features(base)
    t0 = time.monotonic()

    data = store_transitions(ctx.store, spec, gamma, reward="success" if reward == "sparse" else "reward",
                             stride=1, progress=ctx.progress, features=frozen)
    if len(data) == 0:
        raise ConfigError(f"{ctx.store.path}: no transitions for the policy's spec (empty store?)")
    starts = [episode_starts(data)]
    features = ChunkFeatures(view_spec(base), base.normalizer)
    critics = IQLCritics(features, cfg.iql()).to(device)
    dynamics = DynamicsEnsemble(features, DynamicsConfig(cfg.dynamics_models, cfg.dynamics_hidden)).to(device)
    policy = copy.deepcopy(base).requires_grad_(True)
    policy.encoder.cameras.requires_grad_(False)     # its features are the cached ones (frozen)
    collector = None
    if ctx.make_env is not None and cfg.rollout_episodes:
        collector = RolloutCollector(ctx, spec, gamma, reward, frozen)
    rounds_dir = ctx.out / "rounds"
    q_config = {"n": cfg.n_q, "hidden": list(cfg.critic_hidden), "layer_norm": True}
    base_success = ctx.evaluate(base) if ctx.evaluate is not None else None
    demo_success = float(np.mean([data.success[data.episodes == e][0] for e in np.unique(data.episodes)]))
    curve = [CurvePoint(0, 0, 0, base_success, demo_success, 0.0)] if base_success is not None else []
    summary: list[dict[str, Any]] = []
    updates = episodes = 0
    print(f"offline: {len(data)} transitions from {len(np.unique(data.episodes))} episodes "
          f"({demo_success:.0%} of the episodes successful); base success {base_success}")
    validation_seed = 1_000_000 + 100_000 * ctx.seed       # the same rollout seeds every round, apart from eval's

    def add_rollouts(p, note: str) -> tuple[Transitions, float]:
        new, rate = collector.collect(p, cfg.rollout_episodes, validation_seed, note)
        new.episodes = new.episodes + int(data.episodes.max()) + 1       # ids stay unique across stores
        starts.append(episode_starts(new))
        return Transitions.concat([data, new]), rate

    accepted, accepted_rate, accepted_success = copy.deepcopy(policy.state_dict()), -1.0, base_success
    base_rollout_rate = None
    if collector is not None and cfg.validate_rounds:
        data, accepted_rate = add_rollouts(base, "offline base rollouts")
        base_rollout_rate = accepted_rate

    for r in range(cfg.rounds):
        seed = ctx.seed * 1000 + r
        batches = TransitionBatches(data, device, seed)
        critic_m = critics.fit(batches, cfg.critic_steps if r == 0 else cfg.critic_steps_per_round,
                               ctx.progress, f"round {r} iql")
        round_m: dict[str, Any] = {"round": r, "transitions": len(data), "critics": critic_m}
        env_steps = collector.env_steps if collector else 0
        gate = None
        if cfg.gate and cfg.improve_steps:
            round_m["dynamics"] = dynamics.fit(batches, cfg.dynamics_steps if r == 0 else cfg.dynamics_steps // 2,
                                               ctx.progress)
            start_obs = _start_batch(starts, cfg.ope_starts, device, seed)
            gate = OPEGate(policy, lambda p: am_q(p, critics.q_value, dynamics, start_obs, cfg.ope_horizon, seed,
                                                  frozen), cfg.gate_threshold)
            round_m["am_q_before"] = gate.reference
        round_m.update(improve(policy, critics, batches, gate, cfg, ctx.progress, f"round {r} improve", frozen))
        updates += cfg.improve_steps
        policy.eval()

        out = rounds_dir / str(r)
        round_m["policy"] = str(save_policy(policy, out / "policy", meta={"stage": "offline", "round": r}))
        bon = None
        if cfg.best_of_n:
            bon = BestOfNPolicy(policy, copy.deepcopy(critics.q_target), q_config, cfg.best_of_n)
            round_m["best_of_n"] = str(save_policy(bon, out / "best_of_n", meta={"stage": "offline", "round": r}))
        if ctx.evaluate is not None:
            round_m["success_rate"] = ctx.evaluate(policy)
            if bon is not None:
                round_m["best_of_n_success_rate"] = ctx.evaluate(bon)
        if collector is not None and (cfg.validate_rounds or r + 1 < cfg.rounds):
            data, rate = add_rollouts(policy, f"offline round {r} rollouts")
            round_m["rollout_success_rate"] = rate
            if cfg.validate_rounds:     # the round gate: twin rollouts, not the learned model, decide
                round_m["round_accepted"] = rate >= accepted_rate
                if round_m["round_accepted"]:
                    accepted, accepted_rate, accepted_success = (copy.deepcopy(policy.state_dict()), rate,
                                                                 round_m.get("success_rate"))
                else:
                    policy.load_state_dict(accepted)
        (out / "eval.json").write_text(json.dumps(round_m, indent=1, default=float))
        summary.append(round_m)
        exported = round_m.get("best_of_n_success_rate" if cfg.export == "best_of_n" else "success_rate")
        if exported is not None:
            curve.append(CurvePoint(env_steps, updates, episodes, exported,
                                    round_m.get("rollout_success_rate", float("nan")), time.monotonic() - t0))
        print(f"offline round {r}: success {round_m.get('success_rate')} (best-of-{cfg.best_of_n} "
              f"{round_m.get('best_of_n_success_rate')}), OPE gate accepted {round_m['accepted']} of "
              f"{len(round_m['gate'])}, AM-Q {round_m.get('am_q_before')} -> {round_m['am_q']}; rollouts "
              f"{round_m.get('rollout_success_rate')} (round accepted: {round_m.get('round_accepted')})")

    final = policy       # the last accepted round's weights when rounds are validated
    final_success = accepted_success if cfg.validate_rounds and collector is not None else \
        summary[-1].get("success_rate")
    if cfg.export == "best_of_n":
        final = BestOfNPolicy(policy, copy.deepcopy(critics.q_target), q_config, cfg.best_of_n)
        final_success = ctx.evaluate(final) if ctx.evaluate is not None else None
    path = save_finetuned(ctx, final, "offline", cfg, meta={"stage": "offline"})
    metrics = {"base_success_rate": base_success, "base_rollout_success_rate": base_rollout_rate,
               "final_success_rate": final_success, "rounds": summary,
               "rollout_env_steps": collector.env_steps if collector else 0, "config": asdict(cfg)}
    if curve and final_success is not None:
        curve.append(CurvePoint(collector.env_steps if collector else 0, updates, episodes, final_success, float("nan"),
                                time.monotonic() - t0))
    return FinetuneResult(final, path, curve, metrics)


def _start_batch(starts: list[dict[str, np.ndarray]], n: int, device, seed: int) -> dict[str, torch.Tensor]:
    """n start observations: every episode start, cycled (each copy gets its own sampling noise in am_q)."""
    obs = {k: np.concatenate([s[k] for s in starts]) for k in starts[0]}
    m = len(next(iter(obs.values())))
    idx = np.random.default_rng(seed).permutation(np.resize(np.arange(m), max(n, 1)))
    return {k: torch.as_tensor(v[idx], device=device) for k, v in obs.items()}
