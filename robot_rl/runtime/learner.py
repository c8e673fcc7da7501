"""The learner side of the actor/learner split.

Actors (twins or robots, any number, possibly on other machines) connect over ZeroMQ, send finished
episodes and receive versioned weights. Every episode is committed to the learner's episode store
before it is acknowledged, so an actor deletes its local copy only once the data is durable; episodes
resent after a lost acknowledgement are recognised by (actor_id, seq) and stored once. Updates are
throttled to the algorithm's update-to-data budget (`allowed_updates`), so a fast learner never runs
ahead of the data. On restart the learner rebuilds its data from the store and its weights from
its last checkpoint (algorithms with save_state/load_state).

Nothing an actor sends can stop the learner or poison its store: every episode is checked against the
run's spec (keys, shapes, dtypes, finite values, the algorithm's extras) and its meta before it is
queued, and one that does not fit is rejected with the reason, which the actor logs and sets aside.
One I/O thread serves every actor through a ROUTER socket: sessions (an actor past a hello with the
token) are capped, a silent one ends after an idle timeout, a peer that does not finish the ZeroMQ
handshake is dropped after a handshake timeout; messages have a bounded frame count, header size and
nesting and payload size (robot_rl.runtime.rl_wire).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from robot_rl.core.config import load_yaml
from robot_rl.core.errors import CheckpointError, ConfigError, RobotRLError, StoreError
from robot_rl.core.spec import PolicySpec
from robot_rl.learning.rl.episode_record import (EpisodeRecord, InvalidEpisode, feature_layout, read_record,
                                                 record_streams, write_record)
from robot_rl.learning.rl.online import DetectorTally
from robot_rl.data.writer import EpisodeWriter
from robot_rl.learning.train_state import PROGRESS, has_learner_state
from robot_rl.runtime.rl_wire import (PayloadTooLarge, WireError, check_bind, check_token, decode, encode, endpoint,
                                      pack_weights, unpack_arrays)

log = logging.getLogger(__name__)
ACTOR_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
META_KEYS = ("actor_id", "seq", "weights_version")     # what an actor's episode meta holds, besides
TRUTH_KEY = "true_success"   # an actor's env's own verdict beside a learned success detector (reward=classifier)
TICK_MS = 20                 # the I/O thread's longest wait: the latency of an ack or a weight broadcast


@dataclass
class LearnerConfig:
    host: str = "127.0.0.1"      # loopback by default; anything else needs a token
    port: int = 0                # 0: pick a free port (see Learner.address)
    token: str = ""
    publish_every: int = 20      # updates between weight broadcasts
    checkpoint_every: int = 100  # updates between learner checkpoints (algorithms with save_state)
    max_connections: int = 64    # actor sessions served at once; more hellos are told "busy"
    handshake_timeout_s: float = 10.0   # a new connection must finish the ZeroMQ handshake within this
    idle_timeout_s: float = 60.0        # a session silent this long ends (actors ping at a quarter of it)
    max_episode_bytes: int = 1 << 30    # the largest episode payload taken in

    def __post_init__(self) -> None:
        if not (isinstance(self.host, str) and self.host) or not isinstance(self.token, str):
            raise ConfigError(f"learner.host={self.host!r} / learner.token: expected strings (a host name or address)")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"learner.port={self.port!r}: expected a TCP port 0-65535 (0: any free port)")
        for name in ("publish_every", "checkpoint_every", "max_connections", "max_episode_bytes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"learner.{name}={v!r}: expected an integer >= 1")
        for name in ("handshake_timeout_s", "idle_timeout_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"learner.{name}={v!r}: expected seconds > 0")


def actor_weights(algo) -> dict:
    """The tensors an actor needs: algo.actor_weights() if defined, else the exported policy's state."""
    if hasattr(algo, "actor_weights"):
        return algo.actor_weights()
    return algo.export_policy().state_dict()


