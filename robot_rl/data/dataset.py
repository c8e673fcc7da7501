"""torch Dataset of training windows (see sampler.py for the windowing and alignment).

Each item is a dict:
    <low-dim obs key>  (n_obs_steps, D) float32, raw units (normalize in the policy)
    <rgb obs key>      (n_obs_steps, C, H, W) uint8 (resized to the spec's H, W; cropped by augment)
    <depth obs key>    (n_obs_steps, 1, H, W) float32, raw value * depth_scale (mm -> m by default)
    action             (horizon, Da) float32
Low-dim data lives in memory (the sampler's grid arrays, shared with DataLoader workers). Images are
read per item from the store's zarr arrays, which each worker process opens for itself on first use
(never shared across a fork); a frame used twice in a window (edge padding) is decoded once, and decoded
frames are kept in memory up to `frame_cache_mb` per process, so an epoch after the first decodes nothing
when the store's frames fit (decoding was most of the loader's time; docs/benchmarks.md).
`dataset[list_of_indices]` returns a whole batch (leading axis B); `batch_loader()` builds a
DataLoader that uses it, which is faster than per-item fetching plus collation.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch
from imagecodecs import jpeg8_decode, png_decode
from numcodecs.blosc import decompress as blosc_decompress
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler
from zarr.codecs import BloscCodec, BytesCodec, ShardingCodec, ShardingCodecIndexLocation

from robot_rl.core.errors import ConfigError, StoreError
from robot_rl.core.spec import PolicySpec
from robot_rl.data.augment import ImageAugment
from robot_rl.data.codecs import ImageCodec
from robot_rl.data.sampler import WindowSampler
from robot_rl.data.episode_store import EpisodeStore, _is_url

_MISSING = 2**64 - 1  # shard index entry of a chunk that was never written


def _frame_decoder(codecs, dtype):
    """bytes -> flat frame for the inner-chunk codecs the store writes (codecs.value_array_kwargs),
    or None for anything else (read through zarr)."""
    if len(codecs) == 1 and isinstance(codecs[0], ImageCodec):
        return jpeg8_decode if codecs[0].format == "jpeg" else png_decode
    if (len(codecs) == 2 and isinstance(codecs[0], BytesCodec) and isinstance(codecs[1], BloscCodec)
            and (codecs[0].endian is None or codecs[0].endian.value == "little")):
        little = np.dtype(dtype).newbyteorder("<")
        return lambda data: np.frombuffer(blosc_decompress(data), dtype=little)
    return None


class FrameReader:
    """Reads frames (rows) of one image array; each distinct row of a request is decoded once.

    Fast path for the store's own layout on a local disk (one frame per inner chunk of a shard,
    encoded by codecs.ImageCodec or Blosc): each shard's index is read once and cached (revalidated by the
    file's size and mtime, so a shard rewritten by a writer is re-read), then a frame costs one
    positioned read and one JPEG/PNG decode. Anything else (URLs, other codecs) is read through zarr.
    """

    def __init__(self, array, local_root: Path | None, cache: "FrameCache | None" = None) -> None:
        self.array = array
        self.cache = cache
        self.fast = False
        codecs = array.metadata.codecs
        sharding = codecs[0] if len(codecs) == 1 and isinstance(codecs[0], ShardingCodec) else None
        self.decode = _frame_decoder(sharding.codecs, array.dtype) if sharding is not None else None
        if (local_root is not None and self.decode is not None and sharding.chunk_shape[0] == 1
                and tuple(sharding.chunk_shape[1:]) == tuple(array.shape[1:])
                and sharding.index_location == ShardingCodecIndexLocation.end):
            self.fast = True
            self.root = Path(local_root) / array.path
            self.shard_rows = int(array.metadata.chunk_grid.chunk_shape[0])
            self.key = array.metadata.chunk_key_encoding.encode_chunk_key
            self.index_nbytes = 16 * self.shard_rows + 4  # (offset, nbytes) uint64 per chunk + crc32c
            self.indexes: dict[int, tuple[tuple[int, int], np.ndarray]] = {}
            self.paths: dict[int, str] = {}

    def read(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), H, W[, C]) frames."""
        unique, inverse = np.unique(rows, return_inverse=True)
        frames = self.cache.read(self, unique) if self.cache is not None else self.decode_rows(unique)
        return frames[inverse.reshape(-1)]

    def decode_rows(self, unique: np.ndarray) -> np.ndarray:
        """(len(unique), H, W[, C]) frames of sorted unique rows, read from the store."""
        if self.fast:
            return np.stack([self._read_one(int(r)) for r in unique])
        if unique[-1] - unique[0] + 1 == len(unique):  # consecutive: one slice read
            return np.asarray(self.array[int(unique[0]): int(unique[-1]) + 1])
        return np.asarray(self.array.get_orthogonal_selection((unique,)))

    def _read_one(self, row: int) -> np.ndarray:
        shard, inner = divmod(row, self.shard_rows)
        path = self.paths.get(shard)
        if path is None:
            path = self.paths[shard] = str(self.root / self.key((shard,) + (0,) * (self.array.ndim - 1)))
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                cached = self.indexes.get(shard)
                if cached is None or cached[0] != (st.st_size, st.st_mtime_ns):
                    f.seek(st.st_size - self.index_nbytes)
                    index = np.frombuffer(f.read(self.index_nbytes)[:-4], dtype="<u8").reshape(-1, 2)
                    cached = self.indexes[shard] = ((st.st_size, st.st_mtime_ns), index)
                offset, nbytes = (int(x) for x in cached[1][inner])
                if offset == _MISSING:  # the writer writes every committed frame: one is missing
                    raise StoreError(f"{path}: frame {row} (chunk {inner} of shard {shard}) is missing; "
                                     f"run `robot-rl data validate`")
                f.seek(offset)
                data = f.read(nbytes)
            frame = np.asarray(self.decode(data))
            return frame.reshape(self.array.shape[1:]).astype(self.array.dtype, copy=False)
        except FileNotFoundError:  # the writer writes every committed frame: the shard was deleted
            raise StoreError(f"{path}: shard file of frame {row} is missing; run `robot-rl data validate`") from None
        except (OSError, ValueError, RuntimeError) as e:  # truncated/corrupt shard, undecodable frame
            raise StoreError(f"{path}: cannot read frame {row} (chunk {inner} of shard {shard}): {e}; "
                             f"run `robot-rl data validate`") from None


