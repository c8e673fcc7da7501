"""DSRL: reinforcement learning in a diffusion policy's latent noise space (Wagenmaker et al. 2025).

    robot-rl finetune algo=dsrl policy=<bc ckpt> task=lift [dsrl.<field>=<value> ...]

The base is a frozen black box, deterministic given its initial noise (DDIM, eta 0). The RL action is that
noise w (horizon x Da), bounded by max_noise * tanh; a SAC learner trains
    critic  Q(s, w): an ensemble over (observation history, noise) with LayerNorm (robot_rl.policies.critics),
            target r + d * min over a random subset of target heads at (s', w' ~ pi(s')) [- alpha log pi];
    actor   pi(w | s): maximizes the mean Q - alpha log pi, alpha tuned toward a target entropy;
at `utd` critic updates per collected chunk after `warmup_chunks` chunks of the initial actor. The base's
weights never change, so nothing about its behaviour is unlearned; the steered policy can only choose
among chunks the base can produce. Chunks a corrector took over are left out (their noise did not make
the executed actions).

Before training, the base is evaluated with its standard-normal noise, with noise sampled from the actor's
initial (bounded, tanh-squashed) distribution, which is the curve's first point, and from the actor's mode
w = 0; all three go into the result metrics. Exported: a NoiseSteeredPolicy (base + actor) that samples
its noise like the base does. With cameras, actor and critic read the base's frozen camera features (the
feature view, robot_rl.policies.frozen_features): frames arrive raw and are encoded once per frame before
the replay, which holds only flat features. The state (weights, optimizers, replay, counters) is saved at every episode
in <out>/train_state (robot_rl.learning.train_state.save_learner_state).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from robot_rl.core.config import dataclass_from_dict
from robot_rl.core.errors import CheckpointError, ConfigError
from robot_rl.learning.rl.context import FinetuneContext, FinetuneResult, save_finetuned
from robot_rl.learning.rl.denoising_ppo import executed_actions
from robot_rl.learning.rl.online import CurvePoint, OnlineProgress, run_online
from robot_rl.learning.rl.transitions import Transitions, feature_transitions
from robot_rl.learning.train_state import has_learner_state, load_learner_state, save_learner_state
from robot_rl.policies.critics import ChunkFeatures, QEnsemble
from robot_rl.policies.device import resolve_device
from robot_rl.policies.diffusion_policy import DiffusionPolicy
from robot_rl.policies.frozen_features import frozen_features, view_spec
from robot_rl.policies.noise_steered import NoiseActor, NoiseSteeredPolicy

REPLAY = "replay.safetensors"


@dataclass
class DSRLConfig:
    max_noise: float = 1.5             # |w| bound (tanh * max_noise), in units of the base's standard-normal noise
    utd: float = 10.0                  # critic updates per collected chunk (DSRL: 20; halved for CPU cost, docs/rl.md)
    warmup_chunks: int = 200           # chunks collected with the initial actor before updates start
    batch_size: int = 128
    actor_every: int = 1               # actor + temperature updates every this many critic updates
    actor_hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (256, 256)
    n_critics: int = 2                 # Q heads; the target is a min over a random subset of target_subset
    target_subset: int = 2
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    init_alpha: float = 0.01
    target_entropy: float | None = None  # None: -noise_dim / 2
    backup_entropy: bool = False       # subtract alpha log pi in the critic target (RLPD: no)
    tau: float = 0.005                 # target critic Polyak rate
    grad_clip: float = 10.0
    check_episodes: int = -1           # base-under-noise check episodes (-1: online.eval_episodes, 0: skip)
    resume: bool = True

    def __post_init__(self) -> None:
        self.actor_hidden = tuple(int(h) for h in self.actor_hidden)
        self.critic_hidden = tuple(int(h) for h in self.critic_hidden)
        if self.max_noise <= 0:
            raise ConfigError(f"dsrl.max_noise={self.max_noise}: must be > 0")
        if self.utd <= 0:
            raise ConfigError(f"dsrl.utd={self.utd}: must be > 0")
        for name in ("batch_size", "actor_every", "n_critics", "target_subset"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"dsrl.{name}={getattr(self, name)}: must be >= 1")
        if self.target_subset > self.n_critics:
            raise ConfigError(f"dsrl.target_subset={self.target_subset} exceeds n_critics={self.n_critics}")
        if self.warmup_chunks < 0 or self.init_alpha <= 0 or not 0 < self.tau <= 1:
            raise ConfigError(f"dsrl: warmup_chunks={self.warmup_chunks} must be >= 0, init_alpha={self.init_alpha} "
                              f"> 0, tau={self.tau} in (0, 1]")


class NoiseReplay:
    """Growable replay of noise-space transitions as flat tensors (normalized obs features, noise w)."""

    FIELDS = ("obs", "next_obs", "noise", "rewards", "discounts")

    def __init__(self) -> None:
        self.data: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.data["rewards"]) if self.data else 0

    def add(self, **rows: torch.Tensor) -> None:
        rows = {k: rows[k].detach().float().cpu() for k in self.FIELDS}
        self.data = {k: torch.cat([self.data[k], v]) if self.data else v for k, v in rows.items()}

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, len(self), (n,), generator=generator)
        return {k: v[idx].to(device) for k, v in self.data.items()}

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in self.data.items()}, str(tmp))
        tmp.replace(path)

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        try:
            data = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - any parse failure is a corrupt file
            raise CheckpointError(f"{path}: unreadable replay buffer ({e})") from None
        if set(data) != set(self.FIELDS):
            raise CheckpointError(f"{path}: replay fields {sorted(data)}, expected {sorted(self.FIELDS)}")
        self.data = data


class DSRL:
    """The OnlineAlgorithm of robot_rl.learning.rl.online: SAC over the initial noise of a frozen base."""

    def __init__(self, base: DiffusionPolicy, cfg: DSRLConfig, gamma: float = 0.99,
                 device: str | torch.device = "cpu", seed: int = 0, state_dir: str | Path | None = None) -> None:
        self.cfg, self.gamma = cfg, gamma
        device = resolve_device(device)
        base = base.to(device).eval().requires_grad_(False)
        self.spec = base.spec
        noise_shape = (self.spec.horizon, self.spec.action_dim)
        self.frozen = frozen_features(base)
        self.features = ChunkFeatures(view_spec(base), base.normalizer)
        actor = NoiseActor(self.features.obs_dim, noise_shape, cfg.actor_hidden, cfg.max_noise).to(device)
        self.policy = NoiseSteeredPolicy(base, actor)
        self.actor = actor
        self.noise_dim = actor.noise_dim
        self.critic = QEnsemble(self.features.obs_dim, self.noise_dim, cfg.n_critics, cfg.critic_hidden).to(device)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(cfg.init_alpha), device=device, requires_grad=True)
        self.target_entropy = -self.noise_dim / 2 if cfg.target_entropy is None else float(cfg.target_entropy)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.cpu_generator = torch.Generator().manual_seed(seed + 1)
        self.replay = NoiseReplay()
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.updates = 0
        self.seen = OnlineProgress()
        self.last_metrics: dict[str, float] = {}

    @property
    def device(self) -> torch.device:
        return self.policy.device

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    # ---- acting -------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.policy.reset()

    @torch.no_grad()
    def act(self, obs: Mapping[str, np.ndarray], explore: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Observation history {key: (n_obs, D), cameras (n_obs, H, W, C)} -> the base's executed raw actions
        (n_act, Da) from the actor's noise (sampled when exploring, else its mode), and extras {noise
        (horizon, Da)}."""
        view = self.policy.view({f.key: np.asarray(obs[f.key])[None] for f in self.spec.obs})
        w = self.policy.noise(view, deterministic=not explore, generator=self.generator, in_view=True)
        actions = executed_actions(self.policy.base, self.policy.chunks(view, w))
        return actions[0].cpu().numpy(), {"noise": w[0].cpu().numpy()}

    # ---- learning ----------------------------------------------------------------------------------
    def observe(self, transitions: Transitions) -> None:
        n = len(transitions)
        self.seen.env_steps += int(transitions.steps.sum())
        self.seen.transitions += n
        self.seen.episodes += 1
        keep = ~transitions.interventions
        if n and keep.any():
            if "noise" not in transitions.extras:
                raise ValueError("dsrl: transitions lack the 'noise' extras (the noise each chunk came from)")
            t = feature_transitions(transitions.select(keep), self.frozen).torch(self.device)
            with torch.no_grad():
                self.replay.add(obs=self.features.obs(t["obs"]), next_obs=self.features.obs(t["next_obs"]),
                                noise=t["extras"]["noise"].flatten(1), rewards=t["rewards"], discounts=t["discounts"])
        self.save_state()

    def allowed_updates(self, n_transitions: int) -> int:
        """utd critic updates per chunk collected after the warm-up chunks."""
        if len(self.replay) == 0:
            return self.updates
        return max(self.updates, int(self.cfg.utd * max(0, n_transitions - self.cfg.warmup_chunks)))

    def update(self) -> dict[str, float]:
        """One critic step (and every actor_every steps one actor + temperature step) on a replay batch."""
        cfg = self.cfg
        b = self.replay.sample(cfg.batch_size, self.cpu_generator, self.device)
        with torch.no_grad():
            w_next, logp_next = self.actor(b["next_obs"], generator=self.generator)
            q_next = self.target.subset_min(b["next_obs"], w_next.flatten(1), cfg.target_subset, self.cpu_generator)
            if cfg.backup_entropy:
                q_next = q_next - self.alpha * logp_next
            target = b["rewards"] + b["discounts"] * q_next
        q = self.critic(b["obs"], b["noise"])
        critic_loss = F.mse_loss(q, target.expand_as(q))
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.grad_clip)
        self.critic_opt.step()
        with torch.no_grad():
            for p, tp in zip(self.critic.parameters(), self.target.parameters()):
                tp.lerp_(p, cfg.tau)
        self.updates += 1
        m = {"critic_loss": float(critic_loss.detach()), "q_mean": float(q.detach().mean())}
        if self.updates % cfg.actor_every == 0:
            m |= self._actor_step(b["obs"])
        self.last_metrics = m
        return m

    def _actor_step(self, obs_flat: torch.Tensor) -> dict[str, float]:
        w, logp = self.actor(obs_flat, generator=self.generator)
        self.critic.requires_grad_(False)
        q = self.critic(obs_flat, w.flatten(1)).mean(0)
        self.critic.requires_grad_(True)
        actor_loss = (self.alpha.detach() * logp - q).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.actor.parameters(), self.cfg.grad_clip)
        self.actor_opt.step()
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        return {"actor_loss": float(actor_loss.detach()), "alpha": float(self.alpha.detach()),
                "entropy": float(-logp.detach().mean())}

    def export_policy(self) -> NoiseSteeredPolicy:
        return self.policy

    # ---- resume ------------------------------------------------------------------------------------
    def _optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, dict[str, torch.nn.Module]]]:
        return {"actor": (self.actor_opt, {"actor": self.actor}),
                "critic": (self.critic_opt, {"critic": self.critic, "target": self.target}),
                "alpha": (self.alpha_opt, {})}

    def save_state(self) -> None:
        """Weights, optimizers, temperature, replay and counters (everything observed so far)."""
        if self.state_dir is None:
            return
        counters = asdict(replace(self.seen, updates=self.updates, curve=[])) | {"log_alpha": float(self.log_alpha.detach())}
        save_learner_state(self.state_dir, self.updates, self._optimizers(), counters,
                           write_files=lambda d: self.replay.save(d / REPLAY))

    def load_state(self, out: str | Path) -> OnlineProgress | None:
        """Restore from state_dir if it holds a state; returns where run_online continues (None: fresh)."""
        if not has_learner_state(self.state_dir):
            return None
        c = load_learner_state(self.state_dir, self._optimizers())
        with torch.no_grad():
            self.log_alpha.fill_(float(c["log_alpha"]))
        self.replay.load(self.state_dir / REPLAY)
        self.updates = int(c["updates"])
        self.seen = OnlineProgress(int(c["env_steps"]), int(c["transitions"]), 0, int(c["episodes"]))
        return OnlineProgress(self.seen.env_steps, self.seen.transitions, self.updates, self.seen.episodes,
                              OnlineProgress.load_curve(out, self.seen.env_steps))


