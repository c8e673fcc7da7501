"""RecordingSession: the logic of a teleoperated recording session, whatever the transport.

A session routes incoming `Sample`s to episode-store streams (`Route`: fields of the messages on a
topic -> one stream), and turns operator commands into episodes:

    idle --start--> recording --stop_and_save / discard--> resetting --(reset_s elapsed)--> idle
                        |  mark_success / mark_failure label the open episode
                        +-- max_episode_s elapsed: saved automatically

During `resetting` (the operator puts the scene back) samples are ignored and `start` is refused; with
`auto_start` the next episode starts when the reset period ends. Samples stamped before the episode
started (in flight when `start` came) are ignored and counted as `early`.

Nothing is lost or refused silently. Per stream of the open episode the session counts samples
stored, `dropped` (write queue full), `rejected` by reason (`clock`: header stamp more than
`max_stamp_skew_s` ahead of the recorder's clock; `unstamped`: days off, a stamp never set; `nonfinite`:
NaN/inf values; `shape`, `field`, `time`: not the configured stream; `convert`: not a valid message
of its kind, reported by the transport), and `missing`: samples the stream's nominal rate says were
sent but never arrived, expected = round(span of stamps * rate_hz) + 1, so publisher jitter is not
counted as loss. The first rejection of each reason is logged at once, every count at the end of the
episode, naming the topic. Counters and the operator's label are journaled into the open episode as
they change, so a crashed recorder's episode keeps them. An episode in which a `required` stream got
no sample is refused (discarded, the command fails), and so is one where a stream's stamps were all
more than `max_stamp_skew_s` behind the session clock on arrival (`min_lag_s`: a publisher clock that
is off; a backlog in the queues raises only some lags, not the minimum). In-process sources (the twin,
robot_rl.runtime.teleop_session) skip the routes and `append()` straight to a stream; `listeners` hear
when an episode begins and ends, whichever command or timer caused it.

Nothing here blocks the caller on disk: `EpisodeWriter.append` queues, `commit(wait=False)` returns a
future whose result lands in the status (`episodes_saved`, `last_error`). All times are seconds on
`clock` (host monotonic by default), the same clock as the samples' timestamps.
"""

from __future__ import annotations

import difflib
import enum
import logging
import math
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from robot_rl.core.clock import now
from robot_rl.core.errors import ConfigError, StoreError
from robot_rl.data.schema import EpisodeMeta, StreamSpec
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter
from robot_rl.runtime.transport import KINDS, SENSOR_DATA, STATE, STATUS, QoS, Reply, Sample, Topic, Transport

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
    reliability: str = "auto"    # auto (match the publishers, see qos()) | reliable | best_effort
    depth: int = 0               # subscription queue; 0: sized for the rate (QUEUE_S of samples)
    required: bool = True        # an episode without a sample of this stream is refused

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

    def qos(self, offered_reliable: bool | None = None) -> QoS:
        """Subscription QoS. `reliability: auto` matches the publishers as `ros2 bag record` does:
        reliable unless a publisher offers only best effort (`offered_reliable=False`; a reliable
        subscription would never match it). Reliable is the default with no publisher known: a
        640x480 frame spans ~15 UDP fragments and best effort drops the whole frame when one is lost.
        Depth: QUEUE_S seconds of samples at the nominal rate (>= 10), so executor stalls queue up
        rather than lose samples."""
        reliable = {"reliable": True, "best_effort": False}.get(self.reliability)
        if reliable is None:
            reliable = offered_reliable is not False
        depth = self.depth or max(10, math.ceil(self.spec.rate_hz * QUEUE_S))
        return QoS(depth=depth, reliable=reliable)

    @property
    def topic_decl(self) -> Topic:
        """The topic as a consumer that wants the newest sample declares it (robot_rl_ros.policy_link):
        images best effort, state reliable. The recorder subscribes with qos() instead."""
        return Topic(self.topic, self.kind, SENSOR_DATA if self.kind == "image" else STATE)


QUEUE_S = 1.0
RELIABILITIES = ("auto", "reliable", "best_effort")
_ROUTE_KEYS = ("topic", "kind", "field", "names", "reliability", "depth", "required", "camera")


