"""Imitation: train a diffusion policy on windows of an episode store (diffusion_policy recipe).

AdamW (lr 1e-4, betas 0.95/0.999, wd 1e-6), cosine schedule with warm-up, EMA weights, periodic
rollouts in the twin that select the best checkpoint by success rate (validation loss does not
track success), TensorBoard scalars, resume from `train_state/`, DistributedDataParallel when
launched with torchrun (gloo on CPU, nccl on GPU).

Output directory:
    checkpoints/latest, checkpoints/best   policy checkpoints (EMA weights)
    train_state/                           to resume: policy/ (optimizer, EMA, RNG), progress.yaml
    tb/                                    TensorBoard scalars
    curves.png, results.json               learning curves and final numbers
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.distributed as dist

from robot_rl.core.errors import ConfigError
from robot_rl.core.progress import progress_bar
from robot_rl.core.results import write_results
from robot_rl.core.spec import PolicySpec
from robot_rl.data.dataset import EpochBatches, batch_loader, endless_loader, make_datasets
from robot_rl.data.normalizer_stats import compute_stats
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.learning.evaluate import evaluate
from robot_rl.learning.train_state import OptimConfig, Optimization, config_with_optim, has_learner_state
from robot_rl.policies.model_config import PolicyConfig
from robot_rl.policies.device import resolve_device
from robot_rl.policies.diffusion_policy import DiffusionPolicy
from robot_rl.policies.io import save_policy
from robot_rl.policies.normalizer import Normalizer


@dataclass
class BCConfig:
    steps: int = 20_000
    batch_size: int = 256
    optim: OptimConfig = field(default_factory=OptimConfig)   # lr 1e-4, 500 warm-up steps, EMA
    val_ratio: float = 0.1            # whole episodes held out for validation loss
    success_only: bool = False        # train on successful episodes only
    num_workers: int = 2
    log_every: int = 50
    checkpoint_every: int = 1000
    eval_every: int = 2000            # rollouts in the twin; 0 disables
    eval_episodes: int = 10
    eval_seed: int = 50_000           # checkpoint selection's twin seeds (eval_seed + i): apart from the 100000+
                                      # of `robot-rl eval` and bench curves, so picking the best does not fit them
    seed: int = 0
    device: str = "auto"
    resume: bool = True               # continue from out/train_state if present
    max_minutes: float = 0.0          # wall-clock budget; training stops early when it is spent (0: none)

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "BCConfig":
        """From configs/train.yaml's `train:` section (optimizer fields flat or under `optim:`)."""
        return config_with_optim(BCConfig, d, "train")


@dataclass
class TrainResult:
    out: Path
    best: Path | None
    steps: int
    evals: list[dict] = field(default_factory=list)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _plot_curves(out: Path, losses: list[tuple[int, float]], evals: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if losses:
        s, l = zip(*losses)
        axes[0].semilogy(s, l)
    axes[0].set(xlabel="step", ylabel="train loss", title="diffusion loss")
    if evals:
        axes[1].plot([e["step"] for e in evals], [e["success_rate"] for e in evals], marker="o")
    axes[1].set(xlabel="step", ylabel="success rate", ylim=(-0.05, 1.05), title="twin rollouts")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)


