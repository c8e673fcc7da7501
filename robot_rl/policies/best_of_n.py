"""Best-of-N by Q (IDQL-style extraction): sample N chunks from a frozen base, execute the one the critic
scores highest (min over the Q heads of the executed part of each chunk).

No gradient step on the base: a cheap way to turn IQL critics into a better policy, and a baseline for the
RL-100 improvement. With cameras the base's condition and the critic read the base's frozen camera features
(robot_rl.policies.frozen_features), each frame encoded once per call. Saved as a composite checkpoint:
the Q heads in the directory itself, the base as a normal checkpoint in <path>/base.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from robot_rl.core.checkpoint import WEIGHTS, check_shapes, load_checkpoint
from robot_rl.core.config import to_plain
from robot_rl.core.errors import CheckpointError, ConfigError
from robot_rl.core.types import ActionChunk
from robot_rl.policies.critics import ChunkFeatures, QEnsemble
from robot_rl.policies.frozen_features import condition, frozen_features, view_spec
from robot_rl.policies.observation_tensors import batch_obs, single_obs


class BestOfNPolicy(nn.Module):
    """base: a policy with encode / sample_actions (DiffusionPolicy, OneStepPolicy); q: QEnsemble over the base's
    ChunkFeatures; q_config: its constructor arguments {n, hidden, layer_norm} (saved with it); n: candidates."""

    kind = "best_of_n"

    def __init__(self, base, q: QEnsemble, q_config: Mapping[str, Any], n: int = 16) -> None:
        super().__init__()
        if int(n) < 1:
            raise ConfigError(f"best_of_n.n={n}: must be >= 1")
        self.base, self.q, self.n = base, q, int(n)
        self.q_config = dict(to_plain(dict(q_config)))
        self.spec, self.normalizer = base.spec, base.normalizer
        self.frozen = frozen_features(base)
        self.features = ChunkFeatures(view_spec(base), base.normalizer)
        self._history: deque[dict[str, np.ndarray]] = deque(maxlen=self.spec.n_obs_steps)

    @property
    def device(self) -> torch.device:
        return self.base.device

    @torch.no_grad()
    def scored_candidates(self, obs: Mapping[str, Any], generator: torch.Generator | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw obs {key: (B, n_obs, D)} -> (N candidate chunks (B, N, horizon, Da) raw, their Q (B, N))."""
        x = batch_obs(self.spec, obs, self.device)
        x = {k: v[:, :self.spec.n_obs_steps] for k, v in x.items()}
        view = self.frozen.obs(x) if self.frozen is not None else {k: v.float() for k, v in x.items()}
        B = next(iter(x.values())).shape[0]
        cond = condition(self.base, self.frozen, view).repeat_interleave(self.n, dim=0)
        chunks = self.base.unnormalize_action(self.base.sample_actions(cond, None, generator))   # (B*N, H, Da)
        start = self.spec.n_obs_steps - 1
        executed = chunks[:, start:start + self.spec.n_action_steps]
        o = self.features.obs(view).repeat_interleave(self.n, dim=0)
        q = self.q(o, self.features.action(executed)).min(0).values
        return chunks.reshape(B, self.n, *chunks.shape[1:]), q.reshape(B, self.n)

    @torch.no_grad()
    def predict_action(self, obs: Mapping[str, Any], generator: torch.Generator | None = None, **_) -> torch.Tensor:
        """Batched raw obs {key: (B, n_obs, D)} -> the best of N chunks per sample (B, horizon, Da), raw units."""
        chunks, q = self.scored_candidates(obs, generator)
        return chunks[torch.arange(len(chunks)), q.argmax(1)]

    def reset(self) -> None:
        self._history.clear()
        self.base.reset()

    @torch.no_grad()
    def act(self, obs: Mapping[str, Any]) -> ActionChunk:
        """Batch-1 numpy obs (one step or a full history, as the base takes) -> the best-of-N executable actions."""
        t_start = time.monotonic()
        t_obs = float(np.asarray(obs["t"], dtype=np.float64).reshape(-1)[-1]) if "t" in obs else t_start
        arrays, single = single_obs(self.spec, obs)
        if single:
            if not self._history:
                self._history.extend([arrays] * (self.spec.n_obs_steps - 1))
            self._history.append(arrays)
            arrays = {k: np.concatenate([h[k] for h in self._history], axis=1) for k in arrays}
        elif next(iter(arrays.values())).shape[1] != self.spec.n_obs_steps:
            raise ValueError(f"act(): history of {next(iter(arrays.values())).shape[1]} steps, expected n_obs_steps="
                             f"{self.spec.n_obs_steps}")
        chunks, q = self.scored_candidates(arrays)
        best = int(q[0].argmax())
        start = self.spec.n_obs_steps - 1
        chunk = chunks[0, best, start:start + self.spec.n_action_steps].float().cpu().numpy()
        t = t_obs + np.arange(len(chunk)) / self.spec.rate_hz
        return ActionChunk(chunk, t, info={"t_obs": t_obs, "inference_s": time.monotonic() - t_start,
                                           "q": float(q[0, best]), "q_mean": float(q[0].mean())})

    # ---- checkpoints ------------------------------------------------------------------------------
    def checkpoint_parts(self):
        """What robot_rl.policies.io.save_policy writes: N and the critic's config, Q weights, base."""
        return {"n": self.n, "critic": self.q_config}, self.q, {}, self.base

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> "BestOfNPolicy":
        from robot_rl.policies.io import BASE_DIR, load_policy

        ckpt = load_checkpoint(path)
        section = ckpt.config["policy"]
        critic = section.get("critic")
        if not isinstance(critic, dict) or "n" not in critic or "hidden" not in critic:
            raise CheckpointError(f"{Path(path) / 'config.yaml'}: policy.critic must hold the Q ensemble's n and "
                                  f"hidden, got {critic!r}")
        base = load_policy(Path(path) / BASE_DIR, device)
        features = ChunkFeatures(view_spec(base), base.normalizer)
        q = QEnsemble(features.obs_dim, features.action_dim, int(critic["n"]), tuple(critic["hidden"]),
                      bool(critic.get("layer_norm", True)))
        check_shapes({k: tuple(v.shape) for k, v in q.state_dict().items()}, ckpt.weights, str(Path(path) / WEIGHTS))
        q.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ckpt.weights.items()})
        return cls(base, q.to(base.device).eval(), critic, int(section.get("n", 16))).eval()