def routes_from_config(streams: Mapping[str, Mapping[str, Any]], where: str = "streams",
                       cameras: Mapping[str, Mapping[str, Any]] | None = None, rig: str = "") -> list[Route]:
    """Routes from a `{stream: {topic, kind, field, dtype, shape, rate_hz, units, ...}}` mapping
    (the `streams` block of configs/ros/recorder.yaml). `field` defaults to the kind's first field;
    `names` (joint_state) picks joints by name, in that order, whatever order the publisher uses;
    `reliability`, `depth`: the subscription's QoS (Route.qos); `required` (default true).
    An image stream with `camera: <name>` takes its resolution (and rate, if not given) from
    `cameras[<name>]` (the rig file's `cameras` block, the same one the camera drivers use), so the
    recorder stores what the camera sends."""
    if not isinstance(streams, Mapping) or not streams:
        raise ConfigError(f"{where}: needs at least one stream, got {streams!r}")
    routes = []
    for name, entry in streams.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}.{name}: expected a mapping, got {entry!r}")
        entry = dict(entry)
        unknown = sorted(set(entry) - set(_ROUTE_KEYS) - set(StreamSpec.__dataclass_fields__) - {"name"})
        if unknown:
            known = sorted(set(_ROUTE_KEYS) | set(StreamSpec.__dataclass_fields__) - {"name"})
            raise ConfigError(f"{where}.{name}: unknown key(s) {unknown}{_did_you_mean(unknown[0], known)}; keys are {known}")
        if entry.get("camera"):
            entry = _camera_resolution(entry, cameras, f"{where}.{name}", rig)
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
        reliability = str(entry.get("reliability", "auto"))
        if reliability not in RELIABILITIES:
            raise ConfigError(f"{where}.{name}.reliability: {reliability!r} is not one of {list(RELIABILITIES)}")
        depth = entry.get("depth", 0)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ConfigError(f"{where}.{name}.depth: {depth!r} is not a queue length (>= 1; 0 sizes it for the rate)")
        required = entry.get("required", True)
        if not isinstance(required, bool):
            raise ConfigError(f"{where}.{name}.required: {required!r} is not true or false")
        routes.append(Route(spec, str(entry["topic"]), kind.name, fields, names, reliability, depth, required))
    return routes


def _did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _camera_resolution(entry: dict, cameras, where: str, rig: str) -> dict:
    """`shape` (H, W, 3) and default `rate_hz` of an image stream from its camera's entry in the rig."""
    camera = str(entry["camera"])
    source = f"rig {rig!r}" if rig else "the rig"
    if cameras is None:
        raise ConfigError(f"{where}.camera: {camera!r} needs a rig with a `cameras` block (set the `rig` parameter)")
    cam = cameras.get(camera)
    if not isinstance(cam, Mapping) or "width" not in cam or "height" not in cam:
        raise ConfigError(f"{where}.camera: {source} has no camera {camera!r} with width and height "
                          f"(cameras: {sorted(cameras)})")
    shape = [int(cam["height"]), int(cam["width"]), 3]
    if "shape" in entry and [int(v) for v in entry["shape"]] != shape:
        raise ConfigError(f"{where}.shape: {list(entry['shape'])} but camera {camera!r} of {source} sends "
                          f"{cam['width']}x{cam['height']} frames, i.e. shape {shape}; drop `shape` to follow the camera")
    entry = {**entry, "shape": shape}
    if "rate_hz" not in entry and "fps" in cam:
        entry["rate_hz"] = float(cam["fps"])
    return entry


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
    return EpisodeWriter(store, **writer_kwargs)