def train_bc(store_path: str, spec: PolicySpec, model_cfg: PolicyConfig, cfg: BCConfig, out: Path,
             make_env: Callable[[], Any] | None = None, run_config: Mapping[str, Any] | None = None) -> TrainResult:
    """Train; `make_env` (a twin env factory) enables rollout evaluation and best-checkpoint selection."""
    rank, world = _distributed()
    main = rank == 0
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    device = resolve_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    store = EpisodeStore.open(store_path)
    success = True if cfg.success_only else None
    train_set, val_set = make_datasets(store, spec, val_ratio=cfg.val_ratio, seed=cfg.seed, success=success)
    if len(train_set) == 0:
        raise ConfigError(f"{store_path}: no training windows (episodes: {store.n_episodes}, success_only={cfg.success_only})")
    stats = compute_stats(store, spec, episodes=train_set.sampler.episodes)
    normalizer = Normalizer.from_stats(spec, stats.stats)
    policy = DiffusionPolicy(spec, model_cfg, normalizer).to(device)
    opt = Optimization(policy, cfg.optim, cfg.steps)
    model = torch.nn.parallel.DistributedDataParallel(policy) if world > 1 else policy

    out = Path(out)
    step, evals, best_success, losses = 0, [], -1.0, []
    state_dir = out / "train_state"
    if cfg.resume and has_learner_state(state_dir):
        counters = opt.load(state_dir, "policy")
        step, evals, best_success = int(counters["step"]), counters["evals"], float(counters["best_success"])
        if main:
            print(f"resumed from {state_dir} at step {step}")

    tb = None
    if main:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(out / "tb"))
    export = opt.export
    best_dir = out / "checkpoints" / "best"

    def checkpoint(name: str) -> Path:
        return save_policy(export(), out / "checkpoints" / name, config=run_config, meta={"step": step})

    epoch = step // max(1, len(train_set) // cfg.batch_size or 1)
    bar = progress_bar(total=cfg.steps, initial=step, desc="train bc", unit="step", enabled=main)
    t_last = t_start = time.perf_counter()
    out_of_time = lambda: cfg.max_minutes > 0 and time.perf_counter() - t_start > 60 * cfg.max_minutes  # noqa: E731
    batches = EpochBatches(train_set, cfg.batch_size, cfg.seed, epoch, rank, world)
    if step < cfg.steps and batches.per_epoch() == 0:
        raise ConfigError(f"{store_path}: {len(train_set)} training windows give no batch on {world} process(es)")
    for batch in endless_loader(batches, cfg.num_workers) if step < cfg.steps else ():
        policy.train()
        loss = model({k: v.to(device, non_blocking=True) for k, v in batch.items()})
        opt.step(loss)
        step += 1
        bar.update(1)
        if main and step % cfg.log_every == 0:
            value = float(loss.detach())
            losses.append((step, value))
            rate = cfg.log_every / max(1e-9, time.perf_counter() - t_last)
            t_last = time.perf_counter()
            tb.add_scalar("train/loss", value, step)
            tb.add_scalar("train/lr", opt.lr, step)
            tb.add_scalar("train/steps_per_s", rate, step)
            bar.set_postfix(loss=f"{value:.4f}")
        last = step >= cfg.steps or out_of_time()
        if main and cfg.eval_every and make_env is not None and (step % cfg.eval_every == 0 or last):
            result = evaluate(export(), make_env, spec, cfg.eval_episodes, seed=cfg.eval_seed, progress=False)
            evals.append({"step": step, **{k: v for k, v in result.to_dict().items() if k != "per_episode"}})
            tb.add_scalar("eval/success_rate", result.success_rate, step)
            if result.latency_ms_p50 is not None:
                tb.add_scalar("eval/latency_ms_p50", result.latency_ms_p50, step)
            if result.success_rate > best_success:
                best_success = result.success_rate
                save_policy(export(), best_dir, config=run_config,
                            meta={"step": step, "success_rate": result.success_rate})
            bar.write(f"step {step}: rollout success {result.success_rate:.0%} (best {best_success:.0%})")
        if main and (step % cfg.checkpoint_every == 0 or last):
            if val_set is not None and len(val_set) and step % cfg.checkpoint_every == 0:
                tb.add_scalar("val/loss", validation_loss(export(), val_set, cfg, device), step)
            checkpoint("latest")
            opt.save(state_dir, step, "policy", {"evals": evals, "best_success": best_success})
            _plot_curves(out, losses, evals)
        if last:
            break
    bar.close()
    if world > 1:
        dist.barrier()
    best = None
    if main:
        if not best_dir.exists():  # no rollouts: the final EMA weights are the result
            best = checkpoint("best")
        else:
            best = best_dir
        final = evals[-1] if evals else {}
        write_results(out / "results.json", stage="bc", steps=step, store=str(store_path),
                      best_checkpoint=str(best), best_success_rate=best_success if evals else None,
                      success_rate=final.get("success_rate"), episodes=final.get("episodes"),
                      env_steps=final.get("env_steps"), latency_ms_p50=final.get("latency_ms_p50"),
                      latency_ms_p99=final.get("latency_ms_p99"), evals=evals,
                      train_windows=len(train_set), train_episodes=len(train_set.sampler.episodes))
        tb.close()
    return TrainResult(out=out, best=best, steps=step, evals=evals)


@torch.no_grad()
def validation_loss(policy: DiffusionPolicy, val_set, cfg: BCConfig, device, max_batches: int = 8) -> float:
    policy.eval()
    loader = batch_loader(val_set, min(cfg.batch_size, len(val_set)), num_workers=0, seed=0)
    state = torch.get_rng_state()
    torch.manual_seed(0)  # same noise every time, so validation curves are comparable
    losses = [float(policy.compute_loss({k: v.to(device) for k, v in b.items()}))
              for _, b in zip(range(max_batches), loader)]
    torch.set_rng_state(state)
    return float(np.mean(losses))
