"""torch Dataset of training windows (see sampler.py for the windowing and alignment).

Each item is a dict:
    <low-dim obs key>  (n_obs_steps, D) float32, raw units (normalize in the policy)
    <rgb obs key>      (n_obs_steps, C, H, W) uint8 (resized to the spec's H, W; cropped by augment)
    <depth obs key>    (n_obs_steps, 1, H, W) float32, raw value * depth_scale (mm -> m by default)
    action             (horizon, Da) float32
Low-dim data lives in memory (the sampler's grid arrays, shared with DataLoader workers). Images are
read per item from the store's zarr arrays, which each worker process opens for itself on first use
(never shared across a fork); a frame used twice in a window (edge padding) is decoded once.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from robot_rl.core.errors import ConfigError
from robot_rl.core.spec import PolicySpec
from robot_rl.data.augment import ImageAugment
from robot_rl.data.sampler import WindowSampler
from robot_rl.data.store import EpisodeStore


def read_frames(array, rows: np.ndarray) -> np.ndarray:
    """Frames at `rows` of a (N, H, W[, C]) zarr array, each distinct row read and decoded once."""
    unique, inverse = np.unique(rows, return_inverse=True)
    if unique[-1] - unique[0] + 1 == len(unique):  # consecutive: one slice read
        frames = array[int(unique[0]): int(unique[-1]) + 1]
    else:
        frames = array.get_orthogonal_selection((unique,))
    return np.asarray(frames)[inverse.reshape(-1)]


class WindowDataset(Dataset):
    """Windows of a WindowSampler as dicts of tensors (shapes in the module docstring).

    augment: ImageAugment applied to every image feature (None: no augmentation);
    depth_scale: factor from stored depth units to the float32 output.
    """

    def __init__(self, sampler: WindowSampler, augment: ImageAugment | None = None,
                 depth_scale: float = 1e-3) -> None:
        self.sampler = sampler
        self.spec: PolicySpec = sampler.spec
        self.augment = augment
        self.depth_scale = float(depth_scale)
        self._pid: int | None = None
        self._arrays: dict = {}
        for f in self.spec.images:
            stream = sampler.streams[f.stream]
            shape = stream.shape if len(stream.shape) == 3 else (*stream.shape, 1)
            if shape[2] != f.shape[0]:
                raise ConfigError(f"{sampler.path}: spec {f.key} wants {f.shape[0]} channels, stream "
                                  f"{f.stream} has shape {stream.shape}")
            if f.kind == "rgb" and stream.dtype != "uint8":
                raise ConfigError(f"{sampler.path}: spec {f.key} is rgb but stream {f.stream} is {stream.dtype}")

    def __len__(self) -> int:
        return len(self.sampler)

    def __getstate__(self) -> dict:  # zarr arrays never travel to worker processes
        state = self.__dict__.copy()
        state["_arrays"], state["_pid"] = {}, None
        return state

    def _image_arrays(self) -> dict:
        if self._pid != os.getpid():
            store = EpisodeStore.open(self.sampler.path, storage_options=self.sampler.storage_options)
            self._arrays = {key: store.values(stream) for key, stream in self.sampler.image_streams.items()}
            self._pid = os.getpid()
        return self._arrays

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        spec, sampler = self.spec, self.sampler
        rows = sampler.rows(int(index))
        obs_rows = rows[: spec.n_obs_steps]
        item = {f.key: torch.from_numpy(sampler.features[f.key][obs_rows]) for f in spec.low_dim}
        arrays = self._image_arrays() if spec.images else {}
        for f in spec.images:
            frames = read_frames(arrays[f.key], sampler.image_rows[f.key][obs_rows])
            item[f.key] = self._to_tensor(frames, f)
        item["action"] = torch.from_numpy(sampler.features[spec.action.key][rows])
        return item

    def _to_tensor(self, frames: np.ndarray, feature) -> torch.Tensor:
        """(T, H, W[, C]) stored frames -> (T, C, H, W) tensor of the spec's size, augmented."""
        if frames.ndim == 3:
            frames = frames[..., None]
        _, h, w = feature.shape
        if frames.shape[1:3] != (h, w):
            frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, -1)
                               for f in frames])
        if feature.kind == "depth":
            frames = frames.astype(np.float32) * np.float32(self.depth_scale)
        x = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))
        if self.augment is not None:
            x = self.augment(x)
        return x


def make_datasets(store: EpisodeStore | str | Path, spec: PolicySpec, val_ratio: float = 0.0, seed: int = 0,
                  augment: ImageAugment | None = None, **sampler_kwargs) -> tuple[WindowDataset, WindowDataset]:
    """(train, val) datasets split by whole episodes; val uses the augment's eval mode.
    sampler_kwargs go to WindowSampler (success, sources, tasks, max_staleness, on_stale, ...)."""
    sampler = WindowSampler(store, spec, **sampler_kwargs)
    train, val = sampler.split(val_ratio, seed)
    return (WindowDataset(train, augment),
            WindowDataset(val, augment.eval() if augment is not None else None))