def recover_interrupted(path: str | Path, on_interrupted: str) -> dict | None:
    """Deal with an episode a crashed recorder left open in the store at `path` before a writer opens it:
    "commit" keeps what was flushed (source `recovered`, with the label and loss counters journaled up
    to the crash), "discard" drops it, "error" refuses. Returns recover()'s summary, None if nothing was
    open, so the caller can log what happened."""
    if on_interrupted not in ("commit", "discard", "error"):
        raise ConfigError(f"on_interrupted: {on_interrupted!r} is not one of ['commit', 'discard', 'error']")
    if not Path(path).exists():
        return None
    store = EpisodeStore.open(path, mode="a")
    journal = store.header.get("open_episode")
    if not journal:
        return None
    if on_interrupted == "error":
        raise StoreError(f"{path}: holds an episode a crashed recorder left open; run `robot-rl data recover {path}` "
                         f"or set on_interrupted to commit or discard")
    from robot_rl.data.recover import recover

    summary = recover(store, discard=on_interrupted == "discard")
    meta = journal.get("meta") or {}
    return {**summary, "label": meta.get("success"), "missing": (meta.get("extra") or {}).get("missing", {})}


class State(str, enum.Enum):
    IDLE = "idle"
    RECORDING = "recording"
    RESETTING = "resetting"
    CLOSED = "closed"


@dataclass(frozen=True)
class SessionConfig:
    """Episode metadata and timing. max_episode_s: an episode longer than this is saved
    automatically (0: no limit); reset_s: pause after each episode; auto_start: start the next
    episode when the pause ends; max_stamp_skew_s: a routed sample stamped further than this ahead of
    the session clock is rejected (`clock`), an episode whose stream lagged behind it by more on every
    sample is refused; extra: added to every episode's metadata (`extra`)."""

    task: str = ""
    rig: str = ""
    source: str = "teleop"
    calibration_id: str = ""
    max_episode_s: float = 0.0
    reset_s: float = 0.0
    auto_start: bool = False
    max_stamp_skew_s: float = 1.0
    extra: Mapping[str, Any] = field(default_factory=dict)  # into each episode's meta.extra

    def __post_init__(self) -> None:
        for name in ("max_episode_s", "reset_s"):
            value = float(getattr(self, name))
            if not value >= 0.0:
                raise ConfigError(f"session.{name} must be >= 0 seconds, got {value}")
        if not float(self.max_stamp_skew_s) > 0.0:
            raise ConfigError(f"session.max_stamp_skew_s must be > 0 seconds, got {self.max_stamp_skew_s}")
        EpisodeMeta(source=self.source)  # validates the source name


UNSTAMPED_S = 86400.0     # a stamp this far from the clock was never set
JOURNAL_PERIOD_S = 1.0  # counters reach the open episode's journal at most this often (labels at once)