class FrameCache:
    """Decoded frames of a process's FrameReaders, kept until `max_bytes` (shared by all of them) are held;
    frames past the bound are decoded on every read. No eviction: windows are drawn uniformly, so any
    resident set serves the same share of reads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.nbytes = int(max_bytes), 0
        self.frames: dict[tuple[int, int], np.ndarray] = {}

    def read(self, reader: "FrameReader", rows: np.ndarray) -> np.ndarray:
        """(len(rows), H, W[, C]) frames of sorted unique `rows`."""
        key = id(reader)
        cached = [self.frames.get((key, int(r))) for r in rows]
        missing = [i for i, f in enumerate(cached) if f is None]
        if missing:
            fresh = reader.decode_rows(rows[missing])
            for i, frame in zip(missing, fresh):
                cached[i] = frame
                if self.nbytes + frame.nbytes <= self.max_bytes:
                    self.frames[(key, int(rows[i]))] = frame
                    self.nbytes += frame.nbytes
        return np.stack(cached)


class WindowDataset(Dataset):
    """Windows of a WindowSampler as dicts of tensors (shapes in the module docstring).

    augment: ImageAugment applied to every image feature (None: no augmentation);
    depth_scale: factor from stored depth units to the float32 output;
    frame_cache_mb: decoded frames kept in memory per process (each DataLoader worker holds its own); 0: none.
    """

    def __init__(self, sampler: WindowSampler, augment: ImageAugment | None = None,
                 depth_scale: float = 1e-3, frame_cache_mb: float = 1024.0) -> None:
        if frame_cache_mb < 0:
            raise ConfigError(f"frame_cache_mb={frame_cache_mb}: must be >= 0 (0: no cache)")
        self.frame_cache_mb = float(frame_cache_mb)
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
            path = self.sampler.path
            store = EpisodeStore.open(path, storage_options=self.sampler.storage_options)
            local = None if _is_url(path) else Path(path)
            cache = FrameCache(int(self.frame_cache_mb * 2**20)) if self.frame_cache_mb > 0 else None
            self._arrays = {key: FrameReader(store.values(stream), local, cache)
                            for key, stream in self.sampler.image_streams.items()}
            self._pid = os.getpid()
        return self._arrays

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        """index: an int -> one item (shapes in the module docstring); a 1-D sequence of ints -> a
        batch with a leading axis, in which every distinct frame is read and decoded once."""
        spec, sampler = self.spec, self.sampler
        idx = np.asarray(index, dtype=np.int64)
        if idx.ndim > 1:
            raise IndexError(f"WindowDataset index must be an int or 1-D, got shape {idx.shape}")
        rows = sampler.rows(idx)  # (horizon,) or (B, horizon)
        obs_rows = rows[..., : spec.n_obs_steps]
        item = {f.key: torch.from_numpy(sampler.features[f.key][obs_rows]) for f in spec.low_dim}
        arrays = self._image_arrays() if spec.images else {}
        for f in spec.images:
            frames = arrays[f.key].read(sampler.image_rows[f.key][obs_rows].reshape(-1))
            x = self._to_tensor(frames, f).reshape(*obs_rows.shape, *f.shape)
            if self.augment is not None:  # one draw per window, shared by its time steps
                x = torch.stack([self.augment(w) for w in x]) if idx.ndim else self.augment(x)
            item[f.key] = x
        item["action"] = torch.from_numpy(sampler.features[spec.action.key][rows])
        return item

    def _to_tensor(self, frames: np.ndarray, feature) -> torch.Tensor:
        """(T, H, W[, C]) stored frames -> (T, C, H, W) tensor of the spec's size."""
        if frames.ndim == 3:
            frames = frames[..., None]
        _, h, w = feature.shape
        if frames.shape[1:3] != (h, w):
            frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, -1)
                               for f in frames])
        if feature.kind == "depth":
            frames = frames.astype(np.float32) * np.float32(self.depth_scale)
        return torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))


