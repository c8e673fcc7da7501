"""The policy runner's two ends on a Transport (ROS-free; policy_node wraps them).

`TopicObservations`: samples of the mapped topics -> ObservationAssembler, each with its own header
stamp (the time the sample describes), under the store stream names the policy was trained on; the
runner's `assemble()` reads it under the same lock (callbacks run on transport threads).
`ArmView`: the latest /arm/ee_pose and /arm/diagnostics as the snapshot robot_rl.runtime.loop_link's
DeltaTargetConverter anchors on (controller mode, reference pose, measured TCP).
`TargetPublisher`: the `loop` end of robot_rl.runtime.loop_link.LoopActionSink: each EETarget becomes
a /gripper/command (closure) and a /arm/target_pose stamped with the time to reach it.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Mapping

import numpy as np

from robot_rl.control.controller import ControllerMode
from robot_rl.core.errors import ConfigError
from robot_rl.runtime.observations import ObservationAssembler
from robot_rl.runtime.recording import Route, routes_from_config
from robot_rl.runtime.transport import Sample, Transport, TransportError
from robot_rl_ros import graph


def observation_routes(entries: Mapping[str, Mapping], streams, where: str) -> tuple[list[Route], set[str]]:
    """Routes (topic, kind, field, names) of the policy's `streams` from the `observations` parameter
    block (the recorder's stream format). `shape` is optional: given, every value is checked against
    it; absent, the stream is unchecked (returned in the set). dtype/rate_hz are not needed here."""
    missing = [s for s in streams if s not in entries]
    if missing:
        raise ConfigError(f"{where}: the policy reads stream(s) {missing} but no topic is mapped for them "
                          f"(mapped: {sorted(entries)})")
    filled, unchecked = {}, set()
    for s in streams:
        e = dict(entries[s])
        if "shape" not in e:
            unchecked.add(s)
            n_names = len(e.get("names") or ())
            n_fields = 1 if isinstance(e.get("field", ""), str) else len(e["field"])
            e["shape"] = [n_names * n_fields] if n_names else [1]
        e.setdefault("dtype", "float32")
        e.setdefault("rate_hz", 1.0)
        filled[s] = e
    return routes_from_config(filled, where), unchecked


class TopicObservations:
    def __init__(self, routes: list[Route], unchecked: set[str], assembler: ObservationAssembler) -> None:
        self.assembler = assembler
        self.unchecked = unchecked
        self.by_topic: dict[str, list[Route]] = {}
        for r in routes:
            self.by_topic.setdefault(r.topic, []).append(r)
        self.received = {r.spec.name: 0 for r in routes}
        self._lock = threading.Lock()

    def attach(self, transport: Transport) -> list:
        return [transport.subscribe(routes[0].topic_decl, lambda s, rs=routes: self.on_sample(rs, s))
                for routes in self.by_topic.values()]

    def on_sample(self, routes: list[Route], sample: Sample) -> None:
        values = []
        for r in routes:
            try:
                v = np.asarray(r.value(sample), np.float32 if r.kind != "image" else None)
            except KeyError as e:
                raise TransportError(f"topic {r.topic}: stream {r.spec.name}: missing {e.args[0]}") from None
            if r.spec.name not in self.unchecked and v.shape != r.spec.shape:
                raise TransportError(f"topic {r.topic}: stream {r.spec.name} has shape {v.shape}, the mapping "
                                     f"says {r.spec.shape}")
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

    def __init__(self) -> None:
        self.last = None
        self._diag: dict | None = None

    def attach(self, transport: Transport) -> list:
        return [transport.subscribe(graph.EE_POSE, self.on_pose),
                transport.subscribe(graph.ARM_DIAGNOSTICS, self.on_diagnostics)]

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


class TargetPublisher:
    def __init__(self, transport: Transport, frame: str = "base") -> None:
        self.frame = frame
        self.pose = transport.publisher(graph.TARGET_POSE)
        self.gripper = transport.publisher(graph.GRIPPER_COMMAND)
        self.sent = 0

    def push_target(self, target) -> None:
        # the closure first: arm_node/twin_node attach the latest closure to the next pose target
        self.gripper.publish(Sample(target.t, {"position": np.array([target.gripper])},
                                    names=(graph.GRIPPER_CLOSURE,)))
        self.pose.publish(Sample(target.t, {"position": target.position, "quat": target.quat}, self.frame))
        self.sent += 1