class RecordingSession:
    """See the module docstring. Thread-safe: samples and commands may come from any thread.
    log(level, message): where rejections, losses and refusals are reported (levels "info", "warn",
    "error"; default: the `logging` module)."""

    def __init__(self, writer: EpisodeWriter, routes: Sequence[Route], config: SessionConfig = SessionConfig(),
                 clock: Callable[[], float] = now, log: Callable[[str, str], None] | None = None) -> None:
        self.writer = writer
        self.config = config
        self.clock = clock
        self.log = log or _default_log
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
        # the name a topic really has on the transport (ROS: after remapping), for messages
        self.topic_names: dict[str, str] = {t: t for t in self._by_topic}
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
        self._subs: dict[str, Any] = {}
        # listener(event, episode): "begin" once recording, "saved" / "discarded" when the episode ends;
        # called on the caller's thread with the session lock held (keep it short, no blocking on other threads)
        self.listeners: list[Callable[[str, int], None]] = []

    @property
    def topics(self) -> dict[str, list[Route]]:
        """Routed topic -> its routes (one subscription per topic)."""
        return dict(self._by_topic)

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
            self._journal(force=True)  # a label survives a crash of the recorder from now on
            return self._reply(True, f"episode {self._episode_index()} marked {'success' if success else 'failure'}")

    # -- samples -----------------------------------------------------------------------------
    def on_sample(self, topic: str, sample: Sample) -> None:
        """Route one sample of `topic` to its streams (ignored unless recording)."""
        with self._lock:
            self._advance()
            if self._state is not State.RECORDING:
                return
            routes = self._by_topic.get(topic, ())
            lag = self.clock() - sample.t
            if lag < -self.config.max_stamp_skew_s or lag > UNSTAMPED_S:
                # from the future, or days old (a stamp never set): no queue delay explains either
                reason, hint = ("unstamped", "header.stamp unset?") if abs(lag) > UNSTAMPED_S else \
                    ("clock", "is the publisher's clock synchronised?")
                for route in routes:
                    self._reject(route.spec.name, reason, f"topic {self.topic_names.get(topic, topic)}: stamp "
                                 f"{abs(lag):.3f} s {'behind' if lag > 0 else 'ahead of'} the recorder clock ({hint})")
                return
            for route in routes:
                # the smallest lag is the clock offset plus the fastest delivery; queueing only adds to it
                name = route.spec.name
                self._min_lag[name] = min(self._min_lag.get(name, math.inf), lag)
            if sample.t < self._t_start:
                self._early += 1
                return
            for route in routes:
                name = route.spec.name
                self._arrived(route.spec, sample.t)
                try:
                    value = route.value(sample)
                except KeyError as e:
                    self._reject(name, "field", f"topic {self.topic_names.get(topic, topic)}: sample has no "
                                 f"{e.args[0]} (fields {sorted(sample.fields)})")
                    continue
                self._append(name, value, sample.t, f"topic {self.topic_names.get(topic, topic)} field {'+'.join(route.fields)}")

    def reject_unconverted(self, topic: str, count: int, message: str) -> None:
        """`count` messages of `topic` the transport could not convert to samples (e.g. a JointState with
        fewer names than positions): rejected (`convert`) for each of the topic's streams while recording."""
        with self._lock:
            if self._state is not State.RECORDING or count < 1:
                return
            for route in self._by_topic.get(topic, ()):
                self._reject(route.spec.name, "convert", f"topic {self.topic_names.get(topic, topic)}: {message}", count)

    def append(self, stream: str, value, t: float) -> bool:
        """One sample of `stream` from an in-process source (no route; `t` on the source's own clock, e.g.
        the twin's episode time). Ignored unless recording; a bad sample is rejected and counted like a
        routed one. Returns whether it was queued. Timers are not applied here but by `tick()` and the
        commands, so a source's step (several streams) lands in one episode whole."""
        with self._lock:
            if self._state is not State.RECORDING:
                return False
            spec = self.writer.store.streams.get(stream)
            if spec is not None:
                self._arrived(spec, float(t))
            return self._append(stream, value, t, f"stream {stream}")

    def _append(self, name: str, value, t: float, where: str) -> bool:
        spec = self.writer.store.streams.get(name)
        arr = np.asarray(value)
        if spec is not None and arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            self._reject(name, "nonfinite", f"{where}: {bad} of {arr.size} values are NaN or inf")
            return False
        try:
            ok = self.writer.append(name, value, t)
        except StoreError as e:
            text = str(e)
            reason = "shape" if "shape" in text or "dtype" in text else "time" if "timestamp" in text else "store"
            if reason == "shape":
                text += " (set the stream's shape, or its `camera`, to what the publisher sends)"
            self._reject(name, reason, f"{where}: {text}")
            return False
        counts = self._samples if ok else self._dropped
        counts[name] = counts.get(name, 0) + 1
        return ok

    def _arrived(self, spec: StreamSpec, t: float) -> None:
        """Count a sample that reached the session (stored or not) for the `missing` estimate:
        expected = round((last - first stamp) * rate_hz) + 1 over the episode, so a late sample
        followed by an early one (jitter) costs nothing and only samples that never came count."""
        name = spec.name
        first = self._t_first[name] = min(self._t_first.get(name, t), t)
        last = self._t_last.get(name)
        if last is not None and t > last:
            self._max_gap[name] = max(self._max_gap.get(name, 0.0), t - last)
        self._t_last[name] = t if last is None else max(last, t)
        self._arrivals[name] = self._arrivals.get(name, 0) + 1
        expected = round((self._t_last[name] - first) * spec.rate_hz) + 1
        self._missing[name] = max(0, expected - self._arrivals[name])

    def _reject(self, stream: str, reason: str, message: str, count: int = 1) -> None:
        self._rejected[stream] = self._rejected.get(stream, 0) + count
        reasons = self._reasons.setdefault(stream, {})
        reasons[reason] = reasons.get(reason, 0) + count
        self._last_error = self._last_reject[stream] = message
        if reasons[reason] == count:  # the first of each kind at once; the counts when the episode ends
            self.log("warn", f"episode {self._episode_index()}: stream {stream} rejects {message} (counted in "
                             f"rejected.{stream}.{reason}; all counts at the end of the episode)")

    # -- time and status ---------------------------------------------------------------------
    def tick(self) -> dict:
        """Apply timed transitions (episode limit, end of reset), journal the counters, publish and return
        the status."""
        with self._lock:
            self._advance()
            self._journal()
            status = self.status()
        self._publish(status)
        return status

    def status(self) -> dict:
        """State, episode counters, timing (seconds), and per stream of the current episode: samples
        recorded, dropped (write queue full), rejected (total; `rejected_why`: by reason), missing
        (see _arrived; saved in the episode's `extra.missing`)."""
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
                "rejected_why": {k: dict(v) for k, v in self._reasons.items() if v},
                "missing": {k: v for k, v in self._missing.items() if v},
                "early": self._early,
                "min_lag_s": {k: round(v, 4) for k, v in self._min_lag.items()},
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
    def attach(self, transport: Transport, prefix: str = "recorder/",
               qos: Callable[[Route], QoS] | None = None) -> None:
        """Subscribe to the routed topics (with `qos(route)` of the topic's first route, default
        Route.qos()), serve the command services (`<prefix>start`, ...: trigger) and publish the status
        on `<prefix>status` (latched)."""
        with self._lock:
            if self._transport is not None:
                raise StoreError(f"{self.writer.path}: session is already attached to a transport")
            self._transport = transport
            self._status_pub = transport.publisher(Topic(f"{prefix}status", "status", STATUS))
        for topic, routes in self._by_topic.items():
            self.subscribe(topic, (qos or Route.qos)(routes[0]))
        for name in SERVICES:
            command = getattr(self, name)
            transport.serve(f"{prefix}{name}", "trigger", lambda _req, _c=command: _c())
        self.tick()

    def subscribe(self, topic: str, qos: QoS):
        """(Re)subscribe to a routed topic with `qos` (e.g. to match a publisher that appeared later)."""
        with self._lock:
            transport = self._transport
            old = self._subs.pop(topic, None)
        if transport is None:
            raise StoreError(f"{self.writer.path}: subscribe({topic}) while detached")
        if old is not None:
            old.close()
        sub = transport.subscribe(Topic(topic, self._by_topic[topic][0].kind, qos),
                                  lambda msg, _t=topic: self.on_sample(_t, msg))
        with self._lock:
            self._subs[topic] = sub
        return sub

    def subscription(self, topic: str):
        with self._lock:
            return self._subs.get(topic)

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
        self._reasons: dict[str, dict[str, int]] = {}
        self._last_reject: dict[str, str] = {}
        self._missing = {n: 0 for n in names}
        self._arrivals: dict[str, int] = {}
        self._t_first: dict[str, float] = {}
        self._t_last: dict[str, float] = {}
        self._max_gap: dict[str, float] = {}
        self._min_lag: dict[str, float] = {}
        self._early = 0
        self._journaled: dict = {}
        self._t_journal = -math.inf

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

    def _losses(self) -> dict:
        """The episode's loss counters as saved in its metadata (`extra`), zeros left out."""
        return {
            "missing": {k: v for k, v in self._missing.items() if v},
            "rejected": {k: dict(v) for k, v in self._reasons.items() if v},
            "early": self._early,
            "max_gap_s": {k: round(v, 6) for k, v in self._max_gap.items()},
            "min_lag_s": {k: round(v, 6) for k, v in self._min_lag.items()},
        }

    def _journal(self, force: bool = False) -> None:
        """Write the label and loss counters into the open episode's journal (what a recovery commits)."""
        if self._state is not State.RECORDING or not hasattr(self.writer, "journal"):
            return
        t = self.clock()
        if not force and t - self._t_journal < JOURNAL_PERIOD_S:
            return
        lost = self._losses()
        entry = {"success": self._label, **lost}
        if entry != self._journaled:
            self.writer.journal(success=self._label, extra=dict(self.config.extra) | lost)
            self._journaled = entry
        self._t_journal = t

    def _report(self, index: int) -> None:
        """One log line per lossy topic at the end of an episode: topic, stream, every count."""
        for route in self._all_routes():
            name = route.spec.name
            parts = []
            if self._missing.get(name):
                expected = self._arrivals.get(name, 0) + self._missing[name]
                parts.append(f"{self._missing[name]} of {expected} expected samples missing (at {route.spec.rate_hz} Hz)")
            if self._reasons.get(name):
                parts.append(f"{self._rejected[name]} rejected {self._reasons[name]}")
            if self._dropped.get(name):
                parts.append(f"{self._dropped[name]} dropped (write queue full)")
            if parts:
                self.log("warn", f"episode {index}: topic {self.topic_names.get(route.topic, route.topic)} stream "
                                 f"{name}: {self._samples.get(name, 0)} stored, " + ", ".join(parts))
        if self._early:
            self.log("info", f"episode {index}: {self._early} samples stamped before the start ignored (early)")

    def _save(self, why: str) -> Reply:
        index = self._episode_index()
        self._report(index)
        if not any(self._samples.values()):
            rejected = f"; rejected {self._reasons} (last: {self._last_error})" if self._reasons else ""
            self._drop()
            sources = f"on {sorted(self.topic_names.values())}" if self._by_topic else "from its source"
            self._last_error = f"episode {index}: no samples stored {sources}{rejected}; discarded"
            self.log("error", self._last_error)
            return self._reply(False, self._last_error)
        absent = [r for r in self._all_routes() if r.required and not self._samples.get(r.spec.name)]
        if absent:
            detail = "; ".join(f"{r.spec.name} ({self.topic_names.get(r.topic, r.topic)}: "
                               f"{self._rejected.get(r.spec.name, 0)} rejected {self._reasons.get(r.spec.name, {})}"
                               + (f", last: {self._last_reject[r.spec.name]}" if r.spec.name in self._last_reject else "")
                               + ")" for r in absent)
            self._drop()
            self._last_error = (f"episode {index}: required stream(s) without a sample: {detail}; discarded "
                                f"(set streams.<name>.required:=false for a stream that may be absent)")
            self.log("error", self._last_error)
            return self._reply(False, self._last_error)
        behind = {n: lag for n, lag in self._min_lag.items() if lag > self.config.max_stamp_skew_s}
        if behind:
            topics = {r.spec.name: self.topic_names.get(r.topic, r.topic) for r in self._all_routes()}
            detail = "; ".join(f"{n} ({topics.get(n, n)}): every stamp at least {lag:.3f} s behind, "
                               f"{self._samples.get(n, 0)} samples" for n, lag in behind.items())
            self._drop()
            self._last_error = (f"episode {index}: stream clock(s) behind the recorder's by more than max_stamp_skew_s="
                                f"{self.config.max_stamp_skew_s}: {detail}; discarded (stored, these samples would be "
                                f"misaligned with the other streams: synchronise the publisher's clock)")
            self.log("error", self._last_error)
            return self._reply(False, self._last_error)
        counts = {k: v for k, v in self._samples.items()}
        losses = self._losses()
        future = self.writer.commit(success=self._label, wait=False, notes=why, **losses)
        self._pending.append(future)
        future.add_done_callback(self._saved_cb)
        self._end_episode("saved", index)
        lost = f"; missing {losses['missing']}" if losses["missing"] else ""
        lost += f"; rejected {losses['rejected']}" if losses["rejected"] else ""
        return self._reply(True, f"saving episode {index} ({why}; samples {counts}{lost})")

    def _saved_cb(self, future: Future) -> None:
        with self._lock:
            if future in self._pending:
                self._pending.remove(future)
            error = future.exception()
            if error is None:
                self._saved += 1
            else:
                self._last_error = f"saving failed: {error}"
                self.log("error", self._last_error)
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


def _default_log(level: str, message: str) -> None:
    log.log({"info": logging.INFO, "warn": logging.WARNING}.get(level, logging.ERROR), message)