def batch_loader(dataset: WindowDataset, batch_size: int, shuffle: bool = True, num_workers: int = 2,
                 drop_last: bool = False, seed: int | None = None, **kwargs) -> DataLoader:
    """A DataLoader that asks the dataset for whole batches (dataset[list of indices]), so windows
    are gathered with vectorized indexing and shared frames are decoded once, in the workers."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=None, sampler=BatchSampler(order, batch_size, drop_last),
                      num_workers=num_workers, **kwargs)


class EpochBatches:
    """Endless index batches, epoch after epoch, each epoch reshuffled with seed + epoch (across `world`
    processes: the distributed sampler's set_epoch), whole batches only. One DataLoader over it, and with it
    one set of worker processes, serves a whole run: a loader per epoch restarts its workers every epoch,
    which on a small store is most of the training time."""

    def __init__(self, dataset, batch_size: int, seed: int = 0, epoch: int = 0, rank: int = 0,
                 world: int = 1) -> None:
        self.dataset, self.batch_size, self.seed, self.epoch = dataset, batch_size, seed, epoch
        self.rank, self.world = rank, world

    def _sampler(self, epoch: int):
        if self.world > 1:
            sampler = DistributedSampler(self.dataset, num_replicas=self.world, rank=self.rank, shuffle=True,
                                         seed=self.seed)
            sampler.set_epoch(epoch)
            return sampler
        return RandomSampler(self.dataset, generator=torch.Generator().manual_seed(self.seed + epoch))

    def per_epoch(self) -> int:
        n = len(self._sampler(self.epoch))
        return n // min(self.batch_size, n) if n else 0

    def __iter__(self):
        epoch = self.epoch
        while True:
            sampler = self._sampler(epoch)
            yield from BatchSampler(sampler, min(self.batch_size, len(sampler)), drop_last=True)
            epoch += 1


def endless_loader(batches: EpochBatches, num_workers: int = 2) -> DataLoader:
    """Whole batches from `batches` for as long as they are read, with persistent workers."""
    return DataLoader(batches.dataset, batch_size=None, sampler=batches, num_workers=num_workers,
                      persistent_workers=num_workers > 0)


def endless_batches(store: EpisodeStore | str | Path, spec: PolicySpec, batch_size: int, seed: int = 0,
                    num_workers: int = 0, **sampler_kwargs):
    """An endless iterator of whole batches of the store's windows (sampler_kwargs select them, e.g.
    success=True), reshuffled every epoch (EpochBatches); None when the store has no such window."""
    return sampler_batches(WindowSampler(store, spec, **sampler_kwargs), batch_size, seed, num_workers)


def sampler_batches(sampler: WindowSampler, batch_size: int, seed: int = 0, num_workers: int = 0):
    """endless_batches over the windows of a sampler (e.g. one narrowed by WindowSampler.keep)."""
    dataset = WindowDataset(sampler)
    if len(dataset) == 0:
        return None
    return iter(endless_loader(EpochBatches(dataset, min(batch_size, len(dataset)), seed), num_workers))


def make_datasets(store: EpisodeStore | str | Path, spec: PolicySpec, val_ratio: float = 0.0, seed: int = 0,
                  augment: ImageAugment | None = None, **sampler_kwargs) -> tuple[WindowDataset, WindowDataset]:
    """(train, val) datasets split by whole episodes; val uses the augment's eval mode.
    sampler_kwargs go to WindowSampler (success, sources, tasks, max_staleness, on_stale, ...)."""
    sampler = WindowSampler(store, spec, **sampler_kwargs)
    train, val = sampler.split(val_ratio, seed)
    return (WindowDataset(train, augment),
            WindowDataset(val, augment.eval() if augment is not None else None))
