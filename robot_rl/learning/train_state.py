"""Resumable training state without pickle: optimizer, schedule position, EMA weights and RNG.

Tensors go to one safetensors file (`train_state.safetensors`), everything else (step, optimizer
hyper-parameters) to JSON in its header, so resuming never executes code from disk.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from robot_rl.core.errors import CheckpointError

FILE = "train_state.safetensors"


def save_train_state(directory: str | Path, step: int, optimizer: torch.optim.Optimizer,
                     modules: dict[str, torch.nn.Module], extra: dict[str, Any] | None = None) -> Path:
    """Atomically write the state needed to continue training at `step`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for pid, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    for prefix, module in modules.items():
        for name, value in module.state_dict().items():
            tensors[f"{prefix}.{name}"] = value.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    header = {"step": step, "param_groups": opt["param_groups"], "extra": extra or {}}
    tmp = directory / (FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"train_state": json.dumps(header, default=list)})
    os.replace(tmp, directory / FILE)
    return directory / FILE


def load_train_state(directory: str | Path, optimizer: torch.optim.Optimizer,
                     modules: dict[str, torch.nn.Module]) -> dict[str, Any]:
    """Restore optimizer, modules and RNG; returns the header (step, extra)."""
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
    return header


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
