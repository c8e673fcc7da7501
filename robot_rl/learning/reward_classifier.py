"""Learned success rewards for the real robot, where no simulator says "done".

Labels come from the store: a frame is positive where the episode's per-step `success` stream is set
(the twin's check; scripted demos keep recording `hold_after_success_s` after it, so these include
frames of the success state); an episode without a set stream (an operator marks success/failure with
a key at the end; that label is the episode's `success`) counts its last `positive_s` seconds when it
was marked successful. Every other frame, failed episodes' and successful ones' before success, is a
negative. The classifier is trained with
class-balanced BCE on whole-episode splits; its threshold is the lowest one whose validation
precision reaches `min_precision` (a false "success" ends an episode early and teaches the learner
the wrong thing, so precision matters more than recall). At run time `SuccessDetector` declares
success only after `consecutive` positive frames and when the proprio sanity check passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from robot_rl.core.progress import progress_bar

from robot_rl.core.config import dataclass_from_dict
from robot_rl.core.errors import ConfigError
from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.policies.model_config import PolicyConfig
from robot_rl.policies.reward_model import RewardModel


@dataclass
class RewardConfig:
    steps: int = 2000
    batch_size: int = 128
    lr: float = 3e-4
    weight_decay: float = 1e-4
    positive_s: float = 0.5        # episodes without a set `success` stream: last seconds of a successful one
    val_ratio: float = 0.2
    min_precision: float = 0.95    # threshold choice on the validation episodes
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "RewardConfig":
        return dataclass_from_dict(RewardConfig, d, "reward")


def classifier_spec(obs: list[FeatureSpec], store) -> PolicySpec:
    """One observation step; the store's action stream only anchors the sampler's grid."""
    action = store.streams.get("action")
    if action is None:
        raise ConfigError(f"{store.path}: the reward classifier aligns frames on the `action` stream, which is missing")
    return PolicySpec(obs=tuple(obs), action=FeatureSpec("action", action.shape), n_obs_steps=1, horizon=1,
                      n_action_steps=1, rate_hz=action.rate_hz)


def frame_labels(store, sampler, positive_s: float) -> np.ndarray:
    """(N,) 0/1 label of every grid row of the sampler (see the module docstring).

    An episode whose `success` stream is set anywhere is labelled by that stream alone: its frames before
    success are negatives, so the classifier must tell "done" from "nearly done". Only an episode without
    such a stream (an operator's mark at the end, nothing per step) falls back to its last `positive_s`
    seconds, which is right when the operator held the success state that long before marking it."""
    from robot_rl.data.align import sample_at

    grid = sampler.grid
    labels = np.zeros(len(grid.times), np.float32)
    for p, ep in enumerate(grid.episodes):
        lo, hi = grid.offsets[p], grid.offsets[p + 1]
        if hi == lo:
            continue
        t = grid.times[lo:hi]
        if "success" in store.streams:
            v, ts = store.read("success", int(ep))
            if len(ts) and np.any(np.asarray(v) > 0):
                flag = sample_at(v, ts, np.maximum(t, ts[0]), "hold").reshape(len(t), -1)[:, 0] > 0
                labels[lo:hi] = flag
                continue
        if store.episode_meta(int(ep)).get("success"):
            labels[lo:hi] = t >= t[-1] - positive_s
    return labels


def _batches(ds, labels: np.ndarray, idx: np.ndarray, batch_size: int):
    for s in range(0, len(idx), batch_size):
        b = idx[s:s + batch_size]
        item = ds[b]
        yield {k: v for k, v in item.items() if k != "action"}, torch.from_numpy(labels[ds.sampler.rows(b)[:, 0]])


def pick_threshold(p: np.ndarray, y: np.ndarray, min_precision: float) -> float:
    """Lowest threshold with precision >= min_precision on (p, y); 0.5 when none reaches it."""
    for th in np.unique(np.round(p, 4)):
        pred = p >= th
        if pred.any() and (y[pred] > 0).mean() >= min_precision:
            return float(th)
    return 0.5


def train_reward_classifier(store, obs: list[FeatureSpec], cfg: RewardConfig, out: str | Path | None = None,
                            model: PolicyConfig | None = None) -> tuple[RewardModel, dict]:
    """Train on `store` (opened EpisodeStore); returns the model and validation metrics; saves to `out`.
    obs: the features it reads (camera frames, uint8 in the store, and proprio: the real-robot inputs);
    model: the observation encoder's settings (PolicyConfig; default: its defaults, the full ResNet-18)."""
    from robot_rl.data.dataset import make_datasets
    from robot_rl.data.normalizer_stats import compute_stats
    from robot_rl.policies.device import resolve_device
    from robot_rl.policies.normalizer import Normalizer

    torch.manual_seed(cfg.seed)
    spec = classifier_spec(obs, store)
    train_ds, val_ds = make_datasets(store, spec, val_ratio=cfg.val_ratio, seed=cfg.seed)
    labels = {id(ds): frame_labels(store, ds.sampler, cfg.positive_s) for ds in (train_ds, val_ds)}
    y_train = labels[id(train_ds)][train_ds.sampler.rows(np.arange(len(train_ds)))[:, 0]]
    n_pos = float(y_train.sum())
    if n_pos == 0 or n_pos == len(y_train):
        raise ConfigError(f"{store.path}: the training episodes have {int(n_pos)} success frames of {len(y_train)}; "
                          "the classifier needs both successful and unsuccessful frames")
    device = resolve_device(cfg.device)
    stats = compute_stats(store, spec, episodes=train_ds.sampler.episodes)
    model = RewardModel(spec, model, normalizer=Normalizer.from_stats(spec, stats.stats)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    pos_weight = torch.tensor((len(y_train) - n_pos) / n_pos, device=device)
    rng = np.random.default_rng(cfg.seed)
    model.train()
    for _ in progress_bar(range(cfg.steps), desc="reward classifier", enabled=cfg.progress, leave=False):
        idx = rng.integers(0, len(train_ds), cfg.batch_size)
        (x, y), = _batches(train_ds, labels[id(train_ds)], idx, cfg.batch_size)
        loss = F.binary_cross_entropy_with_logits(model(x), y.to(device), pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    metrics = {"train_frames": len(train_ds), "train_positive_frames": int(n_pos), "final_loss": float(loss.detach())}
    eval_ds = val_ds if len(val_ds) else train_ds
    p, y = [], []
    for x, yb in _batches(eval_ds, labels[id(eval_ds)], np.arange(len(eval_ds)), 512):
        p.append(model.probability(x).cpu().numpy())
        y.append(yb.numpy())
    p, y = np.concatenate(p), np.concatenate(y)
    model.threshold = pick_threshold(p, y, cfg.min_precision)
    pred = p >= model.threshold
    metrics |= {"val_frames": len(y), "val_positive_frames": int(y.sum()), "threshold": model.threshold,
                "val_accuracy": float((pred == (y > 0)).mean()),
                "val_precision": float((y[pred] > 0).mean()) if pred.any() else None,
                "val_recall": float(pred[y > 0].mean()) if (y > 0).any() else None,
                "validated_on": "val episodes" if len(val_ds) else "train episodes (no val split)"}
    if out is not None:
        model.save(out, meta=metrics)
    return model, metrics


@dataclass
class SuccessDetector:
    """Run-time success: classifier probability >= threshold for `consecutive` frames, and every `sanity`
    stream inside its [low, high] box (e.g. {"gripper_pos": [0.005, 0.07]}: holding something)."""

    model: RewardModel
    consecutive: int = 2
    sanity: dict = field(default_factory=dict)
    _streak: int = 0

    def reset(self) -> None:
        self._streak = 0

    def __call__(self, obs: Mapping[str, np.ndarray]) -> bool:
        for stream, (low, high) in self.sanity.items():
            if stream not in obs:
                raise ConfigError(f"success sanity check: stream {stream!r} not in the observation ({sorted(obs)})")
            v = np.asarray(obs[stream], np.float64)
            if np.any(v < low) or np.any(v > high):
                self._streak = 0
                return False
        x = {f.key: np.asarray(f.from_streams(obs))[None, None] for f in self.model.spec.obs}
        p = float(self.model.probability(x)[0])
        self._streak = self._streak + 1 if p >= self.model.threshold else 0
        return self._streak >= self.consecutive