def expected_extras(algo, spec: PolicySpec) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (per-chunk shape, dtype)} of the extras the run's actors send: what this algorithm's act()
    returns (asked once, on a zero observation, without disturbing its random state)."""
    import torch

    layouts = {f.key: feature_layout(f) for f in spec.obs}
    obs = {k: np.zeros((spec.n_obs_steps, *shape), dtype) for k, (shape, dtype) in layouts.items()}
    with torch.random.fork_rng(devices=[]):
        _, extras = algo.act(obs, explore=False)
    return {k: (np.shape(v), str(np.asarray(v).dtype)) for k, v in (extras or {}).items()}


def store_streams(spec: PolicySpec, extras: dict[str, tuple[tuple[int, ...], str]]):
    """The StreamSpecs of a learner's store: fixed by the run's spec and algorithm, never by an episode."""
    layouts = {f.key: feature_layout(f) for f in spec.obs}
    template = EpisodeRecord({k: np.zeros((1, *shape), dtype) for k, (shape, dtype) in layouts.items()},
                             np.zeros((0, spec.action_dim), np.float32), np.zeros(0, np.float32), np.zeros(0, bool),
                             False, False, {k: np.zeros((0, *shape), dtype) for k, (shape, dtype) in extras.items()})
    return record_streams(template, spec.rate_hz, spec.n_action_steps)


def _brief(value) -> str:
    """A peer-sent value for a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def episode_key(meta, actor_id: str | None = None) -> tuple[str, int]:
    """(actor_id, seq) of an episode's meta; InvalidEpisode unless it holds exactly META_KEYS with sane
    values (and, given the connection's `actor_id`, that one: an actor cannot file episodes for another)."""
    if not isinstance(meta, dict):
        raise InvalidEpisode(f"episode meta must be a JSON object, got {type(meta).__name__} {_brief(meta)}")
    if set(meta) - {TRUTH_KEY} != set(META_KEYS):
        raise InvalidEpisode(f"episode meta has keys {sorted(meta)}, expected exactly {list(META_KEYS)} "
                             f"(and optionally {TRUTH_KEY!r})")
    if TRUTH_KEY in meta and type(meta[TRUTH_KEY]) is not bool:
        raise InvalidEpisode(f"episode meta.{TRUTH_KEY}={_brief(meta[TRUTH_KEY])}: expected true or false")
    aid, seq, version = meta["actor_id"], meta["seq"], meta["weights_version"]
    if actor_id is not None and aid != actor_id:
        raise InvalidEpisode(f"episode meta.actor_id={_brief(aid)}: this connection's hello named {actor_id!r}")
    if not (isinstance(aid, str) and ACTOR_ID.match(aid)):
        raise InvalidEpisode(f"episode meta.actor_id={_brief(aid)}: expected an actor name")
    for name, v, low in (("seq", seq, 0), ("weights_version", version, -1)):
        if type(v) is not int or not low <= v < 2 ** 53:
            raise InvalidEpisode(f"episode meta.{name}={_brief(v)}: expected an integer >= {low}")
    return aid, seq


@dataclass
class Peer:
    """An actor past its hello: the session the learner serves (keyed by its ZeroMQ routing id)."""
    actor_id: str
    last_seen: float     # time.monotonic() of its last message


