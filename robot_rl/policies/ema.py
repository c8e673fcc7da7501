"""Exponential moving average of model weights (diffusion_policy's warm-up schedule)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps `self.model`, an averaged copy of a model. After n previous updates the decay is
    min(max_decay, 1 - (1 + n) ** -power): 0 on the first update (a plain copy), then rising towards
    max_decay (power 0.75 reaches 0.999 after ~10k updates). Non-float buffers are copied."""

    def __init__(self, model: nn.Module, power: float = 0.75, max_decay: float = 0.9999):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.power, self.max_decay = power, max_decay
        self.updates = 0

    def decay(self) -> float:
        return min(self.max_decay, max(0.0, 1.0 - (1.0 + self.updates) ** -self.power))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.decay()
        source = model.state_dict()
        for name, ema_value in self.model.state_dict().items():
            value = source[name].detach()
            if ema_value.dtype.is_floating_point:
                ema_value.lerp_(value.to(ema_value.dtype), 1.0 - d)
            else:
                ema_value.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"updates": self.updates, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.model.load_state_dict(state["model"])
