"""RecordingSession: the logic of a teleoperated recording session, whatever the transport.

A session routes incoming `Sample`s to episode-store streams (`Route`: fields of the messages on a
topic -> one stream), and turns operator commands into episodes:

    idle --start--> recording --stop_and_save / discard--> resetting --(reset_s elapsed)--> idle
                        |  mark_success / mark_failure label the open episode
                        +-- max_episode_s elapsed: saved automatically

During `resetting` (the operator puts the scene back) samples are ignored and `start` is refused; with
`auto_start` the next episode starts when the reset period ends. Samples stamped before the episode
started (in flight when `start` came) are ignored and counted as `early`. In-process sources (the twin,
robot_rl.runtime.teleop_session) skip the routes and `append()` straight to a stream; `listeners` hear
when an episode begins and ends, whichever command or timer caused it.

Nothing here blocks the caller on disk: `EpisodeWriter.append` queues, `commit(wait=False)` returns a
future whose result lands in the status (`episodes_saved`, `last_error`). All times are seconds on
`clock` (host monotonic by default), the same clock as the samples' timestamps.
"""

from __future__ import annotations

import enum
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from robot_rl.core.clock import now
from robot_rl.core.errors import ConfigError, StoreError
from robot_rl.data.schema import EpisodeMeta, StreamSpec
from robot_rl.data.store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter
from robot_rl.runtime.transport import (KINDS, SENSOR_DATA, STATE, STATUS, Reply, Sample, Topic,
                                        Transport)

log = logging.getLogger(__name__)

SERVICES = ("start", "stop_and_save", "discard", "mark_success", "mark_failure")


@dataclass(frozen=True)
class Route:
    """Samples of stream `spec.name` come from `fields` of `kind` messages on `topic` (several
    fields are concatenated on the last axis, e.g. wrench force + torque -> (6,))."""

    spec: StreamSpec
    topic: str
    kind: str
    fields: tuple[str, ...]
    names: tuple[str, ...] = ()  # joint_state: take these joints, in this order, by name

    def value(self, sample: Sample):
        """The stream value carried by `sample`; KeyError names the missing field or joints."""
        absent = [f for f in self.fields if f not in sample.fields]
        if absent:
            raise KeyError(f"field {absent}")
        values = [np.atleast_1d(sample.fields[f]) for f in self.fields]
        if self.names:
            index = {n: i for i, n in enumerate(sample.names)}
            missing = [n for n in self.names if n not in index]
            if missing:
                raise KeyError(f"joints {missing} (the message names {list(sample.names)})")
            rows = [index[n] for n in self.names]
            values = [v[rows] for v in values]
        return values[0] if len(values) == 1 else np.concatenate(values, axis=-1)

    @property
    def topic_decl(self) -> Topic:
        # images: best effort (a late frame is useless); state: reliable, every sample counts
        return Topic(self.topic, self.kind, SENSOR_DATA if self.kind == "image" else STATE)


_ROUTE_KEYS = ("topic", "kind", "field", "names")


def routes_from_config(streams: Mapping[str, Mapping[str, Any]], where: str = "streams") -> list[Route]:
    """Routes from a `{stream: {topic, kind, field, dtype, shape, rate_hz, units, ...}}` mapping
    (the `streams` block of configs/ros/recorder.yaml). `field` defaults to the kind's first field;
    `names` (joint_state) picks joints by name, in that order, whatever order the publisher uses."""
    if not isinstance(streams, Mapping) or not streams:
        raise ConfigError(f"{where}: needs at least one stream, got {streams!r}")
    routes = []
    for name, entry in streams.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}.{name}: expected a mapping, got {entry!r}")
        entry = dict(entry)
        for key in ("topic", "kind", "dtype", "shape", "rate_hz"):
            if key not in entry:
                raise ConfigError(f"{where}.{name}: missing {key!r}")
        kind = KINDS.get(entry["kind"])
        if kind is None or not kind.is_sample:
            raise ConfigError(f"{where}.{name}.kind: {entry['kind']!r} is not a sample kind {sorted(k for k in KINDS if KINDS[k].is_sample)}")
        fields = entry.get("field") or kind.required[0]
        fields = (fields,) if isinstance(fields, str) else tuple(fields)
        unknown = [f for f in fields if f not in kind.required + kind.optional]
        if unknown or not fields:
            raise ConfigError(f"{where}.{name}.field: {unknown or fields!r} not fields of {kind.name} {kind.required + kind.optional}")
        spec_args = {k: v for k, v in entry.items() if k not in _ROUTE_KEYS}
        try:
            spec = StreamSpec(name=str(name), **spec_args)
        except (TypeError, StoreError) as e:
            raise ConfigError(f"{where}.{name}: {e}") from None
        names = tuple(str(n) for n in entry.get("names") or ())
        if names and (kind.name != "joint_state" or len(names) * len(fields) != spec.shape[-1]):
            raise ConfigError(f"{where}.{name}.names: {len(names)} joint names need a joint_state stream of "
                              f"{len(names) * len(fields)} values, not {kind.name} {spec.shape}")
        routes.append(Route(spec, str(entry["topic"]), kind.name, fields, names))
    return routes


