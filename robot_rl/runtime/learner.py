"""The learner side of the actor/learner split.

Actors (twins or robots, any number, possibly on other machines) connect over TCP, send finished
episodes and receive versioned weights. Every episode is committed to the learner's episode store
before it is acknowledged, so an actor deletes its local copy only once the data is durable; episodes
resent after a lost acknowledgement are recognised by (actor_id, seq) and stored once. Updates are
throttled to the algorithm's update-to-data budget (`allowed_updates`), so a fast learner never runs
ahead of the data. On restart the learner rebuilds its data from the store and its weights from
its last checkpoint (algorithms with save_state/load_state).

Nothing an actor sends can stop the learner or poison its store: every episode is checked against the
run's spec (keys, shapes, dtypes, finite values, the algorithm's extras) and its meta before it is
queued, and one that does not fit is rejected with the reason, which the actor logs and sets aside.
Connections are capped (a thread each), must authenticate within a handshake timeout and are dropped
after an idle timeout; frames have bounded header size and nesting (robot_rl.runtime.rl_wire).
"""

from __future__ import annotations

import logging
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_rl.core.errors import ConfigError, RobotRLError, StoreError
from robot_rl.core.spec import PolicySpec
from robot_rl.learning.rl.episode_record import (EpisodeRecord, InvalidEpisode, read_record, record_streams,
                                                 write_record)
from robot_rl.runtime.rl_wire import (PayloadTooLarge, WireError, check_bind, check_token, pack_weights, recv_frame,
                                      send_frame, skip_bytes, unpack_arrays)

log = logging.getLogger(__name__)
ACTOR_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
META_KEYS = ("actor_id", "seq", "weights_version")     # what an actor's episode meta holds, nothing else


@dataclass
class LearnerConfig:
    host: str = "127.0.0.1"      # loopback by default; anything else needs a token
    port: int = 0                # 0: pick a free port (see Learner.address)
    token: str = ""
    publish_every: int = 20      # updates between weight broadcasts
    checkpoint_every: int = 100  # updates between learner checkpoints (algorithms with save_state)
    max_connections: int = 64    # connections served at once (a thread each); more are told "busy" and closed
    handshake_timeout_s: float = 10.0   # a new connection must say a valid hello within this
    idle_timeout_s: float = 60.0        # a connection silent this long is dropped (actors ping at a quarter of it)
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

    obs = {f.key: np.zeros((spec.n_obs_steps, *f.shape), np.float32) for f in spec.obs}
    with torch.random.fork_rng(devices=[]):
        _, extras = algo.act(obs, explore=False)
    return {k: (np.shape(v), str(np.asarray(v).dtype)) for k, v in (extras or {}).items()}


