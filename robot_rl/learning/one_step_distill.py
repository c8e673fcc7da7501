"""One-step distillation: a OneStepPolicy student from a teacher policy, compared with it in the twin.

mode=same_noise (RL-100 style; the default for DiffusionPolicy teachers)
    student = OneStepPolicy.from_teacher(teacher): a warm-started copy (same encoder + denoiser weights);
    with freeze_encoder the student's encoder stays equal to the teacher's, so both see one condition.
    For each batch of observation histories (store windows, or states the teacher visits in the twin):
        cond   = teacher.encode(obs)                                   (B, C)
        z      ~ N(0, I)                                               (B, horizon, Da)
        target = teacher.sample_actions(cond, z, K DDIM steps, eta 0)  (B, horizon, Da), no_grad, normalized
        loss   = MSE(student(cond, z), target)
mode=dagger (any teacher with reset() / act(obs) -> ActionChunk, e.g. base + residual after online RL)
    round r = 0..R-1: roll out the beta_r mixture (beta_r = beta_decay ** r, so round 0 is the teacher
    alone) in the twin, label every visited observation history with the teacher's executable actions,
    aggregate, then regress the student's executable slice onto the labels from fresh noise:
        loss = MSE(student(cond, z)[:, n_obs-1 : n_obs-1+n_act], normalize(labels))
    The student (cond, z) -> chunk learns to ignore z (the conditional mean of a stochastic teacher).

At the end, teacher and student run in the twin on the same fixed seeds (and the same torch noise
stream), and their batch-1 act() latency is timed on one observation history.

Output directory:
    checkpoints/student   the student (type one_step): `robot-rl eval policy=<out>/checkpoints/student`
    train_state/          to resume: student/ (optimizer, EMA, RNG), progress.yaml (+ dagger_buffer.safetensors)
    tb/                   TensorBoard scalars
    results.json          teacher vs student success on the same seeds, latency p50/p99, speed-up
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from robot_rl.core.progress import progress_bar

from robot_rl.core.errors import ConfigError
from robot_rl.core.results import latency_percentiles_ms, write_results
from robot_rl.learning.distill_data import ObsBuffer, collect
from robot_rl.learning.evaluate import evaluate
from robot_rl.learning.train_state import OptimConfig, Optimization, config_with_optim, has_learner_state
from robot_rl.policies.base import ChunkPolicy
from robot_rl.policies.device import resolve_device, time_calls
from robot_rl.policies.diffusion_policy import DiffusionPolicy
from robot_rl.policies.io import save_policy
from robot_rl.policies.one_step import OneStepPolicy

MODES = ("auto", "same_noise", "dagger")
OBS_SOURCES = ("auto", "store", "twin")
DAGGER_BUFFER = "dagger_buffer.safetensors"   # the labelled histories, saved with the training state
ROLLOUT_SEED_BASE = 1_000_000  # twin seeds of distillation rollouts; evaluation uses eval_seed (100000) + i


@dataclass
class DistillConfig:
    mode: str = "auto"                # same_noise | dagger | auto (same_noise for DiffusionPolicy teachers)
    obs_source: str = "auto"          # same_noise observations: store | twin | auto (the store when one is given)
    steps: int = 5000                 # gradient steps in total (dagger: split evenly over the rounds)
    batch_size: int = 256
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(warmup_steps=100, ema=False))  # ema: export EMA
    freeze_encoder: bool = True       # keep the warm-started encoder equal to the teacher's
    teacher_steps: int = 0            # K DDIM steps (eta 0) of the target; 0: the teacher's num_inference_steps
    twin_episodes: int = 20           # obs_source=twin: teacher episodes whose visited states are the data
    dagger_rounds: int = 5
    dagger_episodes: int = 5          # episodes rolled out per round
    dagger_beta_decay: float = 0.5    # beta_r = decay ** r: probability that a chunk comes from the teacher
    dagger_label_every: int = 1       # label a visited history every this many env steps
    num_workers: int = 2              # store DataLoader workers
    log_every: int = 50
    checkpoint_every: int = 1000      # same_noise: training state every this many steps (dagger: every round)
    eval_episodes: int = 20           # twin episodes per policy on seeds eval_seed + i; 0 disables
    eval_seed: int = 100_000
    latency_repeats: int = 200        # timed batch-1 act() calls per policy
    latency_threads: int = 1          # torch threads while timing; 0 keeps torch's setting
    probe_size: int = 256             # fixed observations for the before/after same-noise fidelity
    seed: int = 0
    device: str = "auto"
    resume: bool = True               # continue from out/train_state if present

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"distill.mode={self.mode!r}: expected one of {MODES}")
        if self.obs_source not in OBS_SOURCES:
            raise ConfigError(f"distill.obs_source={self.obs_source!r}: expected one of {OBS_SOURCES}")
        for name in ("steps", "batch_size", "dagger_rounds", "dagger_episodes", "dagger_label_every", "log_every",
                     "checkpoint_every", "latency_repeats", "probe_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"distill.{name}={getattr(self, name)}: must be >= 1")
        if not 0.0 <= self.dagger_beta_decay <= 1.0:
            raise ConfigError(f"distill.dagger_beta_decay={self.dagger_beta_decay}: must be in [0, 1]")
        if self.teacher_steps < 0:
            raise ConfigError(f"distill.teacher_steps={self.teacher_steps}: must be >= 0 (0: the teacher's own)")

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "DistillConfig":
        """From configs/distill.yaml's `distill:` section (optimizer fields flat or under `optim:`)."""
        return config_with_optim(DistillConfig, d, "distill")