def check_base_noise(ctx: FinetuneContext, algo: DSRL, episodes: int) -> dict[str, float]:
    """Before training, on the evaluation seeds: the base with its own standard-normal noise, with the
    initial actor's bounded noise (sampled: what the exported policy does) and with the actor's mode w = 0."""
    from robot_rl.learning.evaluate import evaluate

    rates = {}
    for name, policy in (("standard_normal", algo.policy.base), ("actor_noise", algo.policy),
                         ("zero_noise", NoiseSteeredPolicy(algo.policy.base, algo.actor, deterministic=True))):
        torch.manual_seed(ctx.seed)
        rates[f"base_success_{name}"] = evaluate(policy, ctx.make_env, algo.spec, episodes, seed=ctx.online.eval_seed,
                                                 progress=False).success_rate
    return rates | {"check_episodes": episodes}


def run(ctx: FinetuneContext) -> FinetuneResult:
    """`robot-rl finetune algo=dsrl`: SAC in the base's noise space in the twin; the steered policy goes to
    <out>/policy."""
    if not isinstance(ctx.base, DiffusionPolicy):
        raise ConfigError(f"finetune algo=dsrl steers a diffusion policy; policy= is a "
                          f"{type(ctx.base).__name__} ({getattr(ctx.base, 'kind', '?')})")
    if ctx.make_env is None:
        raise ConfigError("finetune algo=dsrl collects its own rollouts: give task=<twin task>")
    cfg = dataclass_from_dict(DSRLConfig, ctx.config, "finetune dsrl")
    torch.manual_seed(ctx.seed)
    algo = DSRL(ctx.base, cfg, ctx.online.gamma, ctx.device, ctx.seed, state_dir=Path(ctx.out) / "train_state")
    start = algo.load_state(ctx.out) if cfg.resume else None
    metrics: dict[str, Any] = {}
    episodes = ctx.online.eval_episodes if cfg.check_episodes < 0 else cfg.check_episodes
    if start is None and episodes > 0:
        t0 = time.monotonic()
        metrics |= check_base_noise(ctx, algo, episodes)
        print(f"dsrl: base success with N(0, I) noise {metrics['base_success_standard_normal']:.0%}, with the "
              f"initial actor's noise (|w| <= {cfg.max_noise}) {metrics['base_success_actor_noise']:.0%}, from "
              f"w = 0 {metrics['base_success_zero_noise']:.0%} ({episodes} episodes)")
        if ctx.evaluate is not None and episodes == ctx.online.eval_episodes:   # the same evaluation: curve start
            start = OnlineProgress(curve=[CurvePoint(0, 0, 0, metrics["base_success_actor_noise"], math.nan,
                                                     time.monotonic() - t0)])
    elif start is not None:
        print(f"dsrl: resumed at {start.env_steps} env steps, {algo.updates} updates")
    curve = run_online(algo, ctx.make_env, ctx.online, ctx.out, ctx.evaluate, ctx.make_corrector,
                       progress=ctx.progress, start=start, make_success_fn=ctx.make_success_fn)
    path = save_finetuned(ctx, algo.policy, "dsrl", cfg,
                          meta={"updates": algo.updates, "env_steps": algo.seen.env_steps})
    metrics |= {"updates": algo.updates, "replay": len(algo.replay),
                **{f"last_{k}": v for k, v in algo.last_metrics.items()}}
    return FinetuneResult(policy=algo.policy, policy_path=path, curve=curve, metrics=metrics)