def open_writer(path: str | Path, routes: Sequence[Route], index_stream: str | None = None,
                **writer_kwargs: Any) -> EpisodeWriter:
    """A writer on the store at `path`, created with the routes' streams if absent. An existing store
    must have exactly these streams with the same dtype and shape."""
    specs = [r.spec for r in routes]
    if Path(path).exists():
        store = EpisodeStore.open(path, mode="a")
        have, want = store.streams, {s.name: s for s in specs}
        if sorted(have) != sorted(want):
            raise StoreError(f"{path}: has streams {sorted(have)}, the recorder is configured for {sorted(want)}")
        for name, spec in want.items():
            if (have[name].dtype, have[name].shape) != (spec.dtype, spec.shape):
                raise StoreError(
                    f"{path}: stream {name} is {have[name].dtype} {have[name].shape}, configured {spec.dtype} {spec.shape}"
                )
    else:
        store = EpisodeStore.create(path, specs, index_stream=index_stream)
    return store.writer(**writer_kwargs)


class State(str, enum.Enum):
    IDLE = "idle"
    RECORDING = "recording"
    RESETTING = "resetting"
    CLOSED = "closed"


@dataclass(frozen=True)
class SessionConfig:
    """Episode metadata and timing. max_episode_s: an episode longer than this is saved
    automatically (0: no limit); reset_s: pause after each episode; auto_start: start the next
    episode when the pause ends; extra: added to every episode's metadata (`extra`)."""

    task: str = ""
    rig: str = ""
    source: str = "teleop"
    calibration_id: str = ""
    max_episode_s: float = 0.0
    reset_s: float = 0.0
    auto_start: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)  # into each episode's meta.extra

    def __post_init__(self) -> None:
        for name in ("max_episode_s", "reset_s"):
            value = float(getattr(self, name))
            if not value >= 0.0:
                raise ConfigError(f"session.{name} must be >= 0 seconds, got {value}")
        EpisodeMeta(source=self.source)  # validates the source name


