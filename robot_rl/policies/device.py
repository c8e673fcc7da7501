"""Torch device resolution ('auto' -> CUDA when present, else CPU) and timing calls on a device."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from robot_rl.core.errors import ConfigError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> torch.device. Asking for CUDA without one is an error."""
    if isinstance(name, torch.device):
        return name
    name = str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}: CUDA is not available on this machine; use device=auto or device=cpu")
    return device


def time_calls(fn: Callable[[], Any], repeats: int, device: torch.device, warmup: int = 1) -> np.ndarray:
    """Seconds per call, synchronizing CUDA so GPU time is counted."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return np.asarray(times)
