"""Off-policy actor-critic over action chunks, the part `residual` (residual RL on a frozen base)
and `rlpd` (from scratch with the demos in the batch) share: one replay, one critic update, one learner state.

    data    chunk transitions folded into n-step returns at insert time; symmetric sampling: a
            prior_fraction of every batch from the prior buffer (store demos + interventions), the
            rest from the online buffer (robot_rl.learning.rl.replay)
    critic  QEnsemble with LayerNorm on (normalized obs history, normalized executed chunk);
            y = R_n + D_n * min over a random subset of `target_heads` target heads at (s_n, a'),
            a' the algorithm's target action at s_n; no entropy term in the backup (RLPD)
    UTD     no updates during the first `warmup_env_steps` env steps; then `utd` updates per chunk transition
            collected so far (allowed_updates() is the throttle run_online obeys), so the warm-up data is
            caught up on at once: those first updates train only the critic (recalibrating it on the
            prior and warm-up data before the actor follows its gradient), then `actor_delay` more

OffPolicyLearner is a part, not a base class: an algorithm builds it, builds its own actor, and writes its
own act() and update() (the actor loss included) from the learner's steps; nothing here calls back into
the algorithm except the `prepare` function it hands over (residual: base chunks as transition extras).
The learner state (networks, optimizers, counters) saves to <out>/learner and resumes with the replay
rebuilt from the prior store plus the run's own recorded episodes (<out>/online.zarr).
Pixels: with `frozen` (the base's frozen camera encoders, robot_rl.policies.frozen_features) every batch of
transitions is turned into the feature view on arrival (each frame encoded once), before `prepare`, so the
replay, the critic and the actor never hold a frame; act() encodes the raw history the same way.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

from robot_rl.core.errors import CheckpointError, ConfigError
from robot_rl.core.spec import PolicySpec
from robot_rl.learning.rl.context import FinetuneContext, FinetuneResult, save_finetuned
from robot_rl.learning.rl.online import OnlineProgress, run_online
from robot_rl.learning.rl.replay import SymmetricReplay, n_step_transitions
from robot_rl.learning.rl.transitions import SOURCES, Transitions, feature_transitions, store_transitions
from robot_rl.learning.train_state import PROGRESS, has_learner_state, load_learner_state, save_learner_state
from robot_rl.policies.critics import ChunkFeatures, QEnsemble
from robot_rl.policies.device import resolve_device
from robot_rl.policies.frozen_features import FrozenFeatures
from robot_rl.policies.normalizer import Normalizer

WARMUP_OVER = "_learner.warmup_over"      # actor_weights entry: the learner has left its warm-up

@dataclass
class OffPolicyConfig:
    batch_size: int = 256
    utd: float = 4.0                  # updates per chunk transition after the warm-up (ResFiT 4-8)
    warmup_env_steps: int = 2000      # env steps collected before the first update
    n_step: int = 3                   # chunk transitions folded into one critic target (ResFiT 3)
    prior_fraction: float = 0.5       # share of each batch from demos + interventions (RLPD 0.5)
    prior_success_only: bool = False  # prior data: all store episodes (failures teach the critic) or successes
    capacity: int = 1_000_000         # online buffer (rows are allocated lazily)
    critic_heads: int = 10            # RLPD 10
    target_heads: int = 2             # min over a random subset of this many target heads
    critic_hidden: tuple[int, ...] = (256, 256)
    actor_hidden: tuple[int, ...] = (256, 256)
    critic_lr: float = 3e-4
    actor_lr: float = 3e-4
    tau: float = 0.005                # target network soft update
    actor_every: int = 1              # actor update every this many critic updates
    actor_delay: int = 0              # critic-only updates after the warm-up catch-up, before the actor moves
    grad_clip: float = 0.0            # max gradient norm (0: off)
    save_every_episodes: int = 10     # learner state to <out>/learner every this many episodes
    record: bool = True               # online episodes into <out>/online.zarr (resume rebuilds the replay)
    resume: bool = True               # continue from <out>/learner when present
    log_every: int = 100              # TensorBoard scalars every this many updates (0: off)

    def __post_init__(self) -> None:
        self.critic_hidden = tuple(int(h) for h in self.critic_hidden)
        self.actor_hidden = tuple(int(h) for h in self.actor_hidden)
        for name in ("batch_size", "n_step", "critic_heads", "target_heads", "actor_every", "capacity"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{type(self).__name__}.{name}={getattr(self, name)}: must be >= 1")
        if self.target_heads > self.critic_heads:
            raise ConfigError(f"{type(self).__name__}.target_heads={self.target_heads} > critic_heads="
                              f"{self.critic_heads}")
        if self.utd < 0 or self.warmup_env_steps < 0 or self.actor_delay < 0:
            raise ConfigError(f"{type(self).__name__}: utd, warmup_env_steps and actor_delay must be >= 0")
        if not 0.0 <= self.prior_fraction <= 1.0:
            raise ConfigError(f"{type(self).__name__}.prior_fraction={self.prior_fraction}: must be in [0, 1]")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"{type(self).__name__}.tau={self.tau}: must be in (0, 1]")


class OffPolicyLearner:
    """Everything of an off-policy learner but its actor, as a part an algorithm owns (no hooks): the
    critic ensemble and its target, the replay, the counters and the UTD throttle, the learner state.

    An algorithm (residual, rlpd) builds one, then its actor, and hands the actor over with set_actor
    (the critic first, so a seed gives the same networks). Its own update() calls sample(), critic_update(),
    actor_due(), step() and finish_update(); its act() reads warming_up.
    """

    def __init__(self, spec: PolicySpec, normalizer: Normalizer, cfg: OffPolicyConfig, device="cpu",
                 seed: int = 0, gamma: float = 0.99, frozen: FrozenFeatures | None = None) -> None:
        """frozen: the frozen camera features of an image spec (required then)."""
        if spec.images and frozen is None:
            raise ConfigError(f"off-policy RL on cameras {[f.key for f in spec.images]} needs the base policy's "
                              f"frozen encoder (robot_rl.policies.frozen_features)")
        self.spec, self.cfg, self.gamma, self.frozen = spec, cfg, gamma, frozen
        self.device = resolve_device(device)
        torch.manual_seed(seed)
        self.features = ChunkFeatures(frozen.view if frozen else spec, normalizer).to(self.device)
        O, A = self.features.obs_dim, self.features.action_dim
        self.critic = QEnsemble(O, A, cfg.critic_heads, cfg.critic_hidden, layer_norm=True).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.replay = SymmetricReplay(cfg.capacity, cfg.prior_fraction)
        self.rng = np.random.default_rng(seed)
        self.subset_gen = torch.Generator().manual_seed(seed)
        self.env_steps = self.transitions = self.updates = self.episodes = 0
        self.warmup_transitions: int | None = None if cfg.warmup_env_steps > 0 else 0
        self.state_dir: Path | None = None
        self.tb = None
        self.actor_metrics: dict[str, float] = {}

    def set_actor(self, actor: nn.Module, prepare: Callable[[Transitions], Transitions] = lambda t: t,
                  extra_state: dict[str, tuple[torch.optim.Optimizer, dict[str, nn.Module]]] | None = None) -> None:
        """The algorithm's actor network (an Adam optimizer at cfg.actor_lr is made for it); prepare: what
        every transition batch needs before the replay (residual: the base's chunks); extra_state: further
        optimizer + modules pairs saved with the learner state (rlpd's temperature)."""
        self.actor = actor.to(self.device)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.actor_lr)
        self.prepare, self.extra_state = prepare, extra_state or {}

    # ---- acting -----------------------------------------------------------------------------------
    @property
    def warming_up(self) -> bool:
        return self.warmup_transitions is None

    def obs_tensors(self, obs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Observation history {key: (n_obs, D) or camera frames (n_obs, H, W, C)} -> the view as tensors
        {key: (1, n_obs, D)} on the device (raw low-dim, camera features)."""
        if self.frozen is not None:
            return {k: v.to(self.device) for k, v in
                    self.frozen.obs({f.key: np.asarray(obs[f.key])[None] for f in self.spec.obs}).items()}
        return {f.key: torch.as_tensor(np.asarray(obs[f.key]), dtype=torch.float32, device=self.device)[None]
                for f in self.spec.obs}

    def raw_chunk(self, a: torch.Tensor) -> np.ndarray:
        """A normalized flat chunk (1, A) -> raw actions (n_act, Da)."""
        raw = self.features.normalizer.unnormalize(self.spec.action.key,
                                                   a.view(1, self.spec.n_action_steps, self.spec.action_dim))
        return raw[0].cpu().numpy()

    def actor_weights(self) -> dict[str, torch.Tensor]:
        """What an actor process needs (robot_rl.runtime.actor): the actor network (a base never changes)
        and whether the learner's warm-up is over (an actor never observes, so it learns it from here)."""
        weights = {k: v.detach().cpu() for k, v in self.actor.state_dict().items()}
        return weights | {WARMUP_OVER: torch.tensor(0 if self.warming_up else 1, dtype=torch.uint8)}

    def load_actor_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        weights = dict(weights)
        if int(weights.pop(WARMUP_OVER, 0)) and self.warming_up:
            self.warmup_transitions = 0           # explore from now on, as the learner's own loop would
        self.actor.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})

    # ---- data ---------------------------------------------------------------------------------------
    def observe(self, t: Transitions) -> None:
        """One finished online episode's chunk transitions."""
        self.env_steps += int(t.steps.sum())
        self.transitions += len(t)
        self.episodes += 1
        if self.warming_up and self.env_steps >= self.cfg.warmup_env_steps:
            self.warmup_transitions = self.transitions
        self.remember(t)
        if self.state_dir is not None and self.episodes % max(1, self.cfg.save_every_episodes) == 0:
            self.save_state(self.state_dir)

    def remember(self, t: Transitions) -> None:
        """An episode into the online replay buffer, counters untouched (observe, or a resumed learner
        refilling the buffer with episodes its restored counters already hold)."""
        self.replay.add_online(self.prepare(n_step_transitions(feature_transitions(t, self.frozen), self.cfg.n_step)))

    def load_prior(self, store, progress: bool = False) -> int:
        """Store episodes (demos of mixed quality, interventions) -> the prior buffer, every start step
        (stride 1); the critic learns on their executed actions. Returns the number of transitions."""
        t = store_transitions(store, self.spec, self.gamma, reward="success", stride=1, progress=progress,
                              features=self.frozen)
        if self.cfg.prior_success_only:
            t = t.select(t.success)
        if len(t) == 0:
            return 0
        self.replay.add_prior(self.prepare(n_step_transitions(t, self.cfg.n_step, stride=1)))
        return len(t)

    def load_online_store(self, store) -> int:
        """Recorded online episodes (this run's online.zarr) back into the online buffer, chunked as executed."""
        t = store_transitions(store, self.spec, self.gamma, reward="success", stride=self.spec.n_action_steps,
                              features=self.frozen)
        if len(t) == 0:
            return 0
        t.sources = np.where(t.interventions, SOURCES["intervention"], SOURCES["online"]).astype(np.uint8)
        self.replay.add_online(self.prepare(n_step_transitions(t, self.cfg.n_step)))
        return len(t)

    # ---- learning -----------------------------------------------------------------------------------
    def allowed_updates(self, n_transitions: int) -> int:
        """Total updates allowed after n_transitions online chunk transitions (the UTD throttle)."""
        return 0 if self.warming_up else int(self.cfg.utd * n_transitions)

    @property
    def actor_start(self) -> int:
        """Update index of the first actor update: after the critic-only catch-up on the warm-up data."""
        return int(self.cfg.utd * (self.warmup_transitions or 0)) + self.cfg.actor_delay

    def actor_due(self) -> bool:
        """Whether this update moves the actor (after actor_start, every actor_every updates)."""
        return self.updates >= self.actor_start and (self.updates - self.actor_start) % self.cfg.actor_every == 0

    def sample(self) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """A symmetric batch on the device and its normalized flat obs and next obs."""
        batch = self.replay.sample(self.cfg.batch_size, self.rng).torch(self.device)
        return batch, self.features.obs(batch["obs"]), self.features.obs(batch["next_obs"])

    def step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, params) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        opt.step()

    def critic_update(self, batch: dict, obs: torch.Tensor, next_obs: torch.Tensor,
                      next_action: torch.Tensor) -> dict[str, float]:
        """One step of the ensemble on y = R_n + D_n * min over a random subset of target heads at
        (s_n, next_action); next_action: the algorithm's target action at s_n (normalized, flat)."""
        with torch.no_grad():
            next_q = self.critic_target.subset_min(next_obs, next_action, self.cfg.target_heads, self.subset_gen)
            target = batch["rewards"] + batch["discounts"] * next_q
        q = self.critic(obs, self.features.action(batch["actions"]))
        critic_loss = (q - target).pow(2).mean(1).sum()
        self.step(self.critic_opt, critic_loss, self.critic.parameters())
        return {"critic_loss": critic_loss.item(), "q": q.mean().item(), "target": target.mean().item()}

    def actor_step(self, loss: Callable[[], tuple[torch.Tensor, dict[str, float]]]) -> None:
        """One actor step on loss() (computed with the critic frozen); its metrics are kept for every log line."""
        self.critic.requires_grad_(False)
        try:
            value, metrics = loss()
            self.step(self.actor_opt, value, self.actor.parameters())
        finally:
            self.critic.requires_grad_(True)
        self.actor_metrics = {"actor_loss": value.item()} | metrics

    def finish_update(self, metrics: dict[str, float]) -> dict[str, float]:
        """After the critic (and actor) step: soft target update, count, log. Returns all metrics."""
        metrics = metrics | self.actor_metrics      # the latest actor update's, so every log line has them
        with torch.no_grad():
            for p, tp in zip(self.critic.parameters(), self.critic_target.parameters()):
                tp.lerp_(p, self.cfg.tau)
        self.updates += 1
        if self.tb is not None and self.cfg.log_every and self.updates % self.cfg.log_every == 0:
            for k, v in metrics.items():
                self.tb.add_scalar(f"train/{k}", v, self.updates)
        return metrics

    # ---- learner state ----------------------------------------------------------------------------------
    def _parts(self) -> dict[str, tuple[torch.optim.Optimizer, dict[str, nn.Module]]]:
        return {"critic": (self.critic_opt, {"critic": self.critic, "target": self.critic_target}),
                "actor": (self.actor_opt, {"actor": self.actor}), **self.extra_state}

    def save_state(self, directory: str | Path, learner: Mapping[str, int] | None = None) -> Path:
        """Networks + optimizers and counters (robot_rl.learning.train_state.save_learner_state); `learner`:
        the actor/learner server's own counters (robot_rl.runtime.learner), kept with them under "learner"."""
        return save_learner_state(directory, self.updates, self._parts(), {
            "env_steps": self.env_steps, "transitions": self.transitions, "updates": self.updates,
            "episodes": self.episodes, "warmup_transitions": self.warmup_transitions,
            "rng": self.rng.bit_generator.state, "subset_gen": self.subset_gen.get_state().tolist()}
            | ({"learner": dict(learner)} if learner is not None else {}))

    def load_state(self, directory: str | Path) -> OnlineProgress:
        progress = load_learner_state(directory, self._parts())
        try:
            self.env_steps, self.transitions = int(progress["env_steps"]), int(progress["transitions"])
            self.updates, self.episodes = int(progress["updates"]), int(progress["episodes"])
            self.warmup_transitions = progress["warmup_transitions"]
            self.rng.bit_generator.state = progress["rng"]
            self.subset_gen.set_state(torch.tensor(progress["subset_gen"], dtype=torch.uint8))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{Path(directory) / PROGRESS}: incomplete learner state ({e})") from None
        return OnlineProgress(self.env_steps, self.transitions, self.updates, self.episodes)


