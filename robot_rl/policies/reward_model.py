"""Success classifier for real-robot rewards: the policy's observation encoder (cameras + proprio, one
step) and a linear head giving the logit of "the task is done in this frame". Saved like a policy
(safetensors + YAML), with its spec, normalizer and decision threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from robot_rl.core.checkpoint import WEIGHTS, check_shapes, load_checkpoint, save_checkpoint
from robot_rl.core.errors import CheckpointError
from robot_rl.core.spec import PolicySpec
from robot_rl.policies.model_config import PolicyConfig
from robot_rl.policies.encoders import ObsEncoder
from robot_rl.policies.normalizer import Normalizer
from robot_rl.policies.observation_tensors import batch_obs


class RewardModel(nn.Module):
    kind = "reward_classifier"

    def __init__(self, spec: PolicySpec, cfg: PolicyConfig | None = None, normalizer: Normalizer | None = None,
                 threshold: float = 0.5) -> None:
        super().__init__()
        self.spec, self.cfg = spec, cfg or PolicyConfig()
        self.normalizer = normalizer if normalizer is not None else Normalizer(spec)
        self.encoder = ObsEncoder(spec, self.cfg)
        self.head = nn.Sequential(nn.Linear(self.encoder.out_dim, 64), nn.Mish(), nn.Linear(64, 1))
        self.threshold = float(threshold)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, obs: Mapping[str, Any]) -> torch.Tensor:
        """Raw obs {key: (B, 1, *shape)} (images uint8 HWC/CHW or float) -> (B,) logits."""
        x = batch_obs(self.spec, obs, self.device)
        x = {k: self.normalizer.normalize(k, v[:, :1]) for k, v in x.items()}
        return self.head(self.encoder(x)).squeeze(-1)

    @torch.no_grad()
    def probability(self, obs: Mapping[str, Any]) -> torch.Tensor:
        was = self.training
        self.eval()
        try:
            return torch.sigmoid(self(obs))
        finally:
            self.train(was)

    def save(self, path: str | Path, meta: Mapping[str, Any] | None = None) -> Path:
        config = {"reward_model": {"type": self.kind, "spec": self.spec.to_dict(), "model": self.cfg.to_dict(),
                                   "threshold": self.threshold}}
        return save_checkpoint(path, self.state_dict(), config, self.normalizer.flat(), meta)

    @staticmethod
    def load(path: str | Path, device: str | torch.device = "cpu") -> "RewardModel":
        ckpt = load_checkpoint(path)
        section = ckpt.config.get("reward_model")
        if not isinstance(section, dict) or section.get("type") != RewardModel.kind:
            raise CheckpointError(f"{Path(path) / 'config.yaml'}: no reward_model section; not a reward classifier")
        spec = PolicySpec.from_dict(section["spec"])
        model = RewardModel(spec, PolicyConfig.from_dict(section["model"]),
                            Normalizer.from_flat(spec, ckpt.normalizer, source=str(Path(path) / "normalizer.safetensors")),
                            float(section["threshold"]))
        check_shapes({k: tuple(v.shape) for k, v in model.state_dict().items()}, ckpt.weights, str(Path(path) / WEIGHTS))
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ckpt.weights.items()})
        return model.to(device).eval()
