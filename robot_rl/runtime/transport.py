"""Transport: typed publish/subscribe and request/response between runtime components.

Runtime components (recording sessions, the policy runner, ...) talk only through `Transport`, so
the same component code runs in one process (`LocalTransport`: CLI, tests) and in the ROS2 node
graph (`robot_rl_ros.transport.RosTransport`, which lives in ros2_ws/ because robot_rl is ROS-free).

Messages are of a small closed set of *kinds*, each matching one standard ROS message:

| kind          | message                  | fields (numpy arrays)                                  | ROS type                      |
|---------------|--------------------------|--------------------------------------------------------|-------------------------------|
| `joint_state` | `Sample` (+ joint `names`) | position (n,) rad or m; velocity (n,) /s; effort (n,) N m or N | sensor_msgs/msg/JointState |
| `pose`        | `Sample`                 | position (3,) m; quat (4,) unit (w, x, y, z), in `frame` | geometry_msgs/msg/PoseStamped |
| `wrench`      | `Sample`                 | force (3,) N; torque (3,) N m, in `frame`              | geometry_msgs/msg/WrenchStamped |
| `image`       | `Sample`                 | image (H, W, 3) uint8 RGB, (H, W) uint8/uint16, or (H, W) float32 | sensor_msgs/msg/Image |
| `camera_info` | `Sample`                 | k (9,) pinhole matrix, row-major, px; size (2,) width, height px; d (n,) distortion (OpenCV order) | sensor_msgs/msg/CameraInfo |
| `status`      | `dict` (JSON-able)       | free-form                                              | std_msgs/msg/String (JSON)    |

`Sample.t` is seconds on the host monotonic clock (simulation time in the twin), the time the sample
describes (capture time, not receive time). Services are `trigger` (no request; like
std_srvs/srv/Trigger) or `set_bool` (bool request; like std_srvs/srv/SetBool); both answer a `Reply`.

Publishing never blocks: every subscription has a keep-last queue of `QoS.depth` messages; when it is
full the oldest message is dropped and counted (`Subscription.dropped`), as ROS keep-last does.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from robot_rl.core.errors import RobotRLError

log = logging.getLogger(__name__)


class TransportError(RobotRLError):
    """A topic or service was used with the wrong kind, message, or name."""


# -- message kinds ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MessageKind:
    """A message kind: required/optional fields of its `Sample`s and their fixed shapes, if any."""

    name: str
    ros_type: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def is_sample(self) -> bool:
        return self.name != "status"


KINDS: dict[str, MessageKind] = {
    k.name: k
    for k in (
        MessageKind("joint_state", "sensor_msgs/msg/JointState", ("position",), ("velocity", "effort")),
        MessageKind("pose", "geometry_msgs/msg/PoseStamped", ("position", "quat"), (),
                    {"position": (3,), "quat": (4,)}),
        MessageKind("wrench", "geometry_msgs/msg/WrenchStamped", ("force", "torque"), (),
                    {"force": (3,), "torque": (3,)}),
        MessageKind("image", "sensor_msgs/msg/Image", ("image",)),
        MessageKind("camera_info", "sensor_msgs/msg/CameraInfo", ("k", "size"), ("d",), {"k": (9,), "size": (2,)}),
        MessageKind("status", "std_msgs/msg/String"),
    )
}
SERVICE_KINDS = ("trigger", "set_bool")
IMAGE_DTYPES = ("uint8", "uint16", "float32")


@dataclass(frozen=True)
class Sample:
    """Timestamped numeric fields. t: seconds (host monotonic clock; simulation time in the twin) of
    the moment the sample describes; fields: name -> numpy array; frame: coordinate frame id;
    names: labels of the entries of the (n,) fields, e.g. joint names of a joint_state."""

    t: float
    fields: Mapping[str, np.ndarray]
    frame: str = ""
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        t = float(self.t)
        if not math.isfinite(t):
            raise TransportError(f"Sample.t must be finite seconds, got {self.t!r}")
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "fields", {str(k): np.asarray(v) for k, v in dict(self.fields).items()})
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))


@dataclass(frozen=True)
class QoS:
    """Delivery of a topic. depth: keep-last queue per subscriber (oldest dropped when full);
    reliable: retransmit lost messages (ROS RELIABLE) or not (BEST_EFFORT, for high-rate sensors);
    latched: a subscriber joining late still receives the last message (ROS TRANSIENT_LOCAL)."""

    depth: int = 10
    reliable: bool = True
    latched: bool = False

    def __post_init__(self) -> None:
        if int(self.depth) < 1:
            raise TransportError(f"QoS.depth must be >= 1, got {self.depth}")


SENSOR_DATA = QoS(depth=5, reliable=False)  # cameras: a late frame is worth less than the next one
STATE = QoS(depth=1000, reliable=True)  # joint/pose/wrench: every sample is recorded; ~1 s of 1 kHz absorbs executor stalls
STATUS = QoS(depth=1, reliable=True, latched=True)  # latest status, also for late joiners


@dataclass(frozen=True)
class Topic:
    """A named, typed channel. name: ROS-style ("/arm/joint_states", or "~/status" relative to a node)."""

    name: str
    kind: str
    qos: QoS = STATE

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise TransportError(f"topic name {self.name!r} must be non-empty without spaces")
        if self.kind not in KINDS:
            raise TransportError(f"topic {self.name}: kind {self.kind!r} is not one of {sorted(KINDS)}")

    def check(self, msg: Any) -> Any:
        """Validate a message for this topic; raise TransportError naming the topic and field."""
        kind = KINDS[self.kind]
        if not kind.is_sample:
            if not isinstance(msg, Mapping):
                raise TransportError(f"topic {self.name} ({self.kind}): expected a dict, got {type(msg).__name__}")
            try:
                json.dumps(msg)
            except (TypeError, ValueError) as e:
                raise TransportError(f"topic {self.name} ({self.kind}): not JSON-serialisable: {e}") from None
            return msg
        if not isinstance(msg, Sample):
            raise TransportError(f"topic {self.name} ({self.kind}): expected a Sample, got {type(msg).__name__}")
        missing = [f for f in kind.required if f not in msg.fields]
        extra = [f for f in msg.fields if f not in kind.required + kind.optional]
        if missing or extra:
            raise TransportError(
                f"topic {self.name} ({self.kind}): fields {sorted(msg.fields)}; missing {missing}, unexpected {extra}"
            )
        for name, value in msg.fields.items():
            if msg.names and value.shape != (len(msg.names),):
                raise TransportError(f"topic {self.name} ({self.kind}): field {name} has shape {value.shape} for {len(msg.names)} names")
            want = kind.shapes.get(name)
            if want is not None and value.shape != want:
                raise TransportError(f"topic {self.name} ({self.kind}): field {name} has shape {value.shape}, expected {want}")
            if value.dtype.kind not in "biuf":
                raise TransportError(f"topic {self.name} ({self.kind}): field {name} has non-numeric dtype {value.dtype}")
        if self.kind == "image":
            img = msg.fields["image"]
            ok = (img.ndim == 2 and img.dtype.name in IMAGE_DTYPES) or (img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8)
            if not ok:
                raise TransportError(
                    f"topic {self.name} (image): image {img.dtype} {img.shape} is not (H, W, 3) uint8 or (H, W) {IMAGE_DTYPES}"
                )
        return msg


@dataclass(frozen=True)
class Reply:
    """Answer of a service call (as std_srvs Trigger/SetBool): success flag and a message for people."""

    success: bool
    message: str = ""


Handler = Callable[[Any], Reply]


def handle_request(service: str, handler: Handler, request: Any) -> Reply:
    """Run a service handler; an exception becomes a failed Reply naming the service (never a crash)."""
    try:
        reply = handler(request)
    except Exception as e:  # a service must answer, whatever went wrong
        log.exception("service %s failed", service)
        return Reply(False, f"{service}: {type(e).__name__}: {e}")
    if not isinstance(reply, Reply):
        return Reply(False, f"{service}: handler returned {type(reply).__name__}, not Reply")
    return reply


def check_service(name: str, kind: str, request: Any) -> None:
    if kind not in SERVICE_KINDS:
        raise TransportError(f"service {name}: kind {kind!r} is not one of {SERVICE_KINDS}")
    if kind == "trigger" and request is not None:
        raise TransportError(f"service {name} (trigger) takes no request, got {request!r}")
    if kind == "set_bool" and not isinstance(request, bool):
        raise TransportError(f"service {name} (set_bool) needs a bool request, got {request!r}")


# -- interface -------------------------------------------------------------------------------------
class Publisher(ABC):
    topic: Topic

    @abstractmethod
    def publish(self, msg: Any) -> None:
        """Send `msg` (validated against the topic); never blocks."""


class Subscription(ABC):
    """dropped: messages lost to a full queue (where the transport can tell); errors: callback or
    conversion exceptions (logged, not propagated), the last one in `last_error`."""

    def __init__(self, topic: Topic, callback: Callable[[Any], None]) -> None:
        self.topic = topic
        self.callback = callback
        self.dropped = 0
        self.errors = 0
        self.last_error = ""

    @abstractmethod
    def close(self) -> None: ...


class Transport(ABC):
    """Typed pub/sub and services. Callbacks run on transport threads: components lock their state."""

    @abstractmethod
    def publisher(self, topic: Topic) -> Publisher: ...

    @abstractmethod
    def subscribe(self, topic: Topic, callback: Callable[[Any], None]) -> Subscription: ...

    @abstractmethod
    def serve(self, name: str, kind: str, handler: Handler) -> None:
        """Answer calls of service `name`; handler(request) -> Reply (request None for trigger)."""

    @abstractmethod
    def call(self, name: str, kind: str, request: Any = None, timeout_s: float = 5.0) -> Reply: ...

    @abstractmethod
    def close(self) -> None:
        """Release every publisher, subscription and service this transport created."""

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- in-process implementation ---------------------------------------------------------------------
class _LocalSubscription(Subscription):
    """A keep-last queue drained by its own thread, so a slow callback never blocks a publisher."""

    def __init__(self, transport: "LocalTransport", topic: Topic, callback: Callable[[Any], None]) -> None:
        super().__init__(topic, callback)
        self.transport = transport
        self._queue: deque = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"sub{topic.name}", daemon=True)
        self._thread.start()

    def offer(self, msg: Any) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= self.topic.qos.depth:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(msg)
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                msg = self._queue.popleft()
                self._busy = True
            try:
                self.callback(msg)
            except Exception as e:
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("callback of topic %s failed", self.topic.name)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def idle(self, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._closed or (not self._queue and not self._busy), timeout_s)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        self.transport._forget(self)


class _LocalPublisher(Publisher):
    def __init__(self, transport: "LocalTransport", topic: Topic) -> None:
        self.transport = transport
        self.topic = topic

    def publish(self, msg: Any) -> None:
        self.transport._deliver(self.topic, self.topic.check(msg))


class LocalTransport(Transport):
    """In-process transport: thread-safe, non-blocking publish, keep-last queues per subscription,
    services called in the caller's thread (one call at a time per service)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: dict[str, str] = {}
        self._subs: dict[str, list[_LocalSubscription]] = {}
        self._latched: dict[str, Any] = {}
        self._services: dict[str, tuple[str, Handler, threading.Lock]] = {}
        self._closed = False

    def _claim(self, topic: Topic) -> None:
        known = self._kinds.setdefault(topic.name, topic.kind)
        if known != topic.kind:
            raise TransportError(f"topic {topic.name}: is {known}, cannot also be {topic.kind}")

    def publisher(self, topic: Topic) -> Publisher:
        with self._lock:
            self._check_open()
            self._claim(topic)
        return _LocalPublisher(self, topic)

    def subscribe(self, topic: Topic, callback: Callable[[Any], None]) -> Subscription:
        with self._lock:
            self._check_open()
            self._claim(topic)
            sub = _LocalSubscription(self, topic, callback)
            self._subs.setdefault(topic.name, []).append(sub)
            latched = self._latched.get(topic.name)
        if latched is not None:
            sub.offer(latched)
        return sub

    def _deliver(self, topic: Topic, msg: Any) -> None:
        with self._lock:
            if self._closed:
                raise TransportError(f"topic {topic.name}: publish on a closed transport")
            if topic.qos.latched:
                self._latched[topic.name] = msg
            subs = list(self._subs.get(topic.name, ()))
        for sub in subs:
            sub.offer(msg)

    def _forget(self, sub: _LocalSubscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.topic.name, [])
            if sub in subs:
                subs.remove(sub)

    def subscription_count(self, topic_name: str) -> int:
        with self._lock:
            return len(self._subs.get(topic_name, ()))

    def serve(self, name: str, kind: str, handler: Handler) -> None:
        check_service(name, kind, None if kind == "trigger" else False)
        with self._lock:
            self._check_open()
            if name in self._services:
                raise TransportError(f"service {name}: already served")
            self._services[name] = (kind, handler, threading.Lock())

    def call(self, name: str, kind: str, request: Any = None, timeout_s: float = 5.0) -> Reply:
        check_service(name, kind, request)
        with self._lock:
            entry = self._services.get(name)
        if entry is None:
            raise TransportError(f"service {name}: nobody serves it (services: {sorted(self._services)})")
        served_kind, handler, lock = entry
        if served_kind != kind:
            raise TransportError(f"service {name}: is {served_kind}, called as {kind}")
        if not lock.acquire(timeout=timeout_s):
            raise TransportError(f"service {name}: busy for more than {timeout_s} s")
        try:
            return handle_request(name, handler, request)
        finally:
            lock.release()

    def drain(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued message has been handled; False on timeout (tests, CLI shutdown)."""
        with self._lock:
            subs = [s for group in self._subs.values() for s in group]
        return all(s.idle(timeout_s) for s in subs)

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("transport is closed")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            subs = [s for group in self._subs.values() for s in group]
            self._services.clear()
        for sub in subs:
            sub.close()
