"""The optimizer recipe shared by imitation and distillation, and its resumable state without pickle.

`OptimConfig` + `Optimization`: AdamW, cosine schedule with linear warm-up, gradient-norm clipping and
an optional EMA of the weights (diffusion_policy's recipe), one definition for robot_rl.learning.bc and
robot_rl.learning.one_step_distill.

`save_learner_state` / `load_learner_state`: the one resumable training state of every learner (BC,
distillation, off-policy residual/RLPD, DSRL, PPO): per optimizer one safetensors file
(`<part>/train_state.safetensors`: optimizer state, the modules it trains, RNG; the optimizer's
hyper-parameters as JSON in its header) and the learner's counters in `progress.yaml`, written into a
temporary directory that replaces the old one whole. Resuming never executes code from disk.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors.torch import load_file, save_file

from robot_rl.core.checkpoint import partial_dir, replace_directory
from robot_rl.core.config import dataclass_from_dict, load_yaml, save_yaml
from robot_rl.core.errors import CheckpointError, ConfigError
from robot_rl.policies.ema import EMA

FILE = "train_state.safetensors"
PROGRESS = "progress.yaml"   # a learner state's counters, written last: its presence marks a complete state

Parts = Mapping[str, "tuple[torch.optim.Optimizer, dict[str, torch.nn.Module]]"]


@dataclass
class OptimConfig:
    """AdamW (lr, betas, weight_decay), cosine decay after `warmup_steps` of linear warm-up, gradient
    norm clipped at `grad_clip` (0: off), and with `ema` an averaged copy of the weights (EMA power /
    max decay) that is what gets exported."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.95, 0.999)
    weight_decay: float = 1e-6
    warmup_steps: int = 500
    grad_clip: float = 1.0
    ema: bool = True
    ema_power: float = 0.75
    ema_max_decay: float = 0.9999

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)


OPTIM_FIELDS = tuple(f.name for f in fields(OptimConfig))


def config_with_optim(cls, d: Mapping[str, Any] | None, where: str):
    """Build training config dataclass `cls` (it has an `optim: OptimConfig` field) from a mapping in which
    the optimizer fields sit either flat beside the others (configs/train.yaml, configs/distill.yaml, and
    overrides like train.lr=...) or nested under `optim:`; unset ones keep cls's own optimizer defaults."""
    d = dict(d or {})
    nested = dict(d.pop("optim", None) or {})
    flat = {k: d.pop(k) for k in list(d) if k in OPTIM_FIELDS}
    both = sorted(set(flat) & set(nested))
    if both:
        raise ConfigError(f"{where}: {both} given both flat and under {where}.optim; give each once")
    default = next(f for f in fields(cls) if f.name == "optim").default_factory()
    values = {f.name: getattr(default, f.name) for f in fields(OptimConfig)} | flat | nested
    return dataclass_from_dict(cls, d | {"optim": dataclass_from_dict(OptimConfig, values, f"{where}.optim")}, where)


class Optimization:
    """The OptimConfig recipe over `module`'s trainable parameters for `total_steps` steps.

    step(loss): zero grads, backward, clip, AdamW step, schedule step, EMA update. `export()` is the
    module to save (the EMA copy when there is one). `modules` names what the training state holds."""

    def __init__(self, module: torch.nn.Module, cfg: OptimConfig, total_steps: int) -> None:
        self.module, self.cfg = module, cfg
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                          cosine_with_warmup(cfg.warmup_steps, total_steps))
        self.ema = EMA(module, cfg.ema_power, cfg.ema_max_decay) if cfg.ema else None

    def modules(self, name: str) -> dict[str, torch.nn.Module]:
        return {name: self.module} | ({"ema": self.ema.model} if self.ema else {})

    def export(self) -> torch.nn.Module:
        return self.ema.model if self.ema else self.module

    @property
    def lr(self) -> float:
        return self.schedule.get_last_lr()[0]

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        if self.ema:
            self.ema.update(self.module)

    def save(self, directory: str | Path, step: int, name: str, counters: Mapping[str, Any] | None = None,
             write_files: Callable[[Path], None] | None = None) -> Path:
        """The training state at `step` with save_learner_state: this optimizer and the module (as `name`, with
        its EMA copy) as one part; `counters` (plain YAML values) beside step and the EMA's update count."""
        counters = dict(counters or {}) | {"step": step, "ema_updates": self.ema.updates if self.ema else 0}
        return save_learner_state(directory, step, {name: (self.optimizer, self.modules(name))}, counters,
                                  write_files)

    def load(self, directory: str | Path, name: str) -> dict[str, Any]:
        """Restore what `save` wrote and put the schedule and EMA where they were; returns the counters."""
        counters = load_learner_state(directory, {name: (self.optimizer, self.modules(name))})
        step = int(counters["step"])
        if self.ema:
            self.ema.updates = int(counters["ema_updates"])
        resume_schedule(self.schedule, step)
        return counters


