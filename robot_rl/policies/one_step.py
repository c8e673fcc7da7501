"""OneStepPolicy: the distilled student, (obs, noise) -> action chunk in one denoiser forward.

Same encoder and denoiser classes as its DiffusionPolicy teacher, evaluated at the fixed timestep
T - 1 (the teacher's noisiest), so a teacher's weights are a meaningful warm start. Distillation
(RL-100 style) regresses `forward(cond, noise)` onto the teacher's K-step DDIM output from the same noise.
"""

from __future__ import annotations

import torch

from robot_rl.policies.base import ChunkPolicy


class OneStepPolicy(ChunkPolicy):
    kind = "one_step"

    @property
    def timestep(self) -> int:
        return self.cfg.num_train_timesteps - 1

    def forward(self, global_cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """(B, C) condition, (B, horizon, Da) noise -> (B, horizon, Da) normalized actions (unclipped, for losses)."""
        t = torch.full((noise.shape[0],), self.timestep, dtype=torch.long, device=noise.device)
        return self.denoiser(noise, t, global_cond)

    def sample_actions(self, global_cond: torch.Tensor, init_noise: torch.Tensor | None = None,
                       generator: torch.Generator | None = None, **_: object) -> torch.Tensor:
        B = global_cond.shape[0]
        noise = self.make_noise(B, generator) if init_noise is None else self.check_noise(init_noise, B)
        actions = self(global_cond, noise)
        return actions.clamp(-1.0, 1.0) if self.cfg.clip_sample else actions

    @staticmethod
    def from_teacher(teacher: ChunkPolicy) -> "OneStepPolicy":
        """A student with the teacher's spec, config, normalizer and (copied) encoder + denoiser weights."""
        normalizer = type(teacher.normalizer).from_flat(teacher.spec, teacher.normalizer.flat())
        student = OneStepPolicy(teacher.spec, teacher.cfg, normalizer)
        student.load_state_dict(teacher.state_dict())
        return student.to(teacher.device)