@dataclass
class DistillResult:
    out: Path
    student: Path
    steps: int
    results: dict = field(default_factory=dict)


# ---- losses ------------------------------------------------------------------------------------------
def same_noise_loss(teacher: DiffusionPolicy, student: OneStepPolicy, obs: Mapping[str, torch.Tensor],
                    teacher_steps: int, freeze_encoder: bool, noise: torch.Tensor | None = None) -> torch.Tensor:
    """RL-100 distillation loss on raw obs {key: (B, n_obs, *shape)}: MSE between the student's one-step
    chunk and the teacher's `teacher_steps`-step DDIM (eta 0) chunk from the same noise (B, horizon, Da),
    both normalized. The teacher runs under no_grad; with freeze_encoder its condition is the student's too."""
    with torch.no_grad():
        cond = teacher.encode(obs)
        z = student.make_noise(cond.shape[0]) if noise is None else noise
        target = teacher.sample_actions(cond, z, num_inference_steps=teacher_steps, eta=0.0)
    student_cond = cond if freeze_encoder else student.encode(obs)
    return F.mse_loss(student(student_cond, z), target)


def dagger_loss(student: OneStepPolicy, obs: Mapping[str, torch.Tensor], labels: torch.Tensor,
                freeze_encoder: bool) -> torch.Tensor:
    """MSE between the student's executable slice [n_obs-1, n_obs-1+n_act) of a chunk from fresh noise and
    the teacher's executable actions labels (B, n_act, Da) raw, both normalized."""
    spec = student.spec
    start = spec.n_obs_steps - 1
    if freeze_encoder:
        with torch.no_grad():
            cond = student.encode(obs)
    else:
        cond = student.encode(obs)
    z = student.make_noise(cond.shape[0])
    pred = student(cond, z)[:, start:start + spec.n_action_steps]
    return F.mse_loss(pred, student.normalize_action(labels.to(student.device)))


@torch.no_grad()
def same_noise_error(teacher: DiffusionPolicy, student: ChunkPolicy, obs: Mapping[str, torch.Tensor],
                     teacher_steps: int, seed: int = 0) -> float:
    """Mean squared difference (normalized units) between the student's and the teacher's K-step DDIM
    chunks (both clipped, as act() runs them) on obs {key: (B, n_obs, *shape)} from fixed noise."""
    cond = teacher.encode(obs)
    gen = torch.Generator(device=teacher.device).manual_seed(seed)
    z = teacher.make_noise(cond.shape[0], gen)
    target = teacher.sample_actions(cond, z, num_inference_steps=teacher_steps, eta=0.0)
    return float(F.mse_loss(student.sample_actions(student.encode(obs), z), target))


