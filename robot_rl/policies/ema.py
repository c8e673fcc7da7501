"""Exponential moving average of model weights (diffusion_policy's warm-up schedule) on torch's AveragedModel."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def warmup_decay(updates: int, power: float, max_decay: float) -> float:
    """The decay after `updates` previous updates: min(max_decay, 1 - (1 + updates) ** -power)."""
    return min(max_decay, max(0.0, 1.0 - (1.0 + updates) ** -power))


class EMA:
    """Keeps `self.model`, an averaged copy of a model. After n previous updates the decay is
    min(max_decay, 1 - (1 + n) ** -power): 0 on the first update (a plain copy), then rising towards
    max_decay (power 0.75 reaches 0.999 after ~10k updates). Float buffers are averaged like the
    weights, non-float ones (counters) copied. get_ema_multi_avg_fn has a fixed decay, hence the
    schedule below as AveragedModel's multi_avg_fn."""

    def __init__(self, model: nn.Module, power: float = 0.75, max_decay: float = 0.9999):
        self.power, self.max_decay = power, max_decay

        @torch.no_grad()
        def average(ema: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
            if ema[0].dtype.is_floating_point:
                torch._foreach_lerp_(ema, current, 1.0 - warmup_decay(int(updates), power, max_decay))
            else:
                torch._foreach_copy_(ema, current)

        self.averaged = AveragedModel(model, multi_avg_fn=average, use_buffers=True)
        self.model = self.averaged.module.eval().requires_grad_(False)

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    @updates.setter
    def updates(self, value: int) -> None:
        self.averaged.n_averaged.fill_(int(value))

    def decay(self) -> float:
        return warmup_decay(self.updates, self.power, self.max_decay)

    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.model.load_state_dict(state["model"])
