"""Standard ROS messages <-> robot_rl transport messages (`Sample`s and status dicts).

One pair of functions per message kind (see robot_rl.runtime.transport): `to_sample(kind, msg)` and
`to_msg(kind, sample)`. Header stamps map to `Sample.t` through a `StampMapping`; `header.frame_id`
to `Sample.frame`; JointState `name` to `Sample.names`. Quaternions: ROS (x, y, z, w) <-> robot_rl
(w, x, y, z). Images: rgb8/bgr8/rgba8/bgra8 -> (H, W, 3) uint8 RGB; mono8/8UC1 -> (H, W) uint8; mono16/16UC1 -> (H, W) uint16 (depth, mm);
32FC1 -> (H, W) float32 (depth, m). Row padding (`step`) and big-endian data are handled.
CameraInfo: k (9,) and size (width, height) <-> K and width/height; d <-> D (plumb_bob for 5
coefficients or none, rational_polynomial for 8); R is identity and P = [K | 0] (unrectified camera).
"""

from __future__ import annotations

import json

import numpy as np
from geometry_msgs.msg import PoseStamped, WrenchStamped
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String

from robot_rl.data.convert import ros_image
from robot_rl.runtime.transport import Sample, TransportError
from robot_rl_ros.stamps import StampMapping

MSG_TYPES = {
    "joint_state": JointState,
    "pose": PoseStamped,
    "wrench": WrenchStamped,
    "image": Image,
    "camera_info": CameraInfo,
    "status": String,
}

_OUT_ENCODING = {("uint8", 3): "rgb8", ("uint8", 2): "mono8", ("uint16", 2): "16UC1", ("float32", 2): "32FC1"}


def msg_type(kind: str):
    try:
        return MSG_TYPES[kind]
    except KeyError:
        raise TransportError(f"message kind {kind!r} has no ROS type; kinds are {sorted(MSG_TYPES)}") from None


def _vec(seq) -> np.ndarray:
    return np.array(seq, dtype=np.float64)


def to_sample(kind: str, msg, stamps: StampMapping, topic: str = "?"):
    """ROS message of `kind` -> Sample (status: dict). Raises TransportError naming topic and field."""
    if kind == "status":
        try:
            return json.loads(msg.data)
        except json.JSONDecodeError as e:
            raise TransportError(f"topic {topic}: status is not JSON ({e}): {msg.data[:80]!r}") from None
    t = stamps.to_seconds(msg.header.stamp)
    frame = msg.header.frame_id
    if kind == "joint_state":
        fields = {"position": _vec(msg.position)}
        n = len(fields["position"])
        for name in ("velocity", "effort"):
            values = getattr(msg, name)
            if len(values) == n and n:
                fields[name] = _vec(values)
            elif len(values):
                raise TransportError(f"topic {topic}: JointState.{name} has {len(values)} entries for {n} positions")
        if msg.name and len(msg.name) != n:
            raise TransportError(f"topic {topic}: JointState has {len(msg.name)} names for {n} positions")
        return Sample(t, fields, frame, tuple(msg.name))
    if kind == "pose":
        p, q = msg.pose.position, msg.pose.orientation
        return Sample(t, {"position": _vec((p.x, p.y, p.z)), "quat": _vec((q.w, q.x, q.y, q.z))}, frame)
    if kind == "wrench":
        f, m = msg.wrench.force, msg.wrench.torque
        return Sample(t, {"force": _vec((f.x, f.y, f.z)), "torque": _vec((m.x, m.y, m.z))}, frame)
    if kind == "image":
        return Sample(t, {"image": image_to_array(msg, topic)}, frame)
    if kind == "camera_info":
        fields = {"k": _vec(msg.k), "size": _vec((msg.width, msg.height))}
        if len(msg.d):
            fields["d"] = _vec(msg.d)
        return Sample(t, fields, frame)
    raise TransportError(f"topic {topic}: message kind {kind!r} has no ROS conversion")


def image_to_array(msg: Image, topic: str = "?") -> np.ndarray:
    if msg.encoding == "rgb8" and not msg.is_bigendian and msg.step == msg.width * 3 \
            and len(msg.data) == msg.height * msg.step:
        # the common camera layout: a view of the message's buffer (the store copies it once), where the
        # general path below costs three copies, ~2 ms of a 640x480 frame, 60 times a second with 2 cameras
        return np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
    try:
        return ros_image.image_to_array(msg, f"topic {topic}", keep_alpha=False)
    except ValueError as e:
        raise TransportError(str(e)) from None


def to_msg(kind: str, sample, stamps: StampMapping):
    """Sample (status: dict) -> ROS message of `kind`."""
    if kind == "status":
        return String(data=json.dumps(sample))
    msg = msg_type(kind)()
    msg.header.stamp = stamps.to_stamp(sample.t)
    msg.header.frame_id = sample.frame
    f = sample.fields
    if kind == "joint_state":
        msg.name = list(sample.names)
        msg.position = f["position"].astype(np.float64).tolist()
        for name in ("velocity", "effort"):
            if name in f:
                setattr(msg, name, f[name].astype(np.float64).tolist())
    elif kind == "pose":
        p, (w, x, y, z) = f["position"], f["quat"]
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in p)
        o = msg.pose.orientation
        o.w, o.x, o.y, o.z = float(w), float(x), float(y), float(z)
    elif kind == "wrench":
        msg.wrench.force.x, msg.wrench.force.y, msg.wrench.force.z = (float(v) for v in f["force"])
        msg.wrench.torque.x, msg.wrench.torque.y, msg.wrench.torque.z = (float(v) for v in f["torque"])
    elif kind == "image":
        img = np.ascontiguousarray(f["image"])
        encoding = _OUT_ENCODING.get((img.dtype.name, img.ndim))
        if encoding is None:
            raise TransportError(f"image {img.dtype} {img.shape} has no ROS encoding")
        msg.height, msg.width = int(img.shape[0]), int(img.shape[1])
        msg.encoding = encoding
        msg.is_bigendian = 0
        msg.step = int(img.strides[0])
        msg.data = img.tobytes()
    elif kind == "camera_info":
        k = [float(v) for v in f["k"]]
        msg.width, msg.height = (int(v) for v in f["size"])
        msg.k = k
        d = [float(v) for v in f.get("d", ())]
        msg.d = d
        msg.distortion_model = "rational_polynomial" if len(d) == 8 else "plumb_bob"
        msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        msg.p = k[0:3] + [0.0] + k[3:6] + [0.0] + k[6:9] + [0.0]
    return msg