# ---- optimization bookkeeping shared by both modes ------------------------------------------------------
class StudentOptimizer:
    """The shared optimizer recipe (robot_rl.learning.train_state.Optimization) over the student's trainable
    parameters, TensorBoard + tqdm, and the resumable state in out/train_state."""

    def __init__(self, student: OneStepPolicy, cfg: DistillConfig, out: str | Path, desc: str):
        self.student, self.cfg = student, cfg
        self.opt = Optimization(student, cfg.optim, cfg.steps)
        out = Path(out)
        self.state_dir = out / "train_state"
        self.step, self.extra, self.losses = 0, {}, []
        if cfg.resume and has_learner_state(self.state_dir):
            self.extra = self.opt.load(self.state_dir, "student")
            self.step = int(self.extra["step"])
            self.losses = [tuple(x) for x in self.extra["losses"]]
            print(f"resumed from {self.state_dir} at step {self.step}")
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(out / "tb"))
        self.bar = progress_bar(total=cfg.steps, initial=self.step, desc=desc, unit="step")

    @property
    def done(self) -> bool:
        return self.step >= self.cfg.steps

    def export(self) -> OneStepPolicy:
        return self.opt.export()

    def update(self, loss: torch.Tensor) -> None:
        self.opt.step(loss)
        self.step += 1
        self.bar.update(1)
        if self.step % self.cfg.log_every == 0 or self.step == 1:
            value = float(loss.detach())
            self.losses.append((self.step, value))
            self.tb.add_scalar("distill/loss", value, self.step)
            self.tb.add_scalar("distill/lr", self.opt.lr, self.step)
            self.bar.set_postfix(loss=f"{value:.5f}")

    def save_state(self, write_files: Callable[[Path], None] | None = None, **extra: Any) -> None:
        """The resumable state (train_state.save_learner_state), with what write_files(dir) adds to it."""
        self.extra.update(extra, losses=self.losses)
        self.opt.save(self.state_dir, self.step, "student", self.extra, write_files)

    def close(self) -> None:
        self.bar.close()
        self.tb.close()


# ---- the two modes -------------------------------------------------------------------------------------
def distill_same_noise(teacher: DiffusionPolicy, student: OneStepPolicy, batches: Iterator[Mapping[str, torch.Tensor]],
                       cfg: DistillConfig, out: Path) -> StudentOptimizer:
    """Same-noise regression for cfg.steps steps on `batches` of raw obs {key: (B, n_obs, *shape)}."""
    K = cfg.teacher_steps or teacher.cfg.num_inference_steps
    teacher.eval().requires_grad_(False)
    opt = StudentOptimizer(student, cfg, out, "distill same-noise")
    while not opt.done:
        obs = {k: v.to(student.device, non_blocking=True) for k, v in next(batches).items()}
        student.train()
        loss = same_noise_loss(teacher, student, obs, K, cfg.freeze_encoder)
        opt.update(loss)
        if opt.step % cfg.checkpoint_every == 0 or opt.done:
            opt.save_state()
    return opt


def distill_dagger(teacher, student: OneStepPolicy, make_env: Callable[[], Any], cfg: DistillConfig,
                   out: Path) -> tuple[StudentOptimizer, ObsBuffer]:
    """DAgger over the teacher's policy interface; the state is saved at the end of every round."""
    spec = student.spec
    opt = StudentOptimizer(student, cfg, out, "distill dagger")
    buffer = ObsBuffer(spec)
    start_round = int(opt.extra.get("round", 0))
    if start_round > 0:
        buffer.load(opt.state_dir / DAGGER_BUFFER)
    steps_per_round = math.ceil(cfg.steps / cfg.dagger_rounds)
    gen = torch.Generator().manual_seed(cfg.seed)
    rounds = list(opt.extra.get("rounds", []))
    for r in range(start_round, cfg.dagger_rounds):
        beta = cfg.dagger_beta_decay ** r
        seed = ROLLOUT_SEED_BASE + cfg.seed * 10_000 + r * cfg.dagger_episodes
        stats = collect(teacher, opt.export() if beta < 1.0 else None, make_env, spec, cfg.dagger_episodes, seed,
                        beta, buffer, label=True, label_every=cfg.dagger_label_every,
                        rng=np.random.default_rng(seed))
        rounds.append({"round": r, "beta": beta, "buffer": len(buffer), **stats})
        opt.tb.add_scalar("dagger/rollout_success_rate", stats["success_rate"], opt.step)
        opt.tb.add_scalar("dagger/buffer", len(buffer), opt.step)
        opt.bar.write(f"round {r}: beta {beta:.2f}, rollout success {stats['success_rate']:.0%}, "
                      f"{len(buffer)} labelled histories")
        end = min(cfg.steps, (r + 1) * steps_per_round)
        while opt.step < end:
            obs, labels = buffer.sample(cfg.batch_size, gen)
            student.train()
            loss = dagger_loss(student, {k: v.to(student.device) for k, v in obs.items()}, labels,
                               cfg.freeze_encoder)
            opt.update(loss)
        opt.save_state(lambda state_dir: buffer.save(state_dir / DAGGER_BUFFER), round=r + 1, rounds=rounds)
    return opt, buffer