class RecordingSession:
    """See the module docstring. Thread-safe: samples and commands may come from any thread."""

    def __init__(self, writer: EpisodeWriter, routes: Sequence[Route], config: SessionConfig = SessionConfig(),
                 clock: Callable[[], float] = now) -> None:
        self.writer = writer
        self.config = config
        self.clock = clock
        self._by_topic: dict[str, list[Route]] = {}
        for route in routes:
            have = writer.store.streams.get(route.spec.name)
            if have is None:
                raise StoreError(f"{writer.path}: route to unknown stream {route.spec.name!r}; streams are {sorted(writer.store.streams)}")
            self._by_topic.setdefault(route.topic, []).append(route)
        kinds = {}
        for route in routes:
            if kinds.setdefault(route.topic, route.kind) != route.kind:
                raise ConfigError(f"topic {route.topic}: routed as both {kinds[route.topic]} and {route.kind}")
        self.routes = list(routes)
        self._lock = threading.RLock()
        self._state = State.IDLE
        self._t_start = 0.0
        self._t_reset_end = 0.0
        self._label: bool | None = None
        self._base = writer.store.n_episodes
        self._saved = 0
        self._discarded = 0
        self._pending: list[Future] = []
        self._last_error = ""
        self._closing = False
        self._reset_counts()
        self._transport: Transport | None = None
        self._status_pub = None
        self._subs: list = []
        # listener(event, episode): "begin" once recording, "saved" / "discarded" when the episode ends;
        # called on the caller's thread with the session lock held (keep it short, no blocking on other threads)
        self.listeners: list[Callable[[str, int], None]] = []

    # -- commands ----------------------------------------------------------------------------
    def start(self) -> Reply:
        with self._lock:
            self._advance()
            if self._state is State.RECORDING:
                return Reply(False, f"already recording episode {self._episode_index()} (for {self._elapsed():.1f} s)")
            if self._state is State.RESETTING:
                return Reply(False, f"resetting: {self._t_reset_end - self.clock():.1f} s left before the next episode")
            if self._state is State.CLOSED:
                return Reply(False, "session is closed")
            self._begin()
            return self._reply(True, f"recording episode {self._episode_index()}")

    def stop_and_save(self) -> Reply:
        with self._lock:
            self._advance()
            if self._state is not State.RECORDING:
                return Reply(False, f"not recording (state {self._state.value})")
            return self._save("stopped by operator")

    def discard(self) -> Reply:
        with self._lock:
            self._advance()
            if self._state is not State.RECORDING:
                return Reply(False, f"not recording (state {self._state.value})")
            index = self._episode_index()
            self._drop()
            return self._reply(True, f"discarded episode {index}")

    def mark_success(self) -> Reply:
        return self._mark(True)

    def mark_failure(self) -> Reply:
        return self._mark(False)

    def _mark(self, success: bool) -> Reply:
        with self._lock:
            self._advance()
            if self._state is not State.RECORDING:
                return Reply(False, f"no open episode to mark (state {self._state.value})")
            self._label = success
            return self._reply(True, f"episode {self._episode_index()} marked {'success' if success else 'failure'}")

    # -- samples -----------------------------------------------------------------------------
    def on_sample(self, topic: str, sample: Sample) -> None:
        """Route one sample of `topic` to its streams (ignored unless recording)."""
        with self._lock:
            self._advance()
            if self._state is not State.RECORDING:
                return
            if sample.t < self._t_start:
                self._early += 1
                return
            for route in self._by_topic.get(topic, ()):
                name = route.spec.name
                try:
                    value = route.value(sample)
                except KeyError as e:
                    self._reject(name, f"topic {topic}: sample has no {e.args[0]} (fields {sorted(sample.fields)})")
                    continue
                self._append(name, value, sample.t, f"topic {topic} field {'+'.join(route.fields)}")

    def append(self, stream: str, value, t: float) -> bool:
        """One sample of `stream` from an in-process source (no route; `t` on the source's own clock, e.g.
        the twin's episode time). Ignored unless recording; a bad sample is rejected and counted like a
        routed one. Returns whether it was queued. Timers are not applied here but by `tick()` and the
        commands, so a source's step (several streams) lands in one episode whole."""
        with self._lock:
            if self._state is not State.RECORDING:
                return False
            return self._append(stream, value, t, f"stream {stream}")

    def _append(self, name: str, value, t: float, where: str) -> bool:
        try:
            ok = self.writer.append(name, value, t)
        except StoreError as e:
            self._reject(name, f"{where}: {e}")
            return False
        counts = self._samples if ok else self._dropped
        counts[name] = counts.get(name, 0) + 1
        spec = self.writer.store.streams.get(name)
        if spec is not None:
            self._count_missing(spec, t)
        return ok

    def _count_missing(self, spec: StreamSpec, t: float) -> None:
        """Estimate samples lost before reaching us (e.g. by the middleware, which may not say so):
        an interval longer than 1.5 nominal periods is counted as round(interval * rate) - 1 missing."""
        last = self._t_last.get(spec.name)
        self._t_last[spec.name] = t
        if last is not None and (t - last) * spec.rate_hz > 1.5:
            self._missing[spec.name] = self._missing.get(spec.name, 0) + round((t - last) * spec.rate_hz) - 1

    def _reject(self, stream: str, message: str) -> None:
        self._rejected[stream] = self._rejected.get(stream, 0) + 1
        self._last_error = message

    # -- time and status ---------------------------------------------------------------------
    def tick(self) -> dict:
        """Apply timed transitions (episode limit, end of reset), publish and return the status."""
        with self._lock:
            self._advance()
            status = self.status()
        self._publish(status)
        return status

    def status(self) -> dict:
        """State, episode counters, timing (seconds), and per stream of the current episode: samples
        recorded, dropped (write queue full), rejected (bad field/shape/time), missing (estimated from
        gaps in the timestamps at the stream's nominal rate; saved in the episode's `extra.missing`)."""
        with self._lock:
            t = self.clock()
            return {
                "state": self._state.value,
                "episode": self._episode_index() if self._state is State.RECORDING else None,
                "episodes_saved": self._saved,
                "episodes_pending": len(self._pending),
                "episodes_discarded": self._discarded,
                "elapsed_s": round(t - self._t_start, 3) if self._state is State.RECORDING else 0.0,
                "reset_remaining_s": round(max(0.0, self._t_reset_end - t), 3) if self._state is State.RESETTING else 0.0,
                "label": self._label,
                "samples": dict(self._samples),
                "dropped": {k: v for k, v in self._dropped.items() if v},
                "rejected": {k: v for k, v in self._rejected.items() if v},
                "missing": {k: v for k, v in self._missing.items() if v},
                "early": self._early,
                "last_error": self._last_error,
                "store": str(self.writer.path),
            }

    def wait_saved(self, timeout_s: float | None = None) -> None:
        """Block until every saved episode is durable (shutdown, tests); raises the first failure."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.result(timeout_s)

    # -- wiring ------------------------------------------------------------------------------
    def attach(self, transport: Transport, prefix: str = "recorder/") -> None:
        """Subscribe to the routed topics, serve the command services (`<prefix>start`, ...: trigger)
        and publish the status on `<prefix>status` (latched)."""
        with self._lock:
            if self._transport is not None:
                raise StoreError(f"{self.writer.path}: session is already attached to a transport")
            self._transport = transport
            self._status_pub = transport.publisher(Topic(f"{prefix}status", "status", STATUS))
        for topic in self._by_topic:
            decl = self._by_topic[topic][0].topic_decl
            self._subs.append(transport.subscribe(decl, lambda msg, _t=topic: self.on_sample(_t, msg)))
        for name in SERVICES:
            command = getattr(self, name)
            transport.serve(f"{prefix}{name}", "trigger", lambda _req, _c=command: _c())
        self.tick()

    def detach(self) -> None:
        """Forget the transport (the caller closes it, which releases subscriptions and services)."""
        with self._lock:
            self._transport = None
            self._status_pub = None
            self._subs.clear()

    def close(self, save_open: bool = True) -> None:
        """End the session: an open episode is saved (or discarded), pending saves awaited, writer closed."""
        with self._lock:
            if self._state is State.CLOSED:
                return
            self._closing = True   # no auto_start from the transitions below
            if self._state is State.RECORDING:
                if save_open:
                    self._save("saved at session close")
                else:
                    self._drop()
            self._state = State.CLOSED
        try:
            self.wait_saved()
        finally:
            self.writer.close()

    # -- internals (lock held) -----------------------------------------------------------------
    def _reset_counts(self) -> None:
        names = [r.spec.name for r in self._all_routes()]
        self._samples = {n: 0 for n in names}
        self._dropped = {n: 0 for n in names}
        self._rejected = {n: 0 for n in names}
        self._missing = {n: 0 for n in names}
        self._t_last: dict[str, float] = {}
        self._early = 0

    def _all_routes(self) -> list[Route]:
        return [r for group in self._by_topic.values() for r in group]

    def _episode_index(self) -> int:
        return self._base + self._saved + len(self._pending)

    def _elapsed(self) -> float:
        return self.clock() - self._t_start

    def _begin(self) -> None:
        c = self.config
        self.writer.begin_episode(EpisodeMeta(task=c.task, rig=c.rig, source=c.source, calibration_id=c.calibration_id,
                                              extra=dict(c.extra)))
        self._state = State.RECORDING
        self._t_start = self.clock()
        self._label = None
        self._reset_counts()
        self._notify("begin", self._episode_index())

    def _save(self, why: str) -> Reply:
        index = self._episode_index()
        if not any(self._samples.values()):
            self._drop()
            sources = f"on {sorted(self._by_topic)}" if self._by_topic else "from its source"
            self._last_error = f"episode {index}: no samples arrived {sources}; discarded"
            return self._reply(False, self._last_error)
        counts = {k: v for k, v in self._samples.items()}
        missing = {k: v for k, v in self._missing.items() if v}
        future = self.writer.commit(success=self._label, wait=False, notes=why, missing=missing)
        self._pending.append(future)
        future.add_done_callback(self._saved_cb)
        self._end_episode("saved", index)
        return self._reply(True, f"saving episode {index} ({why}; samples {counts})")

    def _saved_cb(self, future: Future) -> None:
        with self._lock:
            if future in self._pending:
                self._pending.remove(future)
            error = future.exception()
            if error is None:
                self._saved += 1
            else:
                self._last_error = f"saving failed: {error}"
        self.tick()

    def _drop(self) -> None:
        index = self._episode_index()
        self.writer.discard()
        self._discarded += 1
        self._end_episode("discarded", index)

    def _end_episode(self, event: str, index: int) -> None:
        self._state = State.RESETTING
        self._t_reset_end = self.clock() + self.config.reset_s
        self._notify(event, index)
        self._advance()

    def _notify(self, event: str, index: int) -> None:
        for listener in list(self.listeners):
            listener(event, index)

    def _advance(self) -> None:
        """Timed transitions, evaluated on every call (no timer thread of its own)."""
        if self._state is State.RECORDING and self.config.max_episode_s > 0 and self._elapsed() >= self.config.max_episode_s:
            self._save(f"reached max_episode_s={self.config.max_episode_s}")
        if self._state is State.RESETTING and self.clock() >= self._t_reset_end:
            self._state = State.IDLE
            if self.config.auto_start and not self._closing:
                self._begin()

    def _reply(self, success: bool, message: str) -> Reply:
        self._publish(self.status())
        return Reply(success, message)

    def _publish(self, status: dict) -> None:
        pub = self._status_pub
        if pub is None:
            return
        try:
            pub.publish(status)
        except Exception:  # a status that cannot be sent must never cost an episode
            log.warning("status publish failed", exc_info=True)
