"""The learner side of the actor/learner split.

Actors (twins or robots, any number, possibly on other machines) connect over TCP, send finished
episodes and receive versioned weights. Every episode is committed to the learner's episode store
before it is acknowledged, so an actor deletes its local copy only once the data is durable; episodes
resent after a lost acknowledgement are recognised by (actor_id, seq) and stored once. Updates are
throttled to the algorithm's update-to-data budget (`allowed_updates`), so a fast learner never runs
ahead of the data. On restart the learner rebuilds its data from the store and its weights from
its last checkpoint (algorithms with save_state/load_state).
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from robot_rl.core.spec import PolicySpec
from robot_rl.learning.rl.episode_record import EpisodeRecord, read_record, record_streams, write_record
from robot_rl.runtime.rl_wire import (WireError, check_bind, check_token, pack_weights, recv_frame, send_frame,
                                      unpack_arrays)


@dataclass
class LearnerConfig:
    host: str = "127.0.0.1"      # loopback by default; anything else needs a token
    port: int = 0                # 0: pick a free port (see Learner.address)
    token: str = ""
    publish_every: int = 20      # updates between weight broadcasts
    checkpoint_every: int = 100  # updates between learner checkpoints (algorithms with save_state)


def actor_weights(algo) -> dict:
    """The tensors an actor needs: algo.actor_weights() if defined, else the exported policy's state."""
    if hasattr(algo, "actor_weights"):
        return algo.actor_weights()
    return algo.export_policy().state_dict()


class Learner:
    def __init__(self, algo, spec: PolicySpec, store_path: str | Path, cfg: LearnerConfig | None = None,
                 gamma: float = 0.99, checkpoint_dir: str | Path | None = None) -> None:
        self.algo, self.spec, self.cfg, self.gamma = algo, spec, cfg or LearnerConfig(), gamma
        check_bind(self.cfg.host, self.cfg.token)
        self.store_path = Path(store_path)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.inbox: queue.Queue = queue.Queue()
        self.env_steps = self.n_transitions = self.updates = self.episodes = 0
        self.version = 0
        self.successes: list[bool] = []
        self._seen: set[tuple[str, int]] = set()
        self._clients: dict[socket.socket, threading.Lock] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.store = self.writer = None
        self._resume()
        self._server = socket.create_server((self.cfg.host, self.cfg.port))
        self._server.settimeout(0.2)
        self._acceptor = threading.Thread(target=self._accept_loop, name="learner-accept", daemon=True)
        self._acceptor.start()

    @property
    def address(self) -> tuple[str, int]:
        return self._server.getsockname()[:2]

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
        # an episode the previous learner was writing when it died was never acknowledged: the actor resends it
        self.writer = self.store.writer(on_interrupted="discard")
        self.store.refresh()
        # the store keeps arrival order: its first `known` episodes are in the restored agent's counters
        for ep in range(len(self.store)):
            self._observe(read_record(self.store, ep), counted=ep < known)

    def _observe(self, record: EpisodeRecord, counted: bool = False) -> None:
        """Feed one episode to the algorithm; `counted`: it already is in the restored algorithm's counters
        (replay only)."""
        meta = record.meta
        self._seen.add((str(meta.get("actor_id")), int(meta.get("seq", -1))))
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
                conn, _ = self._server.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), name="learner-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            hello, _ = recv_frame(conn, max_payload=0)
            if hello.get("type") != "hello" or not check_token(self.cfg.token, hello.get("token", "")):
                send_frame(conn, {"type": "error", "message": "hello with a valid token expected"})
                return
            lock = threading.Lock()
            with self._lock:
                self._clients[conn] = lock
            with lock:
                send_frame(conn, {"type": "weights", "version": self.version}, pack_weights(actor_weights(self.algo)))
            while not self._closed.is_set():
                header, payload = recv_frame(conn)
                if header["type"] != "episode":
                    raise WireError(f"unexpected frame type {header['type']!r} from an actor")
                record = EpisodeRecord.from_arrays(unpack_arrays(payload), header.get("meta"), source="actor episode")
                self.inbox.put((conn, lock, record))
        except (WireError, OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._clients.pop(conn, None)
            conn.close()

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

            streams = record_streams(record, self.spec.rate_hz, self.spec.n_action_steps)
            self.store = EpisodeStore.create(self.store_path, streams, index_stream="action")
            self.writer = self.store.writer()
        write_record(self.writer, record, self.spec.rate_hz, self.spec.n_action_steps,
                     {"source": "policy", "task": str(record.meta.get("task", ""))})

    def step(self, timeout: float = 0.1) -> int:
        """Take in the episodes that arrived (store, acknowledge, observe), then run the updates the data
        allows, publishing weights and checkpointing on schedule. Returns the number of new episodes."""
        new = 0
        try:
            item = self.inbox.get(timeout=timeout)
        except queue.Empty:
            item = None
        budget = self.inbox.qsize() + 1        # what has arrived by now: fast actors must not keep this loop here
        while item is not None and budget > 0:
            budget -= 1
            conn, lock, record = item
            key = (str(record.meta.get("actor_id")), int(record.meta.get("seq", -1)))
            if key not in self._seen:
                self._store_record(record)
                self._observe(record)
                new += 1
            self._send(conn, lock, {"type": "ack", "seq": key[1]})
            try:
                item = self.inbox.get_nowait() if budget > 0 else None
            except queue.Empty:
                item = None
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
            if self.step() and on_progress is not None:
                on_progress(self)

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        with self._lock:
            for conn in list(self._clients):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self.writer is not None:
            self.writer.close()
