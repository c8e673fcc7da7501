"""`robot-rl finetune algo=filtered_bc`: the diffusion policy learns from its own successful episodes.

    robot-rl finetune algo=filtered_bc policy=<bc ckpt> task=lift [filtered_bc.<field>=<value> ...]

Filtered behaviour cloning (self-imitation with a 0/1 return weight): a policy-improvement step that only
needs the success signal, the twin's check or a learned detector. Acting: the policy samples every chunk
from fresh initial noise, which is all the exploration it needs (the sampled chunks already vary where
the demos did). Every online episode is recorded into <out>/online.zarr (the collect streams); those that
succeed join the training windows. Learning: `utd` DDPM-loss steps of the whole diffusion policy per
chunk transition collected, each on a batch drawn `prior_fraction` from the prior store's successful
demos and the rest from the run's own successful episodes (symmetric sampling, as RLPD does with demos),
through the BC optimizer recipe (AdamW, cosine decay over the run's budget, gradient clipping, EMA). The
exported and acting policy is the EMA copy. A successful interventions' episode (corrector=scripted) is a
successful episode like any other, so the corrector's actions are imitated where the policy went wrong;
`lead_in_steps` leaves out the windows that execute the policy's own steps just before a takeover (the
steps the corrector or operator judged wrong), and `intervention_fraction` draws that share of the run's
part of each batch from the windows that execute a takeover's steps.

The learner state (weights, EMA, optimizer, schedule, counters) is saved to <out>/train_state every
`save_every_episodes` episodes and at the end; a rerun with the same out= continues from it, its
successful episodes read back from <out>/online.zarr.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from robot_rl.core.config import dataclass_from_dict
from robot_rl.core.errors import ConfigError
from robot_rl.data.dataset import endless_batches, sampler_batches
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.sampler import WindowSampler
from robot_rl.learning.rl.context import FinetuneContext, FinetuneResult, save_finetuned
from robot_rl.learning.rl.online import OnlineProgress, run_online
from robot_rl.learning.rl.online_recorder import OnlineRecorder
from robot_rl.learning.rl.ppo import trainable_copy
from robot_rl.learning.rl.transitions import Transitions
from robot_rl.learning.train_state import OptimConfig, Optimization, has_learner_state
from robot_rl.policies.device import resolve_device
from robot_rl.policies.diffusion_policy import DiffusionPolicy
from robot_rl.sim.gym_tasks import task_label


@dataclass
class FilteredBCConfig:
    utd: float = 2.0                  # DDPM-loss steps per chunk transition collected
    batch_size: int = 128
    prior_fraction: float = 0.5       # share of each batch from the prior store's successful demos
    lr: float = 3e-4                  # fine-tuning the BC weights (BC itself starts at 1e-3 for the MLP model)
    grad_clip: float = 1.0
    ema_power: float = 0.75           # EMA of the weights (the exported and acting policy), as in BC
    ema_max_decay: float = 0.999
    warmup_env_steps: int = 0         # env steps of the base alone before the first update
    lead_in_steps: int = 0            # leave out windows executing the policy's last this-many steps before a
                                      # takeover (the scripted corrector's patience - 1 = 3 disagreeing steps)
    intervention_fraction: float = 0.0    # share of the run's rows from windows executing a takeover's steps
    save_every_episodes: int = 10     # learner state to <out>/train_state every this many episodes
    resume: bool = True               # continue from <out>/train_state when present

    def __post_init__(self) -> None:
        for name in ("utd", "warmup_env_steps", "lead_in_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"filtered_bc.{name}={getattr(self, name)}: must be >= 0")
        if not self.lr > 0:
            raise ConfigError(f"filtered_bc.lr={self.lr}: must be > 0")
        if self.batch_size < 2:
            raise ConfigError(f"filtered_bc.batch_size={self.batch_size}: must be >= 2")
        for name in ("prior_fraction", "intervention_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"filtered_bc.{name}={getattr(self, name)}: must be in [0, 1]")


def takeover_began(took: np.ndarray, episode: np.ndarray | None = None) -> np.ndarray:
    """Per step: whether it is the first of a takeover (a run of steps with the intervention flag `took`,
    within one episode; `episode`: each step's episode index when the steps of several are concatenated)."""
    took = np.asarray(took, bool).reshape(-1)
    prev = np.r_[False, took[:-1]]
    if episode is not None:
        prev &= np.r_[False, episode[1:] == episode[:-1]]
    return took & ~prev


def takeover_windows(sampler: WindowSampler, lead_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Per window of `sampler` (built with flag_streams=("intervention",)): whether the steps it executes
    include a takeover's (the corrector's), and whether they include one of the policy's `lead_in` steps
    just before a takeover began in the same episode."""
    grid = sampler.grid
    took = grid.low_dim["intervention"][:, 0] > 0.5
    episode = np.repeat(np.arange(len(grid.episodes)), grid.lengths())
    began = takeover_began(took, episode)
    lead = np.zeros_like(took)
    for k in range(1, lead_in + 1):
        lead[:-k] |= began[k:] & (episode[k:] == episode[:-k])
    rows = sampler.executed_rows()
    return took[rows].any(axis=1), (lead & ~took)[rows].any(axis=1)


class FilteredBC:
    """The OnlineAlgorithm of robot_rl.learning.rl.online: act with the EMA policy, imitate successes."""

    def __init__(self, base: DiffusionPolicy, cfg: FilteredBCConfig, total_updates: int, prior_store=None,
                 online_store: str | Path | None = None, device="cpu", seed: int = 0,
                 state_dir: str | Path | None = None) -> None:
        self.cfg, self.spec, self.seed = cfg, base.spec, seed
        self.policy = trainable_copy(base.to(resolve_device(device)))
        self.opt = Optimization(self.policy, OptimConfig(lr=cfg.lr, warmup_steps=0, grad_clip=cfg.grad_clip,
                                                         ema=True, ema_power=cfg.ema_power,
                                                         ema_max_decay=cfg.ema_max_decay), max(1, total_updates))
        self.prior = endless_batches(prior_store, self.spec, cfg.batch_size, seed, success=True) if prior_store else None
        self.online_store, self.online, self.took_over = (Path(online_store) if online_store else None), None, None
        self.online_successes = 0
        self.generator = torch.Generator(device=self.policy.device).manual_seed(seed)
        self.seen = OnlineProgress()
        self.updates = 0
        self.state_dir = Path(state_dir) if state_dir is not None else None

    # ---- acting: the EMA policy from fresh initial noise ------------------------------------------------
    def reset(self) -> None:
        pass

    @torch.no_grad()
    def act(self, obs: Mapping[str, np.ndarray], explore: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        policy = self.export_policy()
        # frames stay uint8 (the normalizer scales uint8 by 1/255 and takes floats as [0, 1] already)
        x = {k: torch.as_tensor(np.asarray(v), device=policy.device)[None] for k, v in obs.items()}
        start = self.spec.n_obs_steps - 1
        actions = policy.predict_action(x, policy.make_noise(1, self.generator))
        return actions[0, start:start + self.spec.n_action_steps].cpu().numpy(), {}

    # ---- data --------------------------------------------------------------------------------------
    def observe(self, t: Transitions) -> None:
        """A finished episode (already committed to the online store by the recorder): counted, and its
        windows join the training data when it succeeded."""
        self.seen.env_steps += int(t.steps.sum())
        self.seen.transitions += len(t)
        self.seen.episodes += 1
        if len(t) and bool(t.success[-1]):
            self.online_successes += 1
            self.reload_online()
        if self.state_dir is not None and self.seen.episodes % max(1, self.cfg.save_every_episodes) == 0:
            self.save_state()

    def reload_online(self) -> None:
        """The run's successful windows (less the takeovers' lead-ins), and those that execute a takeover."""
        if self.online_store is None or not self.online_store.exists():
            return
        store = EpisodeStore.open(self.online_store)
        selects = self.cfg.lead_in_steps > 0 or self.cfg.intervention_fraction > 0
        flags = ("intervention",) if selects and "intervention" in store.streams else ()
        sampler = WindowSampler(store, self.spec, success=True, flag_streams=flags)
        took_over = lead_in = np.zeros(len(sampler), bool)
        if flags:
            took_over, lead_in = takeover_windows(sampler, self.cfg.lead_in_steps)
        seed = self.seed + self.online_successes
        self.online = sampler_batches(sampler.keep(~lead_in), self.cfg.batch_size, seed)
        self.took_over = (sampler_batches(sampler.keep(took_over & ~lead_in), self.cfg.batch_size, seed)
                          if self.cfg.intervention_fraction > 0 else None)

    # ---- learning ----------------------------------------------------------------------------------
    def allowed_updates(self, n_transitions: int) -> int:
        """utd per chunk transition after the warm-up, once there is a successful window to learn from
        (a prior store without successes waits for the run's first success, then catches up)."""
        if self.seen.env_steps < self.cfg.warmup_env_steps or (self.prior is None and self.online is None):
            return 0
        return int(self.cfg.utd * n_transitions)

    def batch(self) -> dict[str, torch.Tensor]:
        """prior_fraction of the rows from the demos, the rest from the run's successes (all from whichever
        source exists while the other has nothing), intervention_fraction of those from windows that execute
        a takeover's steps once there are any."""
        n = self.cfg.batch_size
        n_prior = n if self.online is None else 0 if self.prior is None else round(n * self.cfg.prior_fraction)
        n_took = round((n - n_prior) * self.cfg.intervention_fraction) if self.took_over is not None else 0
        sources = ((self.prior, n_prior), (self.online, n - n_prior - n_took), (self.took_over, n_took))
        parts = [(b, k) for b, k in sources if b is not None and k > 0]
        if not parts:
            raise ConfigError("filtered_bc: no successful windows yet: give store=<demos> or a base that succeeds")
        rows = [k for _, k in parts]
        batches = [next(b) for b, _ in parts]
        return {k: torch.cat([b[k][:r] for b, r in zip(batches, rows)]).to(self.policy.device)
                for k in batches[0]}

    def update(self) -> dict[str, float]:
        self.policy.train()
        loss = self.policy.compute_loss(self.batch())
        self.opt.step(loss)
        self.updates += 1
        return {"bc_loss": float(loss.detach()), "lr": self.opt.lr}

    def export_policy(self) -> DiffusionPolicy:
        return self.opt.export().eval()

    # ---- learner state: the BC optimizer's (robot_rl.learning.train_state.Optimization.save) ---------------
    def save_state(self) -> None:
        self.opt.save(self.state_dir, self.updates, "policy", {
            "env_steps": self.seen.env_steps, "transitions": self.seen.transitions, "episodes": self.seen.episodes,
            "online_successes": self.online_successes, "generator": self.generator.get_state().tolist()})

    def load_state(self, out: str | Path) -> OnlineProgress | None:
        """Restore from state_dir if it holds a state; returns where run_online continues (None: fresh)."""
        if not has_learner_state(self.state_dir):
            return None
        c = self.opt.load(self.state_dir, "policy")
        self.updates, self.online_successes = int(c["step"]), int(c["online_successes"])
        self.generator.set_state(torch.tensor(c["generator"], dtype=torch.uint8))
        self.seen = OnlineProgress(int(c["env_steps"]), int(c["transitions"]), self.updates, int(c["episodes"]),
                                   OnlineProgress.load_curve(out, int(c["env_steps"])))
        self.reload_online()
        return self.seen


def run(ctx: FinetuneContext) -> FinetuneResult:
    if not isinstance(ctx.base, DiffusionPolicy):
        raise ConfigError(f"finetune algo=filtered_bc fine-tunes a diffusion policy; policy= is a "
                          f"{type(ctx.base).__name__} ({getattr(ctx.base, 'kind', '?')})")
    if ctx.make_env is None:
        raise ConfigError("finetune algo=filtered_bc collects its own episodes: give task=<twin task>")
    cfg = dataclass_from_dict(FilteredBCConfig, ctx.config, "finetune filtered_bc")
    torch.manual_seed(ctx.seed)
    out = Path(ctx.out)
    out.mkdir(parents=True, exist_ok=True)
    total = int(cfg.utd * ctx.online.env_steps / ctx.base.spec.n_action_steps) + 1
    algo = FilteredBC(ctx.base, cfg, total, ctx.store, out / "online.zarr", ctx.device, ctx.seed,
                      state_dir=out / "train_state")
    start = algo.load_state(out) if cfg.resume else None
    if start is not None:
        print(f"filtered_bc: resuming at {start.env_steps} env steps, {algo.updates} updates")
    recorder = OnlineRecorder(out / "online.zarr", task=task_label(ctx.task) if ctx.task else "")
    try:
        curve = run_online(algo, recorder.wrap(ctx.make_env), ctx.online, out, ctx.evaluate, ctx.make_corrector,
                           recorder, ctx.progress, start, make_success_fn=ctx.make_success_fn)
    finally:
        recorder.close()
    algo.save_state()
    policy = algo.export_policy()
    path = save_finetuned(ctx, policy, "filtered_bc", cfg, meta={"env_steps": algo.seen.env_steps,
                                                                "updates": algo.updates})
    return FinetuneResult(policy, path, curve, {"updates": algo.updates, "episodes": algo.seen.episodes,
                                                "online_successes": algo.online_successes})