def store_streams(spec: PolicySpec, extras: dict[str, tuple[tuple[int, ...], str]]):
    """The StreamSpecs of a learner's store: fixed by the run's spec and algorithm, never by an episode."""
    template = EpisodeRecord({f.key: np.zeros((1, *f.shape), np.float32) for f in spec.obs},
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
    if set(meta) != set(META_KEYS):
        raise InvalidEpisode(f"episode meta has keys {sorted(meta)}, expected exactly {list(META_KEYS)}")
    aid, seq, version = meta["actor_id"], meta["seq"], meta["weights_version"]
    if actor_id is not None and aid != actor_id:
        raise InvalidEpisode(f"episode meta.actor_id={_brief(aid)}: this connection's hello named {actor_id!r}")
    if not (isinstance(aid, str) and ACTOR_ID.match(aid)):
        raise InvalidEpisode(f"episode meta.actor_id={_brief(aid)}: expected an actor name")
    for name, v, low in (("seq", seq, 0), ("weights_version", version, -1)):
        if type(v) is not int or not low <= v < 2 ** 53:
            raise InvalidEpisode(f"episode meta.{name}={_brief(v)}: expected an integer >= {low}")
    return aid, seq


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
        self._seen: set[tuple[str, int]] = set()
        self._clients: dict[socket.socket, threading.Lock] = {}        # actors past hello: weights go to them
        self._connections: dict[socket.socket, threading.Thread] = {}  # every connection being served
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.store = self.writer = None
        self._resume()
        self._server = socket.create_server((self.cfg.host, self.cfg.port))
        self._acceptor = threading.Thread(target=self._accept_loop, name="learner-accept", daemon=True)
        self._acceptor.start()

    @property
    def address(self) -> tuple[str, int]:
        return self._server.getsockname()[:2]

    @property
    def connections(self) -> int:
        """Connections being served now (each holds one thread and one socket)."""
        with self._lock:
            return len(self._connections)

    # ---- resume --------------------------------------------------------------------------------
    def _resume(self) -> None:
        known = 0                # episodes the restored algorithm's counters already hold
        if self.checkpoint_dir is not None and (self.checkpoint_dir / "learner_state").exists() \
                and hasattr(self.algo, "load_state"):
            from robot_rl.core.config import load_yaml

            restored = self.algo.load_state(self.checkpoint_dir / "learner_state")
            self.updates = int(load_yaml(self.checkpoint_dir / "learner_state" / "counters.yaml")["updates"])
            if hasattr(self.algo, "remember"):
                known = restored.episodes
        if not (self.store_path / "zarr.json").exists():
            return
        from robot_rl.data.store import EpisodeStore

        self.store = EpisodeStore.open(self.store_path, "a")
        want = {s.name: (s.dtype, tuple(s.shape)) for s in store_streams(self.spec, self.extras)}
        have = {name: (s.dtype, tuple(s.shape)) for name, s in self.store.streams.items() if name in want}
        if have != want:
            raise StoreError(f"{self.store_path}: its streams {have} do not fit this run's spec and algorithm "
                             f"({want}); resume with the run that made it, or give this run a new out=")
        # an episode the previous learner was writing when it died was never acknowledged: the actor resends it
        self.writer = self.store.writer(on_interrupted="discard")
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

    # ---- connections ---------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, peer = self._server.accept()
            except OSError:          # close() shut the listening socket down, or out of descriptors: wait
                self._closed.wait(0.05)
                continue
            with self._lock:
                busy = len(self._connections) >= self.cfg.max_connections
                if not busy:
                    thread = threading.Thread(target=self._serve, args=(conn, peer), name="learner-conn", daemon=True)
                    self._connections[conn] = thread
            if busy:                 # answered without a thread; the frame fits any socket buffer
                self._refuse(conn, f"learner busy: {self.cfg.max_connections} connections "
                                   "(learner.max_connections); retry later", retry=True)
            else:
                thread.start()

    @staticmethod
    def _refuse(conn: socket.socket, message: str, retry: bool) -> None:
        try:
            conn.setblocking(False)
            send_frame(conn, {"type": "error", "message": message, "retry": retry})
        except OSError:
            pass
        conn.close()

    def _serve(self, conn: socket.socket, peer) -> None:
        lock = threading.Lock()
        try:
            try:
                hello, _ = recv_frame(conn, max_payload=0, deadline=time.monotonic() + self.cfg.handshake_timeout_s)
            except WireError as e:
                self._refuse(conn, f"a hello frame within {self.cfg.handshake_timeout_s:g} s expected: {e}", False)
                return
            actor_id = hello.get("actor_id")
            if hello["type"] != "hello" or not check_token(self.cfg.token, hello.get("token", "")):
                log.warning("learner: refused %s: no hello with a valid token", peer)
                self._refuse(conn, "hello with a valid token expected (learner.token)", retry=False)
                return
            if not (isinstance(actor_id, str) and ACTOR_ID.match(actor_id)):
                self._refuse(conn, f"hello actor_id={_brief(actor_id)}: expected 1-64 characters of "
                                   "letters, digits, '_', '.', ':' or '-'", retry=False)
                return
            conn.settimeout(self.cfg.idle_timeout_s)
            with self._lock:
                self._clients[conn] = lock
            with lock:
                send_frame(conn, {"type": "weights", "version": self.version,
                                  "idle_timeout_s": self.cfg.idle_timeout_s}, pack_weights(actor_weights(self.algo)))
            while not self._closed.is_set():
                try:
                    header, payload = recv_frame(conn, max_payload=self.cfg.max_episode_bytes)
                except PayloadTooLarge as e:     # refused unread, then skipped: the connection stays in step
                    self._reject(conn, lock, actor_id, e.header.get("meta"), str(e))
                    skip_bytes(conn, e.size)
                    continue
                if header["type"] == "ping":
                    continue
                if header["type"] != "episode":
                    raise WireError(f"unexpected frame type {header['type'][:40]!r} from an actor")
                try:
                    key = episode_key(header.get("meta"), actor_id)
                    record = EpisodeRecord.from_arrays(unpack_arrays(payload), header["meta"], f"episode {key[1]}")
                    record.check(self.spec, self.extras, f"episode {key[1]}")
                except (InvalidEpisode, WireError) as e:
                    self._reject(conn, lock, actor_id, header.get("meta"), str(e))
                    continue
                self.inbox.put((conn, lock, key, record))
        except (WireError, OSError) as e:
            log.info("learner: connection from %s closed: %s", peer, e)
        except Exception:   # a bug must cost one connection, never the learner
            log.exception("learner: connection from %s failed", peer)
        finally:
            with self._lock:
                self._clients.pop(conn, None)
                self._connections.pop(conn, None)
            conn.close()

    def _reject(self, conn, lock, actor_id: str, meta, reason: str) -> None:
        seq = meta.get("seq") if isinstance(meta, dict) else None
        self.rejected += 1
        log.warning("learner: rejected an episode of actor %s: %s", actor_id, reason)
        self._send(conn, lock, {"type": "reject", "seq": seq if type(seq) is int else None, "reason": reason})

    def _send(self, conn, lock, header: dict, payload: bytes = b"") -> None:
        try:
            with lock:
                send_frame(conn, header, payload)
        except OSError:
            pass  # the actor keeps the episode spooled and resends it after reconnecting

    # ---- the learner loop ----------------------------------------------------------------------
    def _store_record(self, record: EpisodeRecord) -> None:
        if self.writer is None:
            from robot_rl.data.store import EpisodeStore

            streams = store_streams(self.spec, self.extras)
            self.store = EpisodeStore.create(self.store_path, streams, index_stream="action")
            self.writer = self.store.writer()
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
            conn, lock, key, record = item
            if key not in self._seen:      # checked on arrival: it fits the spec, so it is stored and learned
                self._store_record(record)
                self._seen.add(key)
                self._observe(record)
                new += 1
            self._send(conn, lock, {"type": "ack", "seq": key[1]})
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
        payload = pack_weights(actor_weights(self.algo))
        with self._lock:
            clients = list(self._clients.items())
        for conn, lock in clients:
            self._send(conn, lock, {"type": "weights", "version": self.version}, payload)

    def checkpoint(self) -> None:
        if not hasattr(self.algo, "save_state"):
            return
        from robot_rl.core.config import save_yaml

        d = self.checkpoint_dir / "learner_state"
        tmp = self.checkpoint_dir / "learner_state.tmp"
        self.algo.save_state(tmp)
        save_yaml({"updates": self.updates, "env_steps": self.env_steps, "version": self.version},
                  tmp / "counters.yaml")
        if d.exists():
            import shutil

            shutil.rmtree(d)
        tmp.rename(d)

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
        try:   # wakes the acceptor: a listening socket closed under a blocked accept() would keep listening
            self._server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._acceptor.join(timeout=5)
        self._server.close()
        with self._lock:
            connections = dict(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in connections.values():
            thread.join(timeout=5)
        if self.writer is not None:
            self.writer.close()
