"""Faults injected into the actor/learner wire against a real learner on a localhost socket: malformed
episodes (meta, shapes, dtypes, NaN), oversized and deeply nested frames, floods of idle connections, and
an actor the learner refuses. The learner must reject with a reason and keep serving; its store must
only ever hold episodes it can learn from; a refused actor must stop with the learner's reason and keep
its spool."""

import json
import logging
import os
import socket
import threading
import time

import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from robot_rl.learning.rl.episode_record import EpisodeRecord, record_streams, write_record
from robot_rl.runtime.actor import Actor, LearnerRefused
from robot_rl.runtime.learner import Learner, LearnerConfig
from robot_rl.data.writer import EpisodeWriter
from robot_rl.runtime.rl_wire import (MAX_DEPTH, WireError, endpoint, json_depth, pack_arrays, parse_header, recv_msg,
                                      send_msg)
from tests.runtime.test_actor_learner import SPEC, LinearGaussian, _twin

TOKEN = "s3cret"
WAIT_S = 20.0            # deadline of every wait for an answer (a loaded 2-core machine)


def _record(T: int = 6, **meta) -> EpisodeRecord:
    """A valid episode of the test spec and LinearGaussian's extras: T steps, ceil(T / 4) chunks."""
    rng = np.random.default_rng(T)
    n = -(-T // SPEC.n_action_steps)
    return EpisodeRecord({"state": rng.normal(size=(T + 1, 3)).astype(np.float32)},
                         rng.uniform(-1, 1, (T, 7)).astype(np.float32), np.zeros(T, np.float32), np.zeros(T, bool),
                         False, False, {"score": np.zeros(n, np.float32), "tag": np.ones((n, 2, 3), np.float32)},
                         {"actor_id": "raw", "seq": 0, "weights_version": 0} | meta)


def _dealer(address, ctx=None):
    """A DEALER socket connected to the learner; a receive waits at most WAIT_S (then zmq.Again)."""
    sock = (ctx or zmq.Context.instance()).socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(WAIT_S * 1000))
    sock.connect(endpoint(*address))
    return sock


class RawActor:
    """A hand-driven actor session: hello, then whatever messages a test sends."""

    def __init__(self, address, token=TOKEN, actor_id="raw", hello=True):
        self.sock = _dealer(address)
        if hello:
            send_msg(self.sock, {"type": "hello", "token": token, "actor_id": actor_id})
            self.welcome, _ = recv_msg(self.sock)

    def send(self, meta, arrays=None, payload: bytes | None = None) -> None:
        send_msg(self.sock, {"type": "episode", "meta": meta}, pack_arrays(arrays) if payload is None else payload)

    def answer(self) -> dict:
        """The next ack / reject / error (weights broadcasts are skipped)."""
        while True:
            header, _ = recv_msg(self.sock)
            if header["type"] != "weights":
                return header

    def close(self):
        self.sock.close()


@pytest.fixture
def learner(tmp_path):
    learner = Learner(LinearGaussian(), SPEC, tmp_path / "online.zarr", LearnerConfig(token=TOKEN))
    yield learner
    learner.close()


def _take(learner, actor: RawActor) -> dict:
    """Run the learner loop until the actor's pending episode is answered."""
    assert learner.step(timeout=WAIT_S) == 1
    return actor.answer()


