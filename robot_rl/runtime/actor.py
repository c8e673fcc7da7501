"""The actor side of the actor/learner split: runs episodes at its own rate, never waiting on the learner.

Each finished episode is first written to a local spool directory (safetensors), then sent; the spool
file is deleted only when the learner acknowledges that the episode is in its store. A background
thread keeps (re)connecting, resends everything still spooled after a reconnect, and keeps the latest
weights the learner published; the actor swaps them in between episodes. Sequence numbers persist in
the spool directory, so a restarted actor continues where it stopped and nothing is sent twice under
a new name.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable

from robot_rl.learning.rl.chunk_env import ChunkEnv
from robot_rl.learning.rl.episode_record import EpisodeRecord
from robot_rl.runtime.rl_wire import WireError, pack_arrays, recv_frame, send_frame, unpack_weights


class Actor:
    """algo: an OnlineAlgorithm (only reset/act/load_actor_weights are used here); make_env: env factory;
    address: the learner's (host, port); spool_dir: this actor's durable outbox (one per actor_id)."""

    def __init__(self, algo, make_env: Callable[[], Any], address: tuple[str, int], actor_id: str,
                 spool_dir: str | Path, token: str = "", gamma: float = 0.99, reward: str = "sparse",
                 max_steps: int | None = None, seed: int = 0, make_corrector=None) -> None:
        self.algo, self.address, self.actor_id, self.token = algo, tuple(address), str(actor_id), token
        self.spool = Path(spool_dir)
        self.spool.mkdir(parents=True, exist_ok=True)
        raw = make_env()
        corrector = make_corrector(raw) if make_corrector is not None else None
        self.env = ChunkEnv(raw, algo.spec, gamma, reward, corrector=corrector, max_steps=max_steps)
        self.seed = seed
        state = self.spool / "actor.json"
        spooled = [int(p.stem) for p in self.spool.glob("*.safetensors")]
        self.next_seq = max([json.loads(state.read_text())["next_seq"] if state.exists() else 0,
                             *(s + 1 for s in spooled)])
        self.weights_version = -1
        self._latest: tuple[int, bytes] | None = None
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self.acked = 0
        self._link = threading.Thread(target=self._link_loop, name=f"actor-{actor_id}-link", daemon=True)
        self._link.start()

    # ---- link to the learner -------------------------------------------------------------------
    def _link_loop(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(self.address, timeout=5.0)
                sock.settimeout(None)
                send_frame(sock, {"type": "hello", "token": self.token, "actor_id": self.actor_id})
                with self._send_lock:
                    self._sock = sock
                    for path in sorted(self.spool.glob("*.safetensors"), key=lambda p: int(p.stem)):
                        self._send_file(path)
                backoff = 0.1
                while not self._stop.is_set():
                    header, payload = recv_frame(sock)
                    if header["type"] == "weights":
                        self._latest = (int(header["version"]), payload)
                    elif header["type"] == "ack":
                        (self.spool / f"{int(header['seq'])}.safetensors").unlink(missing_ok=True)
                        self.acked += 1
                    elif header["type"] == "error":
                        raise WireError(f"learner refused actor {self.actor_id}: {header.get('message')}")
            except (OSError, WireError):
                with self._send_lock:
                    self._sock = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)

    def _send_file(self, path: Path) -> None:
        """Send one spooled episode (caller holds _send_lock). A failure leaves it spooled."""
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
        try:
            send_frame(self._sock, {"type": "episode", "meta": meta}, path.read_bytes())
        except OSError:
            self._sock = None

    def _spool_and_send(self, record: EpisodeRecord) -> None:
        path = self.spool / f"{record.meta['seq']}.safetensors"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pack_arrays(record.to_arrays(), {"meta": json.dumps(record.meta)}))
        tmp.replace(path)
        (self.spool / "actor.json").write_text(json.dumps({"next_seq": self.next_seq}))
        with self._send_lock:
            if self._sock is not None:
                self._send_file(path)

    # ---- acting --------------------------------------------------------------------------------
    def _swap_weights(self) -> None:
        latest = self._latest
        if latest is not None and latest[0] != self.weights_version:
            self.algo.load_actor_weights(unpack_weights(latest[1]))
            self.weights_version = latest[0]

    def run_episode(self) -> EpisodeRecord:
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
        """Run episodes until `episodes` are done or `stop` is set. Returns the number run."""
        n = 0
        while (episodes is None or n < episodes) and not (stop is not None and stop.is_set()):
            self.run_episode()
            n += 1
        return n

    def pending(self) -> int:
        """Episodes spooled but not yet acknowledged by the learner."""
        return len(list(self.spool.glob("*.safetensors")))

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every spooled episode is acknowledged (or timeout). True when drained."""
        t0 = time.monotonic()
        while self.pending() and time.monotonic() - t0 < timeout_s:
            time.sleep(0.05)
        return not self.pending()

    def close(self) -> None:
        self._stop.set()
        with self._send_lock:
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._link.join(timeout=5)
        self.env.close()
