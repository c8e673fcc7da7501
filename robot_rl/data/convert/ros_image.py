"""sensor_msgs/msg/Image byte layout -> numpy, shared by the rosbag converter and the ROS2 nodes.

rgb8/bgr8 -> (H, W, 3) uint8 RGB; rgba8/bgra8 -> (H, W, 4) RGBA, or RGB with keep_alpha=False;
mono8/8UC1 -> (H, W) uint8; mono16/16UC1 -> (H, W) uint16; 32FC1 -> (H, W) float32. Row padding
(`step` > width * pixel size) and big-endian data are handled. Errors are ValueError naming `where`.
"""

from __future__ import annotations

import numpy as np

LAYOUTS = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
           "mono8": (np.uint8, 1), "8uc1": (np.uint8, 1), "mono16": (np.uint16, 1), "16uc1": (np.uint16, 1),
           "32fc1": (np.float32, 1)}


def image_to_array(msg, where: str, keep_alpha: bool = True) -> np.ndarray:
    enc = msg.encoding.lower()
    if enc not in LAYOUTS:
        raise ValueError(f"{where}: image encoding {msg.encoding!r} not supported; use one of {sorted(LAYOUTS)}")
    dtype, ch = LAYOUTS[enc]
    dtype = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    # a view of the message's buffer (bytes, or rclpy's array.array): no copy until the one below
    raw = np.frombuffer(msg.data, dtype=np.uint8) if isinstance(msg.data, (bytes, bytearray, memoryview)) or \
        hasattr(msg.data, "typecode") else np.asarray(msg.data, dtype=np.uint8)
    if raw.size < h * step or step < w * ch * dtype.itemsize:
        raise ValueError(f"{where}: image {w}x{h} {msg.encoding}: {raw.size} bytes with step {step} are too small")
    rows = raw[: h * step].reshape(h, step)[:, : w * ch * dtype.itemsize]  # drop row padding
    img = np.ascontiguousarray(rows).view(dtype).reshape(h, w, ch)
    if ch == 1:
        img = img[..., 0]
    elif enc.startswith("bgr"):
        img = img[..., [2, 1, 0, 3][: 4 if keep_alpha and ch == 4 else 3]]   # fancy indexing: a new array
    elif ch == 4 and not keep_alpha:
        img = img[..., :3]
    # one copy in native byte order, owning its memory (never a view of the message)
    return np.array(img, dtype=dtype.newbyteorder("="), order="C", copy=True) if img.base is not None or \
        not img.flags.c_contiguous or img.dtype != dtype.newbyteorder("=") else img