def _serve(learner, episodes: int) -> None:
    """Run the learner loop until it holds `episodes` episodes (deadline WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while learner.episodes < episodes:
        assert time.monotonic() < deadline, f"{learner.episodes} of {episodes} episodes arrived"
        learner.step(timeout=0.2)


def _with(arrays: dict, **changes) -> dict:
    return {**arrays, **changes}


GOOD = _record().to_arrays()
META = {"actor_id": "raw", "seq": 0, "weights_version": 0}
MALFORMED = {   # name: (meta, arrays or a raw payload, a word the learner's reason must contain)
    "seq_not_a_number": (META | {"seq": "abc"}, GOOD, "meta.seq='abc'"),
    "seq_negative": (META | {"seq": -1}, GOOD, "meta.seq=-1"),
    "seq_a_bool": (META | {"seq": True}, GOOD, "meta.seq=True"),
    "seq_a_float": (META | {"seq": 1.5}, GOOD, "meta.seq=1.5"),
    "meta_a_list": ([1, 2], GOOD, "JSON object"),
    "meta_overrides_a_store_field": (META | {"success": "yes"}, GOOD, "keys"),
    "meta_missing_seq": ({"actor_id": "raw", "weights_version": 0}, GOOD, "keys"),
    "another_actors_name": (META | {"actor_id": "twin0"}, GOOD, "hello named 'raw'"),
    "observation_of_the_wrong_shape": (META, _with(GOOD, **{"obs.state": np.zeros((7, 4), np.float32)}),
                                       "obs['state']"),
    "observation_key_unknown": (META, _with(GOOD, **{"obs.goal": np.zeros((7, 3), np.float32)}), "observation keys"),
    "observation_float64": (META, _with(GOOD, **{"obs.state": np.zeros((7, 3))}), "float64"),
    "observation_nan": (META, _with(GOOD, **{"obs.state": np.full((7, 3), np.nan, np.float32)}), "non-finite"),
    "action_inf": (META, _with(GOOD, actions=np.full((6, 7), np.inf, np.float32)), "non-finite"),
    "reward_nan": (META, _with(GOOD, rewards=np.full(6, np.nan, np.float32)), "rewards holds a non-finite"),
    "action_dim_wrong": (META, _with(GOOD, actions=np.zeros((6, 5), np.float32)), "actions is float32 (6, 5)"),
    "no_steps": (META, _with(GOOD, actions=np.zeros((0, 7), np.float32), rewards=np.zeros(0, np.float32),
                             interventions=np.zeros(0, np.uint8), **{"obs.state": np.zeros((1, 3), np.float32)}),
                 "no actions"),
    "lengths_disagree": (META, _with(GOOD, rewards=np.zeros(5, np.float32)), "inconsistent"),
    "intervention_flag_7": (META, _with(GOOD, interventions=np.full(6, 7, np.uint8)), "0/1"),
    "scalar_flags": (META, _with(GOOD, flags=np.array(1, np.uint8)), "scalars"),
    "extra_missing": (META, {k: v for k, v in GOOD.items() if k != "extras.tag"}, "extras"),
    "extra_of_the_wrong_shape": (META, _with(GOOD, **{"extras.tag": np.ones((2, 3, 2), np.float32)}), "extras['tag']"),
    "extra_rows_wrong": (META, _with(GOOD, **{"extras.score": np.zeros(5, np.float32)}), "extras['score']"),
    "extra_nan": (META, _with(GOOD, **{"extras.score": np.full(2, np.nan, np.float32)}), "non-finite"),
    "unknown_array": (META, _with(GOOD, weights=np.zeros(3, np.float32)), "unknown arrays"),
    "payload_not_safetensors": (META, b"\x00" * 64, "safetensors"),
}


def test_malformed_episodes_are_rejected_with_a_reason_and_the_learner_keeps_serving(learner, tmp_path):
    actor = RawActor(learner.address)
    for name, (meta, arrays, reason) in MALFORMED.items():
        actor.send(meta, *((None, arrays) if isinstance(arrays, bytes) else (arrays,)))
        answer = actor.answer()
        assert answer["type"] == "reject" and reason in answer["reason"], (name, answer)
        assert answer["seq"] == (meta["seq"] if isinstance(meta, dict) and type(meta.get("seq")) is int else None)
    assert learner.rejected == len(MALFORMED) and learner.inbox.empty() and learner.store is None
    actor.send(META, GOOD)                                        # the same connection still delivers
    assert _take(learner, actor) == {"type": "ack", "seq": 0}
    assert learner.episodes == 1 and len(learner.store) == 1
    actor.close()
    learner.close()
    again = Learner(LinearGaussian(), SPEC, tmp_path / "online.zarr", LearnerConfig(token=TOKEN))   # ... and resumes
    assert again.episodes == 1 and again.env_steps == 6
    again.close()


def test_an_episode_over_the_size_limit_is_rejected_by_name_and_the_learner_keeps_serving(tmp_path):
    learner = Learner(LinearGaussian(), SPEC, tmp_path / "online.zarr", LearnerConfig(max_episode_bytes=4000))
    try:
        big = RawActor(learner.address, token="")
        big.send(META | {"seq": 3}, _record(T=200).to_arrays())
        answer = big.answer()
        assert answer["type"] == "reject" and answer["seq"] == 3 and "too large (max 4000 B)" in answer["reason"]
        big.send(META, GOOD)                                      # its bytes were skipped: the link stays in step
        assert _take(learner, big) == {"type": "ack", "seq": 0}
    finally:
        learner.close()


def test_a_message_far_over_the_size_limit_is_dropped_by_zeromq_unbuffered(tmp_path):
    """Beyond max_episode_bytes + 1 MiB libzmq drops the peer (ZMQ_MAXMSGSIZE) before the learner sees it."""
    learner = Learner(LinearGaussian(), SPEC, tmp_path / "online.zarr", LearnerConfig(max_episode_bytes=4000))
    try:
        huge = RawActor(learner.address, token="")
        events = huge.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        events.setsockopt(zmq.RCVTIMEO, int(WAIT_S * 1000))
        huge.send(META, payload=bytes(4000 + (1 << 20) + 1))
        assert recv_monitor_message(events)["event"] == zmq.EVENT_DISCONNECTED            # the learner dropped it
        assert recv_monitor_message(events)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED     # ZeroMQ reconnected ...
        huge.send(META, GOOD)                                   # ... as a peer without a session
        assert huge.answer() == {"type": "error", "retry": True, "message": "hello expected first, got 'episode'"}
        assert learner.rejected == 0 and learner.inbox.empty()
        huge.sock.disable_monitor()
        events.close()
        huge.close()
        actor = RawActor(learner.address, token="")             # ... and the learner serves on
        actor.send(META, GOOD)
        assert _take(learner, actor) == {"type": "ack", "seq": 0}
    finally:
        learner.close()


def test_an_actor_sets_aside_unsent_an_episode_over_the_learners_limit(tmp_path):
    learner = Learner(LinearGaussian(), SPEC, tmp_path / "online.zarr", LearnerConfig(max_episode_bytes=200))
    actor = Actor(LinearGaussian(), _twin, learner.address, "twin0", tmp_path / "spool", max_steps=8)
    try:
        actor.run(1)
        assert actor.drain(WAIT_S) and actor.rejected == 1 and learner.rejected == 0
        reason = (tmp_path / "spool" / "rejected" / "0.reason.txt").read_text()
        assert "is too large for the learner (max 200 B, learner.max_episode_bytes)" in reason
    finally:
        actor.close()
        learner.close()


def test_a_store_episode_the_learner_cannot_learn_from_is_skipped_on_resume(tmp_path, caplog):
    """A store written before episodes were checked may hold one with NaN observations: resume skips it."""
    from robot_rl.data.episode_store import EpisodeStore

    good, bad = _record(seq=0), _record(seq=1)
    bad.obs["state"][2] = np.nan
    store = EpisodeStore.create(tmp_path / "online.zarr", record_streams(good, SPEC.rate_hz, SPEC.n_action_steps))
    with EpisodeWriter(store) as w:
        for record in (good, bad):                       # the old learner's path: committed unchecked
            write_record(w, record, SPEC.rate_hz, SPEC.n_action_steps, {"source": "policy"})
    with caplog.at_level(logging.WARNING, "robot_rl.runtime.learner"):
        learner = Learner(LinearGaussian(), SPEC, tmp_path / "online.zarr")
    try:
        assert learner.episodes == 1 and learner.env_steps == 6
        assert "online.zarr[episode 1] cannot be learned from" in caplog.text and "non-finite" in caplog.text
        actor = RawActor(learner.address, token="")                      # ... and serves: seq 1 is not "seen"
        actor.send(META | {"seq": 1}, _record().to_arrays())
        assert _take(learner, actor) == {"type": "ack", "seq": 1} and learner.episodes == 2
    finally:
        learner.close()


def test_a_store_made_for_another_spec_is_refused_by_name(tmp_path):
    """The old learner shaped its store after the first episode it got, a wrong-shape one included."""
    from robot_rl.core.errors import StoreError
    from robot_rl.data.episode_store import EpisodeStore

    wrong = _record()
    wrong.obs["state"] = np.zeros((7, 4), np.float32)
    EpisodeStore.create(tmp_path / "online.zarr", record_streams(wrong, SPEC.rate_hz, SPEC.n_action_steps))
    with pytest.raises(StoreError, match="online.zarr: its streams .*'obs_state': \\('float32', \\(4,\\)\\)"
                                         ".* do not fit this run"):
        Learner(LinearGaussian(), SPEC, tmp_path / "online.zarr")


def test_frame_headers_are_bounded_in_size_and_nesting():
    assert json_depth('{"a": [1, {"b": "[[[{{{"}]}') == 3            # brackets inside strings do not count
    deep = "[" * 100_000 + "]" * 100_000                                # RecursionError in json.loads
    with pytest.raises(WireError, match=f"nests 100000 levels deep \\(max {MAX_DEPTH}\\)"):
        parse_header(deep.encode())
    with pytest.raises(WireError, match="string 'type'"):
        parse_header(b'{"type": 3}')


@pytest.mark.parametrize("header_bytes", [
    b'{"type": "hello", "token": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",   # 400 kB nested: over the size cap
    b'{"type": "hello", "token": ' + b"[" * 2_000 + b"]" * 2_000 + b"}",       # 4 kB, 2,000 deep
    b'{"type": "hello", "token": "\xff"}',                                     # not UTF-8
    b"\x00\x13garbage{",                                                         # not JSON
])
def test_oversized_deep_or_garbled_hello_headers_are_refused_cleanly(learner, header_bytes, caplog):
    with caplog.at_level(logging.INFO, "robot_rl.runtime.learner"):
        sock = _dealer(learner.address)
        sock.send(header_bytes)
        header, _ = recv_msg(sock)
        assert header["type"] == "error" and header["retry"] is False
        assert any(w in header["message"] for w in ("too large", "levels deep", "not UTF-8", "not JSON")), header
        sock.close()
        actor = RawActor(learner.address)                    # still serving
        actor.send(META, GOOD)
        assert _take(learner, actor) == {"type": "ack", "seq": 0}
        actor.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]    # no message handler failed


DEEP_EPISODE = b'{"type": "episode", "meta": ' + b"{\"a\": " * 5_000 + b"0" + b"}" * 5_000 + b"}"


@pytest.mark.parametrize("frames", [[DEEP_EPISODE], [b'{"type": "episode"}', b"1", b"2"]],
                         ids=["5000_deep", "3_frames"])
def test_a_malformed_message_costs_only_its_own_session(learner, frames):
    actor = RawActor(learner.address)
    actor.sock.send_multipart(frames)
    answer = actor.answer()                                  # the session ends (the old wire closed the connection)
    assert answer["type"] == "error" and answer["retry"] is True and "malformed message" in answer["message"]
    assert "levels deep" in answer["message"] or "got 3 frames" in answer["message"]
    actor.send(META, GOOD)                                   # ... nothing more is taken from it without a hello
    assert actor.answer() == {"type": "error", "retry": True, "message": "hello expected first, got 'episode'"}
    assert learner.connections == 0 and learner.inbox.empty()
    again = RawActor(learner.address)
    again.send(META, GOOD)
    assert _take(learner, again) == {"type": "ack", "seq": 0}


def _socket_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except FileNotFoundError:                            # closed meanwhile (libzmq's I/O threads run on)
            pass
    return n


def _threads() -> int:
    """Threads of this process, native ones (libzmq's I/O threads) included."""
    return len(os.listdir("/proc/self/task"))


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors and threads through /proc")
def test_a_flood_of_actors_holds_at_most_the_cap_and_no_thread_per_peer(tmp_path):
    """The old wire held a thread per connection; this one serves every peer from one I/O thread."""
    cap, flood = 8, 300
    learner = Learner(LinearGaussian(), SPEC, tmp_path / "online.zarr", LearnerConfig(token=TOKEN, max_connections=cap))
    ctx = zmq.Context()
    ctx.socket(zmq.DEALER).close()                           # starts the clients' own I/O thread before counting
    threads0, fds0 = _threads(), _socket_fds()
    clients = [_dealer(learner.address, ctx) for _ in range(flood)]
    try:
        for i, c in enumerate(clients):
            send_msg(c, {"type": "hello", "token": TOKEN, "actor_id": f"flood{i}"})
        answers = [recv_msg(c)[0] for c in clients]
        welcomed = [c for c, a in zip(clients, answers) if a["type"] == "weights"]
        busy = [a for a in answers if a["type"] != "weights"]
        assert len(welcomed) == cap and len(busy) == flood - cap      # every hello over the cap is told at once
        for header in busy:
            assert header == {"type": "error", "retry": True, "message": header["message"]}
            assert "busy: 8 connections" in header["message"]
        assert learner.connections == cap and _threads() == threads0   # no thread per peer
        for c in clients:
            if c not in welcomed:
                c.close()                                    # refused actors go (and retry later)
        # what stays: the welcomed sessions, a descriptor on each side of each
        _wait_for(lambda: _socket_fds() - fds0 == 2 * cap, f"{_socket_fds() - fds0} sockets for {cap} sessions")
        print(f"\n{flood} actors, cap {cap}: {learner.connections} sessions, {_threads() - threads0} new threads")
    finally:
        for c in clients:
            c.close()
        ctx.term()
        learner.close()


def test_raw_connections_that_never_finish_the_handshake_are_dropped_after_its_timeout(tmp_path):
    learner = Learner(LinearGaussian(), SPEC, tmp_path / "online.zarr",
                      LearnerConfig(token=TOKEN, max_connections=1, handshake_timeout_s=0.3))
    raw = [socket.create_connection(learner.address, timeout=WAIT_S) for _ in range(60)]
    try:
        for i, sock in enumerate(raw):     # silent, slow (a partial greeting) and foreign peers
            sock.sendall([b"", b"\xff\x00", b"RRL1", b"GET / HTTP/1.1\r\n\r\n"][i % 4])
        for sock in raw:                                     # each is closed by the learner, none answered
            try:
                while chunk := sock.recv(4096):
                    assert len(chunk) <= 64                  # (at most libzmq's own greeting)
            except ConnectionResetError:
                pass
        quiet = RawActor(learner.address, hello=False)       # a ZeroMQ peer that never says hello holds nothing
        actor = RawActor(learner.address)                    # the only session slot is free
        actor.send(META, GOOD)
        assert _take(learner, actor) == {"type": "ack", "seq": 0}
        quiet.close()
    finally:
        for sock in raw:
            sock.close()
        learner.close()


def test_an_idle_session_ends_and_a_pinging_one_is_kept(tmp_path):
    learner = Learner(LinearGaussian(), SPEC, tmp_path / "online.zarr", LearnerConfig(token=TOKEN, idle_timeout_s=1.0))
    try:
        pinging = RawActor(learner.address)
        assert pinging.welcome["idle_timeout_s"] == 1.0
        done = threading.Event()

        def ping():                                               # every 0.1 s, from its own thread
            while not done.wait(0.1):
                send_msg(pinging.sock, {"type": "ping"})

        pinger = threading.Thread(target=ping)
        pinger.start()
        silent = RawActor(learner.address, actor_id="silent")
        answer = silent.answer()                                  # ended after 1 s of silence ...
        assert answer == {"type": "error", "retry": True, "message": "idle for 1 s (learner.idle_timeout_s)"}
        assert learner.connections == 1
        done.set()
        pinger.join()
        pinging.send(META, GOOD)
        assert _take(learner, pinging) == {"type": "ack", "seq": 0}
    finally:
        learner.close()


def test_an_actor_pings_its_idle_link_and_keeps_it(tmp_path):
    learner = Learner(LinearGaussian(), SPEC, tmp_path / "online.zarr", LearnerConfig(idle_timeout_s=0.4))
    actor = Actor(LinearGaussian(), _twin, learner.address, "twin0", tmp_path / "spool", max_steps=8)
    try:
        deadline = time.monotonic() + WAIT_S
        while actor._sock is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        link = actor._sock
        time.sleep(1.2)                                           # three idle timeouts without an episode
        assert actor._sock is link and learner.connections == 1
        actor.run(1)
        _serve(learner, 1)
        assert actor.drain(WAIT_S) and actor._sock is link
    finally:
        actor.close()
        learner.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_actor_stops_with_the_learners_reason_and_keeps_its_spool(tmp_path):
    offline = Actor(LinearGaussian(), _twin, ("127.0.0.1", _free_port()), "twin0", tmp_path / "spool", max_steps=8)
    offline.run(2)                                                # no learner yet: both stay spooled
    offline.close()
    learner = Learner(LinearGaussian(), SPEC, tmp_path / "online.zarr", LearnerConfig(token=TOKEN))
    try:
        actor = Actor(LinearGaussian(), _twin, learner.address, "twin0", tmp_path / "spool", token="wrong",
                      max_steps=8)
        with pytest.raises(LearnerRefused, match="refused actor 'twin0': hello with a valid token expected") as e:
            actor.run(3)
            actor.drain(WAIT_S)
        ran = actor.next_seq
        assert ran >= 2 and actor.pending() == ran and f"{ran} episode(s) stay in" in str(e.value)
        with pytest.raises(LearnerRefused):
            actor.run_episode()                                   # it acts no more for a learner that refused it
        assert actor.next_seq == ran and learner.episodes == 0
        actor.close()
        again = Actor(LinearGaussian(), _twin, learner.address, "twin0", tmp_path / "spool", token=TOKEN, max_steps=8)
        _serve(learner, ran)                                      # the next run delivers the kept episodes
        assert again.drain(WAIT_S) and learner.episodes == ran
        again.close()
    finally:
        learner.close()


def test_an_episode_the_learner_rejects_is_set_aside_with_its_reason(tmp_path):
    """A spooled episode that no longer fits the run (here: a learner for another action size) is moved to
    rejected/ and never resent; the actor's next episodes are not held up behind it."""
    learner = Learner(LinearGaussian(), SPEC, tmp_path / "online.zarr")
    spool = tmp_path / "spool"
    spool.mkdir()
    bad = _record(actor_id="twin0", seq=0)
    bad.actions = bad.actions[:, :5]
    (spool / "0.safetensors").write_bytes(pack_arrays(bad.to_arrays(), {"meta": json.dumps(bad.meta)}))
    actor = Actor(LinearGaussian(), _twin, learner.address, "twin0", spool, max_steps=8)
    try:
        assert actor.next_seq == 1
        actor.run(1)
        _serve(learner, 1)
        assert actor.drain(WAIT_S) and actor.rejected == 1 and actor.acked == 1
        assert (spool / "rejected" / "0.safetensors").exists()
        assert "actions is float32 (6, 5), expected float32 (6, 7)" in (spool / "rejected" / "0.reason.txt").read_text()
        assert [m["extra"]["seq"] for m in learner.store.meta_list()] == [1]
    finally:
        actor.close()
        learner.close()
