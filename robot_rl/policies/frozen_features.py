"""How every RL stage sees pixels: the base policy's camera encoders, frozen, turn frames into feature vectors.

A PolicySpec with cameras has a *feature view* (`feature_view`): each image feature (C, H, W) is replaced by a
low-dim feature of the camera encoder's out_dim under the same key, proprio stays as is. Critics, actors,
value nets, dynamics models and the replay work on that view, so the low-dim machinery
(robot_rl.policies.critics.ChunkFeatures, actors.LowDimHistory, learning.rl.replay) stays one code path.

`FrozenFeatures` encodes raw frames (uint8, (..., H, W, C) as stored or (..., C, H, W)) with the base's own
ImageEncoders in eval mode (center crop, no augmentation), under no_grad; the base's condition is a function
of those features and the proprio (`condition`), so a frozen base (residual, DSRL, best-of-N) and a policy
whose camera encoders stay frozen (PPO, the offline improvement) act on cached features without the frames.
Why frozen: the encoder was trained by BC on the same cameras; training a conv net from the TD loss costs a
forward and backward pass per frame per update, which a 2-core CPU cannot afford at the update rates RL
needs, while a cached feature costs one forward pass per frame ever (docs/rl.md, "Pixels in the RL stages").

It holds references to the policy's camera encoders (no copy): the policy must not train them while its
features are in use (the RL stages freeze them; `FrozenFeatures` sets requires_grad False on them).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import replace
from typing import Any, Mapping

import numpy as np
import torch

from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.policies.observation_tensors import to_chw

FEATURE_BATCH = 256      # frames per encoder call
CACHE_FRAMES = 4096      # features of the most recent distinct frames kept (act-time frames reach the replay later)


def feature_view(spec: PolicySpec, dims: Mapping[str, int]) -> PolicySpec:
    """The spec with each image feature replaced by a (dims[key],) low-dim feature (same key and stream,
    normalize none: features are used as the encoder gives them)."""
    obs = tuple(FeatureSpec(f.key, (int(dims[f.key]),), "low_dim", f.stream, "none") if f.kind != "low_dim" else f
                for f in spec.obs)
    return replace(spec, obs=obs)


class FrozenFeatures:
    """The camera encoders of `policy` (a ChunkPolicy), frozen, as a map from raw observations to the feature
    view. Low-dim keys pass through unchanged (raw units; the critics normalize them)."""

    def __init__(self, policy) -> None:
        self.spec: PolicySpec = policy.spec
        self.normalizer = policy.normalizer
        self.cameras = dict(policy.encoder.cameras.items())
        for cam in self.cameras.values():
            cam.requires_grad_(False)
        self.view: PolicySpec = feature_view(self.spec, {k: c.out_dim for k, c in self.cameras.items()})
        self.images = {f.key: f for f in self.spec.images}
        self._cache: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()

    @property
    def device(self) -> torch.device:
        return next(next(iter(self.cameras.values())).parameters()).device

    @torch.no_grad()
    def encode(self, key: str, frames: Any) -> torch.Tensor:
        """Frames of camera `key` (..., H, W, C) or (..., C, H, W), uint8 (or float in [0, 1]) -> features
        (..., D) float32 on the encoder's device, FEATURE_BATCH frames per call, encoder in eval mode."""
        f, cam = self.images[key], self.cameras[key]
        x = to_chw(f, torch.as_tensor(np.asarray(frames) if not torch.is_tensor(frames) else frames))
        lead = x.shape[:-3]
        x = x.reshape(-1, *f.shape)
        was_training = cam.training
        cam.eval()
        try:
            out = [cam(self.normalizer.normalize(key, x[i:i + FEATURE_BATCH].to(self.device)))
                   for i in range(0, len(x), FEATURE_BATCH)]
        finally:
            cam.train(was_training)
        D = cam.out_dim
        return (torch.cat(out) if out else torch.zeros(0, D, device=self.device)).reshape(*lead, D)

    def obs(self, obs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Raw obs {key: (..., *shape)} (arrays or tensors) -> the feature view {key: float32 tensor} on the
        encoder's device (frames through `arrays`, so each distinct one is encoded once; low-dim as float32)."""
        missing = [f.key for f in self.spec.obs if f.key not in obs]
        if missing:
            raise ValueError(f"observation(s) {missing} missing (got keys {sorted(obs)})")
        host = {f.key: obs[f.key].cpu().numpy() if torch.is_tensor(obs[f.key]) else np.asarray(obs[f.key])
                for f in self.spec.obs}
        return {k: torch.as_tensor(v).to(self.device, torch.float32) for k, v in self.arrays(host)[0].items()}

    def arrays(self, *groups: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Raw obs dicts {key: (N, S, *shape)} (e.g. a batch's obs and next_obs) -> the same dicts in the
        feature view as float32 numpy arrays. Each distinct frame is encoded once: frames repeat (a chunk's
        next observation is the next chunk's observation, a history overlaps its neighbour's, the frames act()
        saw arrive again in the episode's transitions), so features are looked up by the frame's bytes (blake2b)
        among this call's and the last CACHE_FRAMES distinct frames'. Identical bytes give the identical
        feature (the encoder is frozen and in eval mode), so the lookup changes nothing but the cost."""
        out = [dict(g) for g in groups]
        for key in self.images:
            frames = [np.asarray(g[key]) for g in groups]
            flat = np.concatenate([f.reshape(-1, *f.shape[-3:]) for f in frames])
            digests = [(key, hashlib.blake2b(np.ascontiguousarray(frame).data, digest_size=16).digest())
                       for frame in flat]
            new = {}
            for i, d in enumerate(digests):
                if d not in self._cache and d not in new:
                    new[d] = i
            if new:
                encoded = self.encode(key, flat[list(new.values())]).cpu().numpy()
                for d, feature in zip(new, encoded):
                    self._cache[d] = feature
            for d in digests:
                self._cache.move_to_end(d)
            feats = np.stack([self._cache[d] for d in digests]) if digests else np.zeros((0, self.cameras[key].out_dim),
                                                                                         np.float32)
            while len(self._cache) > CACHE_FRAMES:
                self._cache.popitem(last=False)
            pos = 0
            for g, f in zip(out, frames):
                n = int(np.prod(f.shape[:-3]))
                g[key] = feats[pos:pos + n].reshape(*f.shape[:-3], -1)
                pos += n
        return out

    def condition(self, policy, view_obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The global condition policy.encode(raw obs) would give, from the feature view {key: (B, S >= n_obs,
        D)}: the camera features and the normalized low-dim keys fused by the encoder's own ObsEncoder.fuse.
        `policy`: the one whose camera encoders made the features (its state encoder and denoiser may train:
        gradients flow)."""
        n = self.spec.n_obs_steps
        x = {k: torch.as_tensor(v, device=self.device)[:, :n].float() for k, v in view_obs.items()}
        low = {f.key: policy.normalizer.normalize(f.key, x[f.key]) for f in self.spec.low_dim}
        return policy.encoder.fuse({k: x[k] for k in self.images}, low).flatten(1)


def frozen_features(policy) -> FrozenFeatures | None:
    """FrozenFeatures of a policy with cameras, None for a low-dim policy (its observations are the view)."""
    return FrozenFeatures(policy) if policy.spec.images else None


def view_spec(policy) -> PolicySpec:
    """The spec the RL networks read: the feature view of an image policy, the policy's own spec otherwise."""
    f = frozen_features(policy)
    return f.view if f is not None else policy.spec


def condition(policy, features: FrozenFeatures | None, obs: Mapping[str, Any]) -> torch.Tensor:
    """policy's global condition from observations in the view: the feature view with `features`, raw
    low-dim observations without (then it is policy.encode)."""
    return features.condition(policy, obs) if features is not None else policy.encode(obs)