def _save_part(directory: Path, step: int, optimizer: torch.optim.Optimizer,
               modules: dict[str, torch.nn.Module]) -> Path:
    """One part of a learner state: the optimizer, the modules it trains and the RNG, at `step` (into the
    fresh directory save_learner_state swaps in whole)."""
    directory.mkdir(parents=True)
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for pid, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    for prefix, module in modules.items():
        for name, value in module.state_dict().items():
            tensors[f"{prefix}.{name}"] = value.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    header = {"step": step, "param_groups": opt["param_groups"]}
    save_file(tensors, str(directory / FILE), metadata={"train_state": json.dumps(header, default=list)})
    return directory / FILE


def _load_part(directory: Path, optimizer: torch.optim.Optimizer, modules: dict[str, torch.nn.Module]) -> None:
    """Restore optimizer, modules and RNG from a part `_save_part` wrote."""
    from safetensors import safe_open

    path = Path(directory) / FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: no training state to resume from")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads(f.metadata()["train_state"])
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure is a corrupt file
        raise CheckpointError(f"{path}: unreadable training state ({e})") from None
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    groups = header["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
        for prefix, module in modules.items():
            sub = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
            module.load_state_dict(sub)
    except (ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"{path}: does not match the model being trained ({e})") from None
    torch.set_rng_state(tensors["rng.torch"])


def save_learner_state(directory: str | Path, step: int, parts: Parts, counters: Mapping[str, Any],
                       write_files: Callable[[Path], None] | None = None) -> Path:
    """Write a learner's state to `directory`: per name in `parts` its optimizer + modules (`<name>/`),
    whatever `write_files(tmp_dir)` adds (a replay buffer), and `counters` (plain YAML values) in
    progress.yaml; all written beside `directory` first and swapped in whole, so a kill leaves the old state."""
    directory = Path(directory)
    tmp = partial_dir(directory)
    tmp.mkdir(parents=True)
    for name, (optimizer, modules) in parts.items():
        _save_part(tmp / name, step, optimizer, modules)
    if write_files is not None:
        write_files(tmp)
    save_yaml(dict(counters), tmp / PROGRESS)
    return replace_directory(tmp, directory)


def has_learner_state(directory: str | Path | None) -> bool:
    return directory is not None and (Path(directory) / PROGRESS).is_file()


def load_learner_state(directory: str | Path, parts: Parts) -> dict[str, Any]:
    """Restore every part saved by save_learner_state; returns the counters."""
    directory = Path(directory)
    if not has_learner_state(directory):
        raise CheckpointError(f"{directory / PROGRESS}: no learner state to resume from")
    counters = load_yaml(directory / PROGRESS)
    if not isinstance(counters, dict):
        raise CheckpointError(f"{directory / PROGRESS}: expected a mapping of counters, got {counters!r}")
    for name, (optimizer, modules) in parts.items():
        _load_part(directory / name, optimizer, modules)
    return counters


def cosine_with_warmup(warmup: int, total: int) -> Callable[[int], float]:
    """LR factor per step: linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def resume_schedule(schedule: torch.optim.lr_scheduler.LRScheduler, step: int) -> None:
    """Put an LR schedule built fresh at step 0 where it was after `step` optimizer steps."""
    schedule.last_epoch = step - 1
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended here
        warnings.simplefilter("ignore", UserWarning)
        schedule.step()
