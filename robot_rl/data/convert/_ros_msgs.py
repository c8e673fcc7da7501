"""Standard ROS2 messages <-> stream samples, through `rosbags`' pure-Python type store (no ROS).

A `TopicMap` says which message field of which topic is which stream. Conventions:
  sensor_msgs/msg/Image            rgb8/bgr8 -> (H, W, 3) uint8 RGB; mono8 -> (H, W) uint8;
                                   mono16/16UC1 -> (H, W) uint16; 32FC1 -> (H, W) float32
  sensor_msgs/msg/CompressedImage  jpeg/png -> decoded frame (import only)
  sensor_msgs/msg/JointState       field position | velocity | effort -> (N,) float64,
                                   optionally reordered by joint `names`
  geometry_msgs/msg/PoseStamped    field position (3) | orientation (4, w x y z: the store's
                                   quaternion order; ROS sends x y z w) | pose (7: x y z qw qx qy qz)
  geometry_msgs/msg/WrenchStamped  field force (3) | torque (3) | wrench (6)
  std_msgs/msg/Float64MultiArray   any shape (layout.dim sizes), float64; no header, so its time
                                   is the bag's log time
Header stamps are the sample times (seconds = sec + nanosec * 1e-9).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any, Mapping

import numpy as np

from robot_rl.core.errors import ConfigError, StoreError
from robot_rl.data.convert.ros_image import image_to_array

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
JOINTS = "sensor_msgs/msg/JointState"
POSE = "geometry_msgs/msg/PoseStamped"
WRENCH = "geometry_msgs/msg/WrenchStamped"
ARRAY = "std_msgs/msg/Float64MultiArray"
FIELDS = {
    IMAGE: ("image",), COMPRESSED: ("image",), JOINTS: ("position", "velocity", "effort"),
    POSE: ("pose", "position", "orientation"), WRENCH: ("wrench", "force", "torque"), ARRAY: ("data",),
}
HAS_HEADER = {IMAGE, COMPRESSED, JOINTS, POSE, WRENCH}


@dataclass
class TopicMap:
    """One topic <-> one stream. Optional: names (JointState joints), frame (header.frame_id on
    export; the stream frame on import), rate_hz / interp / units (stream spec on import)."""

    topic: str
    type: str
    stream: str
    field: str = ""
    names: list = _field(default_factory=list)
    frame: str = ""
    rate_hz: float | None = None
    interp: str | None = None
    units: str = ""

    def __post_init__(self) -> None:
        if self.type not in FIELDS:
            raise ConfigError(f"topic {self.topic}: message type {self.type!r} is not supported; "
                              f"supported: {sorted(FIELDS)}")
        self.field = self.field or FIELDS[self.type][0]
        if self.field not in FIELDS[self.type]:
            raise ConfigError(f"topic {self.topic}: field {self.field!r} of {self.type} must be one of "
                              f"{FIELDS[self.type]}")
        if not self.topic.startswith("/"):
            raise ConfigError(f"topic {self.topic!r} (stream {self.stream}): topic names start with '/'")

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: str) -> "TopicMap":
        known = set(TopicMap.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown} in topic entry {dict(d)}; known: {sorted(known)}")
        for need in ("topic", "type", "stream"):
            if need not in d:
                raise ConfigError(f"{where}: topic entry {dict(d)} lacks {need!r}")
        return TopicMap(**{k: (list(v) if k == "names" else v) for k, v in d.items()})

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in TopicMap.__dataclass_fields__ if getattr(self, k) not in (None, "", [])}


def stamp_to_s(stamp) -> float:
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9


def s_to_ns(t: float) -> int:
    if t < 0:
        raise StoreError(f"timestamp {t!r} s is negative; ROS times start at 0 (pass time_offset_s=...)")
    return int(round(t * 1e9))


def _header(types, t: float, frame: str):
    ns = s_to_ns(t)
    return types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=ns // 10**9,
                                                                                  nanosec=ns % 10**9), frame_id=frame)


def to_message(types, m: TopicMap, value: np.ndarray, t: float):
    """A message carrying one sample of m.stream taken at time t."""
    v = np.asarray(value)
    if m.type == IMAGE:
        if v.dtype == np.uint8 and v.ndim == 3 and v.shape[2] == 3:
            enc, ch = "rgb8", 3
        elif v.dtype == np.uint8 and (v.ndim == 2 or (v.ndim == 3 and v.shape[2] == 1)):
            enc, ch = "mono8", 1
        elif v.dtype == np.uint16 and (v.ndim == 2 or (v.ndim == 3 and v.shape[2] == 1)):
            enc, ch = "16UC1", 1
        elif v.dtype == np.float32 and v.ndim == 2:
            enc, ch = "32FC1", 1
        else:
            raise StoreError(f"stream {m.stream}: {v.dtype} {v.shape} frames have no sensor_msgs/Image encoding "
                             f"(uint8 RGB/mono, uint16 mono, float32 mono)")
        h, w = v.shape[:2]
        data = np.ascontiguousarray(v).view(np.uint8).reshape(-1)
        return types[IMAGE](header=_header(types, t, m.frame), height=h, width=w, encoding=enc,
                            is_bigendian=0, step=w * ch * v.dtype.itemsize, data=data)
    if m.type == ARRAY:
        dims = [types["std_msgs/msg/MultiArrayDimension"](label=f"dim{i}", size=int(s),
                                                          stride=int(np.prod(v.shape[i:], dtype=np.int64)))
                for i, s in enumerate(v.shape)]
        layout = types["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=0)
        return types[ARRAY](layout=layout, data=v.astype(np.float64).reshape(-1))
    vec = v.astype(np.float64).reshape(-1)
    expect = {"position": 3, "orientation": 4, "pose": 7, "force": 3, "torque": 3, "wrench": 6}.get(m.field)
    if m.type in (POSE, WRENCH) and expect is not None and vec.shape != (expect,):
        raise StoreError(f"stream {m.stream}: {m.type} field {m.field} needs {expect} values, sample has shape {v.shape}")
    header = _header(types, t, m.frame)
    if m.type == JOINTS:
        names = m.names or [f"{m.stream}_{i}" for i in range(len(vec))]
        if len(names) != len(vec):
            raise StoreError(f"topic {m.topic}: {len(names)} joint names for {len(vec)} values of {m.stream}")
        arrays = {f: (vec if f == m.field else np.zeros(0)) for f in ("position", "velocity", "effort")}
        return types[JOINTS](header=header, name=list(names), **arrays)
    P, Q, V = types["geometry_msgs/msg/Point"], types["geometry_msgs/msg/Quaternion"], types["geometry_msgs/msg/Vector3"]
    if m.type == POSE:
        pos, quat = np.zeros(3), np.array([1.0, 0, 0, 0])
        if m.field == "position":
            pos = vec
        elif m.field == "orientation":
            quat = vec
        else:
            pos, quat = vec[:3], vec[3:]
        pose = types["geometry_msgs/msg/Pose"](position=P(x=pos[0], y=pos[1], z=pos[2]),
                                               orientation=Q(x=quat[1], y=quat[2], z=quat[3], w=quat[0]))
        return types[POSE](header=header, pose=pose)
    force, torque = np.zeros(3), np.zeros(3)
    if m.field == "force":
        force = vec
    elif m.field == "torque":
        torque = vec
    else:
        force, torque = vec[:3], vec[3:]
    wrench = types["geometry_msgs/msg/Wrench"](force=V(x=force[0], y=force[1], z=force[2]),
                                               torque=V(x=torque[0], y=torque[1], z=torque[2]))
    return types[WRENCH](header=header, wrench=wrench)


def from_message(m: TopicMap, msg, log_time_ns: int, where: str) -> tuple[np.ndarray, float, str]:
    """(sample, time in seconds, header frame_id) of one message."""
    t = stamp_to_s(msg.header.stamp) if m.type in HAS_HEADER else log_time_ns * 1e-9
    frame = msg.header.frame_id if m.type in HAS_HEADER else ""
    if m.type == IMAGE:
        return _image(msg, where), t, frame
    if m.type == COMPRESSED:
        return _compressed(msg, where), t, frame
    if m.type == ARRAY:
        dims = [int(d.size) for d in msg.layout.dim]
        data = np.asarray(msg.data, dtype=np.float64)[int(msg.layout.data_offset):]
        if dims and int(np.prod(dims)) == data.size:
            return data.reshape(dims), t, frame
        return data, t, frame
    if m.type == JOINTS:
        values = np.asarray(getattr(msg, m.field), dtype=np.float64)
        if m.names:
            index = {n: i for i, n in enumerate(msg.name)}
            missing = [n for n in m.names if n not in index]
            if missing:
                raise StoreError(f"{where}: joints {missing} not in the message's names {list(msg.name)}")
            if len(values) != len(msg.name):
                raise StoreError(f"{where}: {len(values)} {m.field} values for {len(msg.name)} joint names")
            values = values[[index[n] for n in m.names]]
        return values, t, frame
    if m.type == POSE:
        p, q = msg.pose.position, msg.pose.orientation
        pos, quat = np.array([p.x, p.y, p.z]), np.array([q.w, q.x, q.y, q.z])
        return {"position": pos, "orientation": quat, "pose": np.concatenate([pos, quat])}[m.field], t, frame
    f, tq = msg.wrench.force, msg.wrench.torque
    force, torque = np.array([f.x, f.y, f.z]), np.array([tq.x, tq.y, tq.z])
    return {"force": force, "torque": torque, "wrench": np.concatenate([force, torque])}[m.field], t, frame


def _image(msg, where: str) -> np.ndarray:
    try:
        return image_to_array(msg, where)
    except ValueError as e:
        raise StoreError(str(e)) from None


def _compressed(msg, where: str) -> np.ndarray:
    import imagecodecs

    data = np.asarray(msg.data, dtype=np.uint8).tobytes()
    fmt = msg.format.lower()
    try:
        img = imagecodecs.png_decode(data) if "png" in fmt else imagecodecs.jpeg8_decode(data)
    except Exception as e:
        raise StoreError(f"{where}: cannot decode CompressedImage format {msg.format!r}: {e}") from None
    return np.ascontiguousarray(img)  # a JPEG/PNG decodes to RGB whatever the publisher's pixel order
