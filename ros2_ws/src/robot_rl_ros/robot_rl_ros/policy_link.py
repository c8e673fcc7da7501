"""The policy runner's two ends on a Transport (ROS-free; policy_node wraps them).

`TopicObservations`: samples of the mapped topics -> ObservationAssembler, each with its own header
stamp (the time the sample describes), under the store stream names the policy was trained on; the
runner's `assemble()` reads it under the same lock (callbacks run on the executor thread and only
store the sample: O(1), no resizing or inference there). A policy wants the newest sample, not a
backlog: the subscriptions are KEEP_LAST with a small depth (graph.POLICY_STATE_INPUT: best effort,
matching reliable and best-effort publishers alike; graph.POLICY_IMAGE_INPUT: reliable, large frames
do not survive best effort; `qos` per stream overrides).
`ArmView`: the latest /arm/ee_pose and /arm/diagnostics as the snapshot robot_rl.runtime.loop_link's
DeltaTargetConverter anchors on (controller mode, reference pose, measured TCP).
`TargetPublisher`: the `loop` end of robot_rl.runtime.loop_link.LoopActionSink: each EETarget becomes
a /gripper/command (closure) and a /arm/target_pose stamped with the time to reach it, once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Mapping

import numpy as np

from robot_rl.control.controller import ControllerMode
from robot_rl.core.errors import ConfigError
from robot_rl.runtime.observation_assembly import ObservationAssembler
from robot_rl.runtime.recording_session import Route, routes_from_config
from robot_rl.runtime.transport import QoS, Sample, Topic, Transport, TransportError
from robot_rl_ros import graph

_POLICY_KEYS = ("qos", "max_age_s")   # observation entry keys of the policy only (not stream specs)


@dataclass
class ObservationOptions:
    """Per-stream options of the policy's `observations` block beyond the route: the subscription QoS,
    the max age of the newest sample (None: runtime.max_staleness_s), the interpolation of history frames
    and, for images, the frame shape the policy reads (frames of another size are resized to it)."""

    qos: dict[str, QoS] = field(default_factory=dict)
    max_age_s: dict[str, float] = field(default_factory=dict)
    interp: dict[str, str] = field(default_factory=dict)
    image_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _qos(value, where: str, default: QoS) -> QoS:
    if value is None:
        return default
    if not isinstance(value, Mapping) or set(value) - {"reliable", "depth"}:
        raise ConfigError(f"{where}: {value!r}, expected a mapping with 'reliable' (true|false) and/or 'depth' "
                          "(e.g. {reliable: true, depth: 1})")
    depth, reliable = value.get("depth", default.depth), value.get("reliable", default.reliable)
    if not isinstance(reliable, bool) or isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ConfigError(f"{where}: reliable={reliable!r}, depth={depth!r}; reliable must be true or false "
                          "and depth an integer >= 1")
    return QoS(depth=depth, reliable=reliable)


def observation_routes(entries: Mapping[str, Mapping], streams, where: str,
                       options: ObservationOptions | None = None) -> tuple[list[Route], set[str]]:
    """Routes (topic, kind, field, names) of the policy's `streams` from the `observations` parameter
    block (the recorder's stream format). `shape` is optional: given, every value is checked against
    it (an image's is the frame size the policy reads: frames of another size are resized, their
    channels must agree); absent, the stream is unchecked (returned in the set). dtype/rate_hz are not
    needed here. Policy-only keys, collected into `options` when given: `qos` ({reliable, depth} of
    the subscription), `max_age_s` (the oldest the newest sample may be when acting). `interp`
    defaults to hold for images, else the twin stores' (linear; slerp for ee_quat)."""
    from robot_rl.runtime.loop_link import STREAM_INTERP

    missing = [s for s in streams if s not in entries]
    if missing:
        raise ConfigError(f"{where}: the policy reads stream(s) {missing} but no topic is mapped for them "
                          f"(mapped: {sorted(entries)})")
    options = options if options is not None else ObservationOptions()
    filled, unchecked = {}, set()
    for s in streams:
        if not isinstance(entries[s], Mapping):
            raise ConfigError(f"{where}.{s}: expected a mapping, got {entries[s]!r}")
        e = dict(entries[s])
        image = e.get("kind") == "image"
        options.qos[s] = _qos(e.pop("qos", None), f"{where}.{s}.qos",
                              graph.POLICY_IMAGE_INPUT if image else graph.POLICY_STATE_INPUT)
        age = e.pop("max_age_s", None)
        if age is not None:
            if isinstance(age, bool) or not isinstance(age, (int, float)) or not age > 0:
                raise ConfigError(f"{where}.{s}.max_age_s: {age!r}, expected seconds > 0")
            options.max_age_s[s] = float(age)
        if "shape" not in e:
            unchecked.add(s)
            n_names = len(e.get("names") or ())
            n_fields = 1 if isinstance(e.get("field", ""), str) else len(e["field"])
            e["shape"] = [n_names * n_fields] if n_names else [1]
        elif image:
            options.image_shapes[s] = tuple(int(n) for n in e["shape"])
        e.setdefault("interp", "hold" if image else STREAM_INTERP.get(s, "linear"))
        options.interp[s] = str(e["interp"])
        e.setdefault("dtype", "uint8" if image else "float32")
        e.setdefault("rate_hz", 1.0)
        filled[s] = e
    return routes_from_config(filled, where), unchecked


class TopicObservations:
    """qos: {stream: QoS} of the subscriptions (ObservationOptions.qos; default graph.POLICY_*_INPUT)."""

    def __init__(self, routes: list[Route], unchecked: set[str], assembler: ObservationAssembler,
                 qos: Mapping[str, QoS] | None = None) -> None:
        self.assembler = assembler
        self.unchecked = unchecked
        self.by_topic: dict[str, list[Route]] = {}
        for r in routes:
            self.by_topic.setdefault(r.topic, []).append(r)
        self.qos = {t: (qos or {}).get(rs[0].spec.name) or
                    (graph.POLICY_IMAGE_INPUT if rs[0].kind == "image" else graph.POLICY_STATE_INPUT)
                    for t, rs in self.by_topic.items()}
        self.received = {r.spec.name: 0 for r in routes}
        self._taps: dict[str, list] = {}
        self._lock = threading.Lock()

    def tap(self, topic: str, callback) -> bool:
        """Also hand each sample of `topic` to `callback` (one subscription, one conversion per message);
        False when `topic` is not observed."""
        if topic not in self.by_topic:
            return False
        self._taps.setdefault(topic, []).append(callback)
        return True

    def attach(self, transport: Transport) -> list:
        return [transport.subscribe(Topic(topic, routes[0].kind, self.qos[topic]),
                                    lambda s, rs=routes, t=topic: self._on_message(t, rs, s))
                for topic, routes in self.by_topic.items()]

    def _on_message(self, topic: str, routes: list[Route], sample: Sample) -> None:
        for callback in self._taps.get(topic, ()):
            callback(sample)
        self.on_sample(routes, sample)

    def on_sample(self, routes: list[Route], sample: Sample) -> None:
        values = []
        for r in routes:
            try:
                v = np.asarray(r.value(sample), np.float32 if r.kind != "image" else None)
            except KeyError as e:
                raise TransportError(f"topic {r.topic}: stream {r.spec.name}: missing {e.args[0]}") from None
            if r.spec.name not in self.unchecked and v.shape != r.spec.shape and not (
                    r.kind == "image" and v.ndim == len(r.spec.shape) and v.shape[2:] == r.spec.shape[2:]):
                raise TransportError(f"topic {r.topic}: stream {r.spec.name} has shape {v.shape}, the mapping "
                                     f"says {r.spec.shape}" + (" (frames of another size are resized, but the "
                                                               "channels must agree)" if r.kind == "image" else ""))
            values.append((r.spec.name, v))
        with self._lock:
            for name, v in values:
                self.assembler.push(name, v, sample.t)
                self.received[name] += 1

    def assemble(self, t_now: float) -> dict:
        with self._lock:
            return self.assembler.assemble(t_now)

    def replace(self, assembler: ObservationAssembler) -> None:
        """Start over with an empty history (a new episode, a reactivated node)."""
        with self._lock:
            self.assembler = assembler


class ArmView:
    """`.last`: SimpleNamespace(t, ee_pos, mode, ref_pos, ref_quat) or None before the first pose."""

    def __init__(self, notify=None) -> None:
        self.last = None
        self.notify = notify          # called after each pose (a waiter wakes on news)
        self._diag: dict | None = None

    def attach(self, transport: Transport, observations: TopicObservations | None = None) -> list:
        """Subscribe to the pose (or tap the observations' subscription of it) and the diagnostics."""
        subs = [transport.subscribe(graph.ARM_DIAGNOSTICS, self.on_diagnostics)]
        if observations is None or not observations.tap(graph.EE_POSE.name, self.on_pose):
            subs.append(transport.subscribe(Topic(graph.EE_POSE.name, graph.EE_POSE.kind, graph.POLICY_STATE_INPUT),
                                            self.on_pose))
        return subs

    def on_diagnostics(self, d: dict) -> None:
        self._diag = d

    def on_pose(self, s: Sample) -> None:
        d = self._diag
        pos, quat = np.asarray(s.fields["position"], np.float64), np.asarray(s.fields["quat"], np.float64)
        if d is None:   # no diagnostics yet: anchor on the measured pose
            self.last = SimpleNamespace(t=s.t, ee_pos=pos, mode=int(ControllerMode.HOLD), ref_pos=pos, ref_quat=quat)
        else:
            self.last = SimpleNamespace(t=s.t, ee_pos=pos, mode=int(d["mode_id"]),
                                        ref_pos=np.asarray(d["ref_pos"], np.float64),
                                        ref_quat=np.asarray(d["ref_quat"], np.float64))
        if self.notify is not None:
            self.notify()


class TargetPublisher:
    """`lead_ms()`: percentiles of stamp - publish time over the last targets (the timing contract,
    docs/ros2.md: a target is published once, ahead of the time it is to be reached)."""

    def __init__(self, transport: Transport, frame: str = "base", clock=None) -> None:
        from collections import deque

        from robot_rl.core.clock import now

        self.frame = frame
        self.clock = clock or now
        self.pose = transport.publisher(graph.TARGET_POSE)
        self.gripper = transport.publisher(graph.GRIPPER_COMMAND)
        self.sent = 0
        self._leads: deque = deque(maxlen=1000)

    def push_target(self, target) -> None:
        """Publish `target` once (LoopActionSink sends each target once, stamps increasing)."""
        # the closure first: arm_node/twin_node attach the latest closure to the next pose target
        self.gripper.publish(Sample(target.t, {"position": np.array([target.gripper])},
                                    names=(graph.GRIPPER_CLOSURE,)))
        self.pose.publish(Sample(target.t, {"position": target.position, "quat": target.quat}, self.frame))
        self._leads.append(target.t - self.clock())
        self.sent += 1

    def lead_ms(self) -> dict[str, float] | None:
        if not self._leads:
            return None
        a = np.asarray(self._leads) * 1e3
        return {f"p{q}": round(float(np.percentile(a, q)), 2) for q in (5, 50, 95)}