class UsesLearner:
    """Reads of an algorithm that are its OffPolicyLearner's (counters, data, throttle, state): an algorithm
    holding `self.learner` lists it as a base to answer run_online and the actor/learner split with them."""

    learner: OffPolicyLearner

    def reset(self) -> None:
        """An episode starts: an off-policy agent keeps no per-episode state."""

    def __getattr__(self, name: str):
        if name == "learner":            # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.learner, name)


def train_online(agent, ctx: FinetuneContext, cfg: OffPolicyConfig, name: str) -> FinetuneResult:
    """Prior data from ctx.store, resume from ctx.out/learner if present, run_online in the twin, save the
    learner state and the exported policy (ctx.out/policy). Shared by residual and rlpd."""
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.learning.rl.online_recorder import OnlineRecorder

    if ctx.make_env is None:
        raise ConfigError(f"finetune algo={name}: needs a twin task (task=...) to collect online data")
    out = Path(ctx.out)
    out.mkdir(parents=True, exist_ok=True)
    n_prior = agent.load_prior(ctx.store, progress=ctx.progress) if ctx.store is not None else 0
    state_dir, online_store = out / "learner", out / "online.zarr"
    start = None
    if cfg.resume and has_learner_state(state_dir):
        start = agent.load_state(state_dir)
        start.curve = OnlineProgress.load_curve(out, start.env_steps)
        if online_store.exists():
            agent.load_online_store(EpisodeStore.open(online_store))
        print(f"{name}: resuming at {start.env_steps} env steps, {start.updates} updates ({state_dir})")
    learner = agent.learner
    learner.state_dir = state_dir
    if cfg.log_every:
        from torch.utils.tensorboard import SummaryWriter

        learner.tb = SummaryWriter(str(out / "tb"))
    from robot_rl.sim.gym_tasks import task_label

    task_name = task_label(ctx.task) if ctx.task else ""
    recorder = OnlineRecorder(online_store, task=task_name) if cfg.record else None
    make_env = recorder.wrap(ctx.make_env) if recorder is not None else ctx.make_env
    try:
        curve = run_online(agent, make_env, ctx.online, out, ctx.evaluate, ctx.make_corrector, recorder,
                           ctx.progress, start, make_success_fn=ctx.make_success_fn)
    finally:
        if recorder is not None:
            recorder.close()
        if learner.tb is not None:
            learner.tb.close()
    agent.save_state(state_dir)
    return export_result(agent, ctx, cfg, name, curve, prior_transitions=n_prior)


def export_result(agent, ctx: FinetuneContext, cfg: OffPolicyConfig, name: str, curve: list,
                  **metrics) -> FinetuneResult:
    """Save the agent's exported policy (context.save_finetuned) and sum the run up."""
    policy = agent.export_policy()
    path = save_finetuned(ctx, policy, name, cfg, meta={"algo": name, "env_steps": agent.env_steps,
                                                         "updates": agent.updates})
    metrics = {"updates": agent.updates, "episodes": agent.episodes, "online_transitions": agent.transitions,
               "warmup_transitions": agent.warmup_transitions} | metrics
    return FinetuneResult(policy, path, curve, metrics)