class Learner:
    def __init__(self, algo, spec: PolicySpec, store_path: str | Path, cfg: LearnerConfig | None = None,
                 gamma: float = 0.99, checkpoint_dir: str | Path | None = None) -> None:
        self.algo, self.spec, self.cfg, self.gamma = algo, spec, cfg or LearnerConfig(), gamma
        check_bind(self.cfg.host, self.cfg.token)
        self.store_path = Path(store_path)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.extras = expected_extras(algo, spec)
        self.inbox: queue.Queue = queue.Queue()
        self.env_steps = self.n_transitions = self.updates = self.episodes = 0
        self.rejected = 0        # episodes refused as malformed (the actor is told why)
        self.version = 0
        self.successes: list[bool] = []
        self.detector: DetectorTally | None = None   # episodes a learned detector judged, against ground truth
        self._seen: set[tuple[str, int]] = set()
        self._peers: dict[bytes, Peer] = {}      # touched by the I/O thread only
        self._closed = threading.Event()
        self.store = self.writer = None
        self._resume()
        self._weights = (self.version, pack_weights(actor_weights(self.algo)))   # what a hello is answered with
        self._ctx = zmq.Context()
        self._router = self._listen()
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()   # the learner loop's acks and weights
        self._io = threading.Thread(target=self._io_loop, name="learner-io", daemon=True)
        self._io.start()

    def _listen(self) -> zmq.Socket:
        cfg = self.cfg
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.IPV6, 1)
        # an episode over the limit (and up to 1 MiB more) still arrives, to be rejected by name; libzmq drops
        # a peer sending more before buffering it (actors check the limit their welcome states before sending)
        router.setsockopt(zmq.MAXMSGSIZE, cfg.max_episode_bytes + (1 << 20))
        router.setsockopt(zmq.HANDSHAKE_IVL, max(1, int(cfg.handshake_timeout_s * 1000)))   # the ZMTP greeting
        # with a ZAP domain libzmq closes at once a peer that does not speak ZMTP 3 (any foreign bytes); no ZAP
        # handler runs, so every ZeroMQ peer gets through to the hello check
        router.setsockopt(zmq.ZAP_DOMAIN, b"robot_rl")
        router.setsockopt(zmq.HEARTBEAT_IVL, max(1, int(cfg.idle_timeout_s * 250)))   # drops dead peers' TCP
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(1, int(cfg.idle_timeout_s * 1000)))
        try:
            router.bind(endpoint(cfg.host, cfg.port or "*"))
        except zmq.ZMQError as e:
            router.close()
            self._ctx.term()
            raise ConfigError(f"learner.host={cfg.host!r} learner.port={cfg.port}: cannot listen there: {e}") from None
        return router

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._router.getsockopt_string(zmq.LAST_ENDPOINT)[6:].rsplit(":", 1)
        return host.strip("[]"), int(port)

    @property
    def connections(self) -> int:
        """Actor sessions being served now (at most max_connections)."""
        return len(self._peers)

    # ---- resume --------------------------------------------------------------------------------
    def _resume(self) -> None:
        known = 0                # episodes the restored algorithm's counters already hold
        state = self.checkpoint_dir / "learner_state" if self.checkpoint_dir is not None else None
        if has_learner_state(state) and hasattr(self.algo, "load_state"):
            restored = self.algo.load_state(state)
            try:
                self.updates = int(load_yaml(state / PROGRESS)["learner"]["updates"])
            except (KeyError, TypeError, ValueError) as e:
                raise CheckpointError(f"{state / PROGRESS}: no learner.updates counter ({e})") from None
            if hasattr(self.algo, "remember"):
                known = restored.episodes
        if not (self.store_path / "zarr.json").exists():
            return
        from robot_rl.data.episode_store import EpisodeStore

        self.store = EpisodeStore.open(self.store_path, "a")
        want = {s.name: (s.dtype, tuple(s.shape)) for s in store_streams(self.spec, self.extras)}
        have = {name: (s.dtype, tuple(s.shape)) for name, s in self.store.streams.items() if name in want}
        if have != want:
            raise StoreError(f"{self.store_path}: its streams {have} do not fit this run's spec and algorithm "
                             f"({want}); resume with the run that made it, or give this run a new out=")
        # an episode the previous learner was writing when it died was never acknowledged: the actor resends it
        self.writer = EpisodeWriter(self.store, on_interrupted="discard")
        self.store.refresh()
        # the store keeps arrival order: its first `known` episodes are in the restored agent's counters
        for ep in range(len(self.store)):
            source = f"{self.store_path}[episode {ep}]"
            try:   # a store written before episodes were checked may hold one nobody can learn from
                record = read_record(self.store, ep)
                key = episode_key(record.meta)
                record.check(self.spec, self.extras, source)
            except (RobotRLError, ValueError, KeyError) as e:
                log.warning("learner: %s cannot be learned from and is skipped: %s", source, e)
                continue
            self._seen.add(key)
            self._observe(record, counted=ep < known)

    def _observe(self, record: EpisodeRecord, counted: bool = False) -> None:
        """Feed one episode to the algorithm; `counted`: it already is in the restored algorithm's counters
        (replay only)."""
        t = record.transitions(self.spec, self.gamma, episode=self.episodes)
        (self.algo.remember if counted else self.algo.observe)(t)
        self.n_transitions += len(t)
        self.env_steps += record.env_steps
        self.episodes += 1
        self.successes.append(record.success)
        if TRUTH_KEY in record.meta:
            self.detector = self.detector or DetectorTally()
            self.detector.add(record.success, bool(record.meta[TRUTH_KEY]))

    # ---- actor sessions: one I/O thread owns the ROUTER socket ---------------------------------
    def _io_loop(self) -> None:
        """Every TICK_MS: the messages that arrived (at most 64, so a flood never holds up the acks),
        then what the learner loop posted (a ZeroMQ socket has one user), then idle sessions."""
        while not self._closed.is_set():
            for _ in range(64 if self._router.poll(TICK_MS) else 0):
                try:
                    identity, *frames = self._router.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    self._on_message(identity, frames)
                except Exception:        # a bug must cost one message, never the learner
                    log.exception("learner: a message from %r failed", identity)
            while not self._outbox.empty():
                identity, message = self._outbox.get()
                for to in (list(self._peers) if identity is None else [identity]):
                    self._router.send_multipart([to, *message])   # a ROUTER drops what it cannot route
            self._drop_idle()

    def _send(self, identity: bytes, header: dict, payload: bytes = b"") -> None:
        """From the I/O thread."""
        self._router.send_multipart([identity, *encode(header, payload)])

    def _post(self, identity: bytes | None, header: dict, payload: bytes = b"") -> None:
        """From the learner loop (None: to every actor); lost if the session ended: the actor resends."""
        self._outbox.put((identity, encode(header, payload)))

    def _end(self, identity: bytes, message: str, retry: bool) -> None:
        """Forget a session (if any) and tell its actor why; retry: it may say hello again."""
        self._peers.pop(identity, None)
        self._send(identity, {"type": "error", "message": message, "retry": retry})

    def _on_message(self, identity: bytes, frames: list) -> None:
        peer = self._peers.get(identity)
        if peer is None:
            self._on_hello(identity, frames)
            return
        peer.last_seen = time.monotonic()
        try:
            header, payload = decode(frames, max_payload=self.cfg.max_episode_bytes)
        except PayloadTooLarge as e:     # named, refused, and the session goes on
            self._reject(identity, peer.actor_id, e.header.get("meta"), str(e))
            return
        except WireError as e:           # costs this session only
            log.info("learner: ended the session of actor %s: %s", peer.actor_id, e)
            self._end(identity, f"malformed message: {e}", retry=True)
            return
        kind = header["type"]
        if kind == "ping":
            return
        if kind == "hello":
            del self._peers[identity]
            self._on_hello(identity, frames)
            return
        if kind != "episode":
            self._end(identity, f"unexpected message type {kind[:40]!r} from an actor", retry=True)
            return
        try:
            key = episode_key(header.get("meta"), peer.actor_id)
            record = EpisodeRecord.from_arrays(unpack_arrays(payload), header["meta"], f"episode {key[1]}")
            record.check(self.spec, self.extras, f"episode {key[1]}")
        except (InvalidEpisode, WireError) as e:
            self._reject(identity, peer.actor_id, header.get("meta"), str(e))
            return
        self.inbox.put((identity, key, record))

    def _on_hello(self, identity: bytes, frames: list) -> None:
        try:
            hello, payload = decode(frames)
        except WireError as e:
            self._end(identity, f"a hello message expected: {e}", retry=False)
            return
        if hello["type"] != "hello":     # e.g. an actor whose session ended (or whose learner restarted)
            self._end(identity, f"hello expected first, got {hello['type'][:40]!r}", retry=True)
            return
        if payload:
            self._end(identity, "a hello message carries no payload", retry=False)
            return
        actor_id = hello.get("actor_id")
        if not check_token(self.cfg.token, hello.get("token", "")):
            log.warning("learner: refused actor %s: no valid token", _brief(actor_id))
            self._end(identity, "hello with a valid token expected (learner.token)", retry=False)
            return
        if not (isinstance(actor_id, str) and ACTOR_ID.match(actor_id)):
            self._end(identity, f"hello actor_id={_brief(actor_id)}: expected 1-64 characters of letters, digits, "
                                "'_', '.', ':' or '-'", retry=False)
            return
        for old in [i for i, p in self._peers.items() if p.actor_id == actor_id]:
            del self._peers[old]         # the same actor's earlier session: it reconnected
        if len(self._peers) >= self.cfg.max_connections:
            self._end(identity, f"learner busy: {self.cfg.max_connections} connections (learner.max_connections); "
                                "retry later", retry=True)
            return
        self._peers[identity] = Peer(actor_id, time.monotonic())
        version, payload = self._weights
        self._send(identity, {"type": "weights", "version": version, "idle_timeout_s": self.cfg.idle_timeout_s,
                              "max_episode_bytes": self.cfg.max_episode_bytes}, payload)

    def _drop_idle(self) -> None:
        now = time.monotonic()
        for identity, peer in list(self._peers.items()):
            if now - peer.last_seen > self.cfg.idle_timeout_s:
                log.info("learner: ended the session of actor %s: idle", peer.actor_id)
                self._end(identity, f"idle for {self.cfg.idle_timeout_s:g} s (learner.idle_timeout_s)", retry=True)

    def _reject(self, identity: bytes, actor_id: str, meta, reason: str) -> None:
        seq = meta.get("seq") if isinstance(meta, dict) else None
        self.rejected += 1
        log.warning("learner: rejected an episode of actor %s: %s", actor_id, reason)
        self._send(identity, {"type": "reject", "seq": seq if type(seq) is int else None, "reason": reason})

    # ---- the learner loop ----------------------------------------------------------------------
    def _store_record(self, record: EpisodeRecord) -> None:
        if self.writer is None:
            from robot_rl.data.episode_store import EpisodeStore

            streams = store_streams(self.spec, self.extras)
            self.store = EpisodeStore.create(self.store_path, streams, index_stream="action")
            self.writer = EpisodeWriter(self.store)
        write_record(self.writer, record, self.spec.rate_hz, self.spec.n_action_steps, {"source": "policy"})

    def step(self, timeout: float = 0.1, max_env_steps: int | None = None) -> int:
        """Take in the episodes that arrived (store, acknowledge, observe), then run the updates the data
        allows, publishing weights and checkpointing on schedule. Returns the number of new episodes.
        max_env_steps: take in no episode once this many env steps are in (the rest stay unacknowledged,
        spooled on their actors, for the next run)."""
        new = 0
        budget = None
        while max_env_steps is None or self.env_steps < max_env_steps:
            try:
                item = self.inbox.get(timeout=timeout) if budget is None else self.inbox.get_nowait()
            except queue.Empty:
                break
            if budget is None:             # what has arrived by now: fast actors must not keep this loop here
                budget = self.inbox.qsize() + 1
            identity, key, record = item
            if key not in self._seen:      # checked on arrival: it fits the spec, so it is stored and learned
                self._store_record(record)
                self._seen.add(key)
                self._observe(record)
                new += 1
            self._post(identity, {"type": "ack", "seq": key[1]})
            budget -= 1
            if budget == 0:
                break
        while self.updates < self.algo.allowed_updates(self.n_transitions):
            self.algo.update()
            self.updates += 1
            if self.updates % self.cfg.publish_every == 0:
                self.publish()
            if self.checkpoint_dir is not None and self.updates % self.cfg.checkpoint_every == 0:
                self.checkpoint()
        return new

    def publish(self) -> None:
        self.version += 1
        self._weights = (self.version, pack_weights(actor_weights(self.algo)))
        self._post(None, {"type": "weights", "version": self.version}, self._weights[1])

    def checkpoint(self) -> None:
        if not hasattr(self.algo, "save_state"):
            return
        self.algo.save_state(self.checkpoint_dir / "learner_state",
                             {"updates": self.updates, "env_steps": self.env_steps, "version": self.version})

    def run(self, env_steps: int, timeout_s: float | None = None, on_progress=None) -> None:
        """Serve until `env_steps` environment steps have been received (or timeout_s passes)."""
        t0 = time.monotonic()
        while self.env_steps < env_steps:
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"learner: {self.env_steps} of {env_steps} env steps after {timeout_s:.0f} s")
            if self.step(max_env_steps=env_steps) and on_progress is not None:
                on_progress(self)

    def close(self) -> None:
        self._closed.set()
        self._io.join()
        self._router.close(linger=0)
        self._ctx.term()                 # returns once the listening port is released (a restart can bind it)
        if self.writer is not None:
            self.writer.close()
