"""Array encodings of the store, and the zarr v3 image codec `robot_rl.image`.

Images are stored one frame per inner chunk inside shards of many frames (zarr sharding), so one
frame decodes on its own while a store holds few files. The codec wraps libjpeg-turbo / libpng
through imagecodecs. Importing robot_rl.data registers it; other readers call `register()`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import imagecodecs
import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.codecs import BloscCodec
from zarr.core.common import parse_named_configuration
from zarr.registry import register_codec

from robot_rl.data.schema import StreamSpec

CODEC_NAME = "robot_rl.image"
IMAGE_FRAMES_PER_SHARD = 64
LOW_DIM_TARGET_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ImageCodec(ArrayBytesCodec):
    """Encodes a (1, H, W[, C]) chunk as one JPEG (uint8 RGB/gray) or PNG (uint8/uint16) image."""

    is_fixed_size = False
    format: str = "jpeg"
    quality: int = 90

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImageCodec":
        _, cfg = parse_named_configuration(data, CODEC_NAME, require_configuration=False)
        return cls(**(cfg or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"name": CODEC_NAME, "configuration": {"format": self.format, "quality": self.quality}}

    def evolve_from_array_spec(self, array_spec) -> "ImageCodec":
        return self

    def _decode_sync(self, chunk_bytes, chunk_spec):
        raw = chunk_bytes.as_numpy_array()
        img = imagecodecs.jpeg8_decode(raw) if self.format == "jpeg" else imagecodecs.png_decode(raw)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(np.ascontiguousarray(img).reshape(chunk_spec.shape))

    def _encode_sync(self, chunk_array, chunk_spec):
        arr = np.asarray(chunk_array.as_ndarray_like())
        img = arr.reshape(arr.shape[1:]) if arr.shape[0] == 1 else arr
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        if self.format == "jpeg":
            data = imagecodecs.jpeg8_encode(np.ascontiguousarray(img), level=self.quality)
        else:
            data = imagecodecs.png_encode(np.ascontiguousarray(img), level=1)
        return chunk_spec.prototype.buffer.from_bytes(data)

    # libjpeg/libpng release the GIL: run frames on zarr's worker threads so both cores encode
    async def _decode_single(self, chunk_bytes, chunk_spec):
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    async def _encode_single(self, chunk_array, chunk_spec):
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec) -> int:
        raise NotImplementedError("image size depends on content")


def register() -> None:
    register_codec(CODEC_NAME, ImageCodec)


register()


def block_rows(spec: StreamSpec) -> int:
    """Rows per chunk (low-dim) or per shard (images): the unit the writer flushes at once."""
    if spec.is_image:
        return IMAGE_FRAMES_PER_SHARD
    return int(max(256, min(65536, LOW_DIM_TARGET_CHUNK_BYTES // max(1, spec.sample_nbytes))))


def value_array_kwargs(spec: StreamSpec, jpeg_quality: int = 90) -> dict[str, Any]:
    """zarr.create_array keyword arguments for a stream's value array."""
    rows = block_rows(spec)
    if spec.codec in ("jpeg", "png"):
        return dict(
            chunks=(1, *spec.shape), shards=(rows, *spec.shape), compressors=None,
            serializer=ImageCodec(format=spec.codec, quality=jpeg_quality),
        )
    shuffle = "bitshuffle" if np.dtype(spec.dtype).itemsize > 1 else "noshuffle"
    if spec.is_image:  # e.g. depth with the lossless zstd codec: one frame per chunk, sharded
        return dict(chunks=(1, *spec.shape), shards=(rows, *spec.shape),
                    compressors=BloscCodec(cname="zstd", clevel=1, shuffle=shuffle))
    return dict(chunks=(rows, *spec.shape), compressors=BloscCodec(cname="zstd", clevel=3, shuffle=shuffle))


def time_array_kwargs(spec: StreamSpec) -> dict[str, Any]:
    return dict(chunks=(max(block_rows(spec), 4096),), compressors=BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"))
