"""The actor side of the actor/learner split: runs episodes at its own rate, never waiting on the learner.

Each finished episode is first written to a local spool directory (safetensors), then sent; the spool
file is deleted only when the learner acknowledges that the episode is in its store. A background
thread keeps a session with the learner (a ZeroMQ DEALER socket; a new one after any error), resends
everything still spooled when a session starts, pings an idle session, and keeps the latest weights
the learner published; the actor swaps them in between episodes. Sequence numbers persist in the spool
directory, so a restarted actor continues where it stopped and nothing is sent twice under a new name.

An episode the learner rejects (it does not fit the run) moves to <spool>/rejected/ with the reason
beside it. A learner that refuses the actor itself (a wrong token) stops it: the next run_episode()
or drain() raises LearnerRefused with the learner's reason, and the spool stays for the next run.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import zmq

from robot_rl.core.errors import RobotRLError
from robot_rl.learning.rl.chunk_env import ChunkEnv
from robot_rl.learning.rl.episode_record import EpisodeRecord
from robot_rl.runtime.rl_wire import WireError, endpoint, pack_arrays, recv_msg, send_msg, unpack_weights

log = logging.getLogger(__name__)
TICK_MS = 20                 # the link thread's longest wait: the latency of sending a new episode
HANDSHAKE_S = 10.0           # connect + the learner's answer to hello; a silent learner is dropped after it


class LearnerRefused(RobotRLError):
    """The learner refused this actor (e.g. a wrong token): retrying cannot help."""


class Actor:
    """algo: an OnlineAlgorithm (only reset/act/load_actor_weights are used here); make_env: env factory;
    address: the learner's (host, port); spool_dir: this actor's durable outbox (one per actor_id)."""

    def __init__(self, algo, make_env: Callable[[], Any], address: tuple[str, int], actor_id: str,
                 spool_dir: str | Path, token: str = "", gamma: float = 0.99, reward: str = "sparse",
                 max_steps: int | None = None, seed: int = 0, make_corrector=None, make_success_fn=None) -> None:
        self.algo, self.address, self.actor_id, self.token = algo, tuple(address), str(actor_id), token
        self.spool = Path(spool_dir)
        self.rejected_dir = self.spool / "rejected"
        self.spool.mkdir(parents=True, exist_ok=True)
        raw = make_env()
        corrector = make_corrector(raw) if make_corrector is not None else None
        success_fn = make_success_fn(raw) if make_success_fn is not None else None   # a learned success detector
        self.env = ChunkEnv(raw, algo.spec, gamma, reward, corrector=corrector, max_steps=max_steps,
                            success_fn=success_fn)
        self.seed = seed
        state = self.spool / "actor.json"
        used = [int(p.stem) for d in (self.spool, self.rejected_dir) for p in d.glob("*.safetensors")]
        self.next_seq = max([json.loads(state.read_text())["next_seq"] if state.exists() else 0,
                             *(s + 1 for s in used)])
        self.weights_version = -1
        self._latest: tuple[int, bytes] | None = None
        self._max_episode_bytes = 0
        self._ctx = zmq.Context()
        self._sock: zmq.Socket | None = None          # the session's socket, once the learner said yes
        self._spooled: queue.SimpleQueue = queue.SimpleQueue()   # new spool files, for the link thread to send
        self._stop = threading.Event()
        self._settled = threading.Condition()     # notified on every ack, reject and refusal
        self.acked = self.rejected = 0
        self.refused: str | None = None            # the learner's reason, once it refused this actor
        self._link = threading.Thread(target=self._link_loop, name=f"actor-{actor_id}-link", daemon=True)
        self._link.start()

    # ---- link to the learner: a thread owns the DEALER socket ---------------------------------
    def _link_loop(self) -> None:
        backoff = 0.1
        while not self._stop.is_set() and self.refused is None:
            sock = self._ctx.socket(zmq.DEALER)   # a session per socket: a new one starts clean
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.IMMEDIATE, 1)      # sends fail at once while no learner is connected
            sock.setsockopt(zmq.IPV6, 1)
            sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)           # notices a dead learner (a pulled cable)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(HANDSHAKE_S * 1000))
            try:
                sock.connect(endpoint(*self.address))
                self._session(sock)
            except (zmq.ZMQError, WireError, ValueError, KeyError, TypeError) as e:   # away or odd: retry
                log.debug("actor %s: link to %s:%s down: %s", self.actor_id, *self.address, e)
            finally:
                if self._sock is not None:     # the learner had welcomed it: retry soon
                    backoff = 0.1
                self._sock = None
                sock.close(linger=0)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)

    def _wait(self, sock, event: int, deadline: float) -> bool:
        """Until `sock` is ready for `event` (True), the deadline passes or close() is called."""
        while not self._stop.is_set() and time.monotonic() < deadline:
            if sock.poll(100, event):
                return True
        return False

    def _session(self, sock) -> None:
        """Hello, resend the spool, then serve the session until it ends (returns at once if no learner
        answers within HANDSHAKE_S)."""
        deadline = time.monotonic() + HANDSHAKE_S
        if not self._wait(sock, zmq.POLLOUT, deadline):
            return
        send_msg(sock, {"type": "hello", "token": self.token, "actor_id": self.actor_id}, flags=zmq.NOBLOCK)
        if not self._wait(sock, zmq.POLLIN, deadline):
            return
        header, payload = recv_msg(sock, flags=zmq.NOBLOCK)
        if header["type"] == "error":
            self._on_error(header)
            return
        if header["type"] != "weights":
            raise WireError(f"learner answered hello with {header['type'][:40]!r}, expected weights")
        self._latest = (int(header["version"]), payload)
        ping_every = float(header["idle_timeout_s"]) / 4
        self._max_episode_bytes = int(header["max_episode_bytes"])
        self._sock = sock
        while not self._spooled.empty():     # what was spooled meanwhile is resent below
            self._spooled.get()
        for path in sorted(self.spool.glob("*.safetensors"), key=lambda p: int(p.stem)):
            self._send_file(sock, path)
        self._serve(sock, ping_every)

    def _serve(self, sock, ping_every: float) -> None:
        """Until the learner ends the session or close(): its messages, new episodes, a ping whenever
        nothing was sent for ping_every."""
        last_sent = time.monotonic()
        while not self._stop.is_set():
            if sock.poll(min(TICK_MS, int(ping_every * 1000))):
                while True:
                    try:
                        header, payload = recv_msg(sock, flags=zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    kind = header["type"]
                    if kind == "weights":
                        self._latest = (int(header["version"]), payload)
                    elif kind in ("ack", "reject"):
                        self._settle(header.get("seq"), None if kind == "ack" else str(header.get("reason")))
                    elif kind == "error":
                        self._on_error(header)
                        return
            while not self._spooled.empty():
                self._send_file(sock, self._spooled.get())
                last_sent = time.monotonic()
            if time.monotonic() - last_sent >= ping_every:
                self._send(sock, {"type": "ping"})
                last_sent = time.monotonic()

    def _send(self, sock, header: dict, payload: bytes = b"") -> None:
        try:
            send_msg(sock, header, payload, flags=zmq.NOBLOCK)
        except zmq.Again:                # no learner connected (IMMEDIATE): a new session resends the spool
            raise WireError("the learner is gone") from None

    def _on_error(self, header: dict) -> None:
        message = str(header.get("message"))[:2000]
        if header.get("retry"):
            raise WireError(f"learner: {message}")
        self.refused = message
        log.error("actor %s: learner %s:%s refused it: %s", self.actor_id, *self.address, message)
        with self._settled:
            self._settled.notify_all()

    def _settle(self, seq, reason: str | None) -> None:
        """An ack (reason None: the spooled copy goes) or a reject (it moves to rejected/ with the reason)."""
        path = self.spool / f"{seq}.safetensors"
        if type(seq) is not int:
            log.error("actor %s: learner rejected an episode it could not name: %s", self.actor_id, reason)
        elif reason is None:
            path.unlink(missing_ok=True)
            self.acked += 1
        else:
            self.rejected_dir.mkdir(exist_ok=True)
            (self.rejected_dir / f"{seq}.reason.txt").write_text(reason + "\n")
            if path.exists():
                path.replace(self.rejected_dir / path.name)
            self.rejected += 1
            log.error("actor %s: learner rejected episode %d (kept in %s): %s", self.actor_id, seq,
                      self.rejected_dir, reason)
        with self._settled:
            self._settled.notify_all()

    def _send_file(self, sock, path: Path) -> None:
        """Send one spooled episode (from the link thread); it stays spooled until acknowledged."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), "np") as f:
                meta = json.loads((f.metadata() or {}).get("meta", "{}"))
            payload = path.read_bytes()
        except FileNotFoundError:     # acknowledged meanwhile (a resend)
            return
        except Exception as e:        # a damaged spool file: set aside, never resent in a loop
            self._settle(int(path.stem), f"unreadable spool file {path}: {e}")
            return
        if len(payload) > self._max_episode_bytes:   # the learner would refuse it: never sent
            self._settle(int(path.stem), f"episode of {len(payload)} B is too large for the learner "
                                         f"(max {self._max_episode_bytes} B, learner.max_episode_bytes)")
            return
        self._send(sock, {"type": "episode", "meta": meta}, payload)

    def _spool_and_send(self, record: EpisodeRecord) -> None:
        path = self.spool / f"{record.meta['seq']}.safetensors"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pack_arrays(record.to_arrays(), {"meta": json.dumps(record.meta)}))
        tmp.replace(path)
        (self.spool / "actor.json").write_text(json.dumps({"next_seq": self.next_seq}))
        self._spooled.put(path)       # the link thread sends it (at once in a session, else with the spool)

    def _check_refused(self) -> None:
        if self.refused is not None:
            raise LearnerRefused(f"learner {self.address[0]}:{self.address[1]} refused actor {self.actor_id!r}: "
                                 f"{self.refused}; {self.pending()} episode(s) stay in {self.spool} for the next run")

    # ---- acting --------------------------------------------------------------------------------
    def _swap_weights(self) -> None:
        latest = self._latest
        if latest is not None and latest[0] != self.weights_version:
            self.algo.load_actor_weights(unpack_weights(latest[1]))
            self.weights_version = latest[0]

    def run_episode(self) -> EpisodeRecord:
        self._check_refused()
        self._swap_weights()
        seq = self.next_seq
        self.next_seq += 1
        obs = self.env.reset(seed=self.seed * 1_000_003 + seq * 7919 + zlib.crc32(self.actor_id.encode()) % 7919)
        self.algo.reset()
        done = False
        while not done:
            actions, extras = self.algo.act(obs, explore=True)
            step = self.env.step(actions, extras)
            obs, done = step.obs, step.done
        record = self.env.episode_record(actor_id=self.actor_id, seq=seq, weights_version=self.weights_version)
        self._spool_and_send(record)
        return record

    def run(self, episodes: int | None = None, stop: threading.Event | None = None) -> int:
        """Run episodes until `episodes` are done or `stop` is set. Returns the number run.
        Raises LearnerRefused once the learner has refused this actor."""
        n = 0
        while (episodes is None or n < episodes) and not (stop is not None and stop.is_set()):
            self.run_episode()
            n += 1
        return n

    def pending(self) -> int:
        """Episodes spooled but not yet acknowledged (or rejected) by the learner."""
        return len(list(self.spool.glob("*.safetensors")))

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every spooled episode is acknowledged or rejected (or timeout). True when drained.
        Raises LearnerRefused if the learner refuses this actor meanwhile."""
        deadline = time.monotonic() + timeout_s
        with self._settled:
            while self.pending() and self.refused is None and time.monotonic() < deadline:
                self._settled.wait(min(1.0, max(0.0, deadline - time.monotonic())))
        self._check_refused()
        return not self.pending()

    def close(self) -> None:
        self._stop.set()
        self._link.join()
        self._ctx.term()
        self.env.close()