# ---- data ----------------------------------------------------------------------------------------------
def store_batches(store_path: str, spec, cfg: DistillConfig) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches of observation windows {key: (B, n_obs, *shape)} from the store (actions dropped)."""
    from robot_rl.data.dataset import endless_batches
    from robot_rl.data.episode_store import EpisodeStore

    batches = endless_batches(EpisodeStore.open(store_path), spec, cfg.batch_size, cfg.seed, cfg.num_workers)
    if batches is None:
        raise ConfigError(f"store={store_path}: no observation windows for the teacher's spec")
    for batch in batches:
        yield {k: v for k, v in batch.items() if k != spec.action.key}


def buffer_batches(buffer: ObsBuffer, cfg: DistillConfig) -> Iterator[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(cfg.seed)
    while True:
        yield buffer.sample(cfg.batch_size, gen)[0]


# ---- comparison ------------------------------------------------------------------------------------------
def time_act(policy, history: Mapping[str, np.ndarray], repeats: int, threads: int) -> dict[str, float | None]:
    """Batch-1 act() latency (ms p50/p99) on one observation history {key: (n_obs, *shape)}."""
    previous = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        device = getattr(policy, "device", torch.device("cpu"))
        times = time_calls(lambda: policy.act(history), repeats, device, warmup=3)
    finally:
        torch.set_num_threads(previous)
    return latency_percentiles_ms(times)


def compare(teacher, student: ChunkPolicy, make_env: Callable[[], Any] | None, history: Mapping[str, np.ndarray],
            cfg: DistillConfig) -> dict[str, dict]:
    """{"teacher": {...}, "student": {...}}: twin success on seeds eval_seed + i (same torch noise stream
    for both) and batch-1 act() latency p50/p99 (ms)."""
    rows = {}
    for name, policy in (("teacher", teacher), ("student", student)):
        row: dict[str, Any] = {}
        if make_env is not None and cfg.eval_episodes > 0:
            torch.manual_seed(cfg.seed)
            r = evaluate(policy, make_env, student.spec, cfg.eval_episodes, seed=cfg.eval_seed, progress=False)
            row |= {"success_rate": r.success_rate, "episodes": r.episodes, "env_steps": r.env_steps,
                    "mean_time_to_success_s": r.mean_time_to_success_s, "seeds": r.seeds,
                    "rollout_latency_ms_p50": r.latency_ms_p50, "rollout_latency_ms_p99": r.latency_ms_p99}
        row |= time_act(policy, history, cfg.latency_repeats, cfg.latency_threads)
        rows[name] = row
    return rows


# ---- entry point ------------------------------------------------------------------------------------------
def distill(teacher, cfg: DistillConfig, out: str | Path, make_env: Callable[[], Any] | None = None,
            store: str | None = None, student: OneStepPolicy | None = None,
            run_config: Mapping[str, Any] | None = None, teacher_path: str | None = None) -> DistillResult:
    """Distill `teacher` into a one-step student, save it to out/checkpoints/student, compare the two.

    teacher: a DiffusionPolicy (same_noise or dagger) or any policy with reset()/act() (dagger; then
    `student`, e.g. OneStepPolicy.from_teacher(<its base policy>), is the warm start).
    make_env: a twin env factory (needed for evaluation, obs_source=twin and dagger).
    """
    out = Path(out)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = resolve_device(cfg.device)
    mode = cfg.mode
    if mode == "auto":
        mode = "same_noise" if isinstance(teacher, DiffusionPolicy) else "dagger"
    if mode == "same_noise" and not isinstance(teacher, DiffusionPolicy):
        raise ConfigError(f"distill.mode=same_noise needs a DiffusionPolicy teacher (a K-step DDIM chain); got "
                          f"{type(teacher).__name__}: use distill.mode=dagger")
    unused = [f"distill.{f.name}={getattr(cfg, f.name)}" for f in fields(cfg)
              if f.name.startswith("dagger_") and getattr(cfg, f.name) != f.default]
    if mode == "same_noise" and unused:    # a DAgger setting that would silently do nothing
        raise ConfigError(f"{' '.join(unused)}: DAgger settings, but distill.mode={cfg.mode} runs same_noise for "
                          f"this {type(teacher).__name__} teacher; add distill.mode=dagger, or leave them out")
    if isinstance(teacher, ChunkPolicy):
        teacher = teacher.to(device).eval()
    if student is None:
        warm = teacher if isinstance(teacher, ChunkPolicy) else getattr(teacher, "base", None)  # composites
        if not isinstance(warm, ChunkPolicy):
            raise ConfigError(f"a {type(teacher).__name__} teacher needs a warm-start student "
                              f"(OneStepPolicy.from_teacher(<its base policy>))")
        student = OneStepPolicy.from_teacher(warm)
    student = student.to(device)
    spec = student.spec
    if cfg.freeze_encoder:
        student.encoder.requires_grad_(False)

    source = None
    if mode == "same_noise":
        source = cfg.obs_source if cfg.obs_source != "auto" else ("store" if store else "twin")
        if source == "store" and not store:
            raise ConfigError("distill.obs_source=store needs store=<episode store>")
    if (mode == "dagger" or source == "twin") and make_env is None:
        raise ConfigError(f"distill mode={mode} obs_source={source} rolls out in the twin: give task=<twin task>")

    K = cfg.teacher_steps or getattr(getattr(teacher, "cfg", None), "num_inference_steps", 0)
    buffer = None
    if mode == "same_noise":
        if source == "store":
            batches = store_batches(store, spec, cfg)
            probe = next(store_batches(store, spec, replace(cfg, batch_size=cfg.probe_size, num_workers=0)))
        else:
            buffer = ObsBuffer(spec)
            stats = collect(teacher, None, make_env, spec, cfg.twin_episodes, ROLLOUT_SEED_BASE + cfg.seed * 10_000,
                            1.0, buffer, label=False)
            print(f"collected {len(buffer)} observation histories from {stats['episodes']} teacher episodes "
                  f"(success {stats['success_rate']:.0%})")
            batches = buffer_batches(buffer, cfg)
            probe = buffer.first(cfg.probe_size)[0]
        probe = {k: v.to(device) for k, v in probe.items()}
        error_before = same_noise_error(teacher, student, probe, K, cfg.seed)
        opt = distill_same_noise(teacher, student, batches, cfg, out)
    else:
        error_before = None
        opt, buffer = distill_dagger(teacher, student, make_env, cfg, out)
        probe = {k: v.to(device) for k, v in buffer.first(cfg.probe_size)[0].items()}
    opt.close()
    final = opt.export().eval()
    error_after = same_noise_error(teacher, final, probe, K, cfg.seed) if isinstance(teacher, DiffusionPolicy) else None

    student_dir = save_policy(final, out / "checkpoints" / "student", config=run_config,
                              meta={"step": opt.step, "mode": mode, "teacher": str(teacher_path)})
    history = {k: v[0].cpu().numpy() for k, v in probe.items()}
    rows = compare(teacher, final, make_env, history, cfg)
    t, s = rows["teacher"], rows["student"]
    speedup = lambda q: t[q] / s[q] if t.get(q) and s.get(q) else None  # noqa: E731
    results = write_results(
        out / "results.json", stage="distill", mode=mode, obs_source=source, teacher=str(teacher_path),
        store=str(store) if store else None, student_checkpoint=str(student_dir), steps=opt.step,
        teacher_steps=K or None, freeze_encoder=cfg.freeze_encoder,
        loss_first=opt.losses[0][1] if opt.losses else None, loss_last=opt.losses[-1][1] if opt.losses else None,
        same_noise_mse_before=error_before, same_noise_mse_after=error_after,
        success_rate=s.get("success_rate"), latency_ms_p50=s["latency_ms_p50"], latency_ms_p99=s["latency_ms_p99"],
        teacher_success_rate=t.get("success_rate"), student_success_rate=s.get("success_rate"),
        teacher_latency_ms_p50=t["latency_ms_p50"], teacher_latency_ms_p99=t["latency_ms_p99"],
        student_latency_ms_p50=s["latency_ms_p50"], student_latency_ms_p99=s["latency_ms_p99"],
        speedup_p50=speedup("latency_ms_p50"), speedup_p99=speedup("latency_ms_p99"),
        eval_seed=cfg.eval_seed, eval_episodes=cfg.eval_episodes, latency_threads=cfg.latency_threads,
        teacher_eval=t, student_eval=s, dagger_rounds=opt.extra.get("rounds"),
        buffer_size=len(buffer) if buffer is not None else None)
    return DistillResult(out=out, student=student_dir, steps=opt.step, results=results)
