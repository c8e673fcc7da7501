"""Floods a learner's ZeroMQ wire and prints what it holds: N actors saying hello against the session cap
(sessions, threads added, descriptors once the refused ones leave), then N idle raw TCP connections
(how long until the learner has closed them all).

    PYTHONPATH=. .venv/bin/python scripts/wire_flood.py 1000

Uses the tests' stand-in algorithm (tests/runtime/test_actor_learner.py). Figures: docs/scaling.md
("The transport: ZeroMQ").
"""

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import zmq

from robot_rl.runtime.learner import Learner, LearnerConfig
from robot_rl.runtime.rl_wire import endpoint, recv_msg, send_msg
from tests.runtime.test_actor_learner import SPEC, LinearGaussian


def socket_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except FileNotFoundError:
            pass
    return n


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def main(n: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    learner = Learner(LinearGaussian(), SPEC, tmp / "a.zarr", LearnerConfig(token="t"))
    ctx = zmq.Context()
    ctx.socket(zmq.DEALER).close()
    threads0, fds0 = threads(), socket_fds()
    clients = []
    for i in range(n):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint(*learner.address))
        send_msg(sock, {"type": "hello", "token": "t", "actor_id": f"a{i}"})
        clients.append(sock)
    answers = [recv_msg(sock)[0]["type"] for sock in clients]
    cap = learner.cfg.max_connections
    print(f"{n} actors say hello, cap {cap}: {answers.count('weights')} sessions, {answers.count('error')} busy, "
          f"{threads() - threads0} threads added")
    for sock, answer in zip(clients, answers):
        if answer == "error":
            sock.close()
    deadline = time.monotonic() + 30
    while socket_fds() - fds0 > 2 * cap and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"once the refused left: {(socket_fds() - fds0) // 2} descriptors on the learner's side")
    for sock in clients:
        sock.close()
    ctx.term()
    learner.close()

    learner = Learner(LinearGaussian(), SPEC, tmp / "b.zarr", LearnerConfig(token="t", handshake_timeout_s=2))
    raw = [socket.create_connection(learner.address) for _ in range(n)]
    t0 = time.monotonic()
    for sock in raw:
        sock.settimeout(30)
        try:
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            pass
    print(f"{n} idle raw TCP connections, handshake_timeout_s=2: all closed {time.monotonic() - t0:.1f} s after "
          "the last connected")
    learner.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
