"""The actor/learner wire format: length-prefixed frames of a JSON header and a safetensors payload.

    frame = b"RRL1" | u32 header bytes | u64 payload bytes | header (UTF-8 JSON object) | payload

Episodes travel as safetensors of their typed arrays, weights as safetensors of tensors: nothing
is pickled, so a frame from the network can never execute code. Headers are small, shallow JSON
objects with a "type"; a frame over the size or nesting bounds is refused before it is parsed.

    actor -> learner   hello {token, actor_id}    the first frame of a connection
                       episode {meta} + arrays     one finished episode (EpisodeRecord.to_arrays)
                       ping {}                     keeps an idle connection open
    learner -> actor   weights {version, idle_timeout_s} + tensors   (the first answer to a good hello)
                       ack {seq}                   the episode is committed to the learner's store
                       reject {seq, reason}        the episode does not fit the run and never will
                       error {message, retry}      refused (retry false: e.g. a wrong token) or busy

A learner that listens beyond localhost refuses to start without a token.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import socket
import struct
import time
from itertools import accumulate
from typing import Any

from robot_rl.core.errors import ConfigError, RobotRLError

MAGIC = b"RRL1"
_PREFIX = struct.Struct("!4sIQ")
MAX_HEADER = 64 << 10        # bytes; the largest real header (an episode's meta) is well under 1 kB
MAX_DEPTH = 8                # JSON nesting of a header; real ones use 2
MAX_PAYLOAD = 1 << 31
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


class WireError(RobotRLError):
    """A malformed frame, a closed connection or a rejected token."""


class PayloadTooLarge(WireError):
    """A well-formed header announcing a payload over the receiver's limit. The payload is still unread:
    the receiver can name the frame it refuses (`header`) and skip_bytes(sock, size) to stay in step."""

    def __init__(self, message: str, header: dict[str, Any], size: int) -> None:
        super().__init__(message)
        self.header, self.size = header, size


def _recv_exact(sock: socket.socket, n: int, deadline: float | None = None) -> bytes:
    """n bytes; with `deadline` (time.monotonic()) they must all arrive by then, else WireError."""
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WireError(f"frame incomplete at its deadline ({len(buf)} of {n} bytes)")
            sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            raise WireError(f"no data for {sock.gettimeout():.1f} s ({len(buf)} of {n} bytes)") from None
        if not chunk:
            raise WireError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def skip_bytes(sock: socket.socket, n: int) -> None:
    """Read and drop n bytes (a refused payload), never holding more than 1 MiB."""
    while n > 0:
        n -= len(_recv_exact(sock, min(n, 1 << 20)))


def send_frame(sock: socket.socket, header: dict[str, Any], payload: bytes = b"") -> None:
    head = json.dumps(header).encode()
    sock.sendall(_PREFIX.pack(MAGIC, len(head), len(payload)) + head + payload)


def json_depth(text: str) -> int:
    """Nesting depth of a JSON text's arrays/objects (0 for a scalar), without parsing it."""
    brackets = (1 if c in "[{" else -1 for c in _JSON_STRING.sub("", text) if c in "[]{}")
    return max(accumulate(brackets), default=0)


def parse_header(raw: bytes) -> dict[str, Any]:
    """A frame header: a UTF-8 JSON object with a string "type", at most MAX_DEPTH deep."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as e:
        raise WireError(f"frame header is not UTF-8: {e}") from None
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise WireError(f"frame header nests {depth} levels deep (max {MAX_DEPTH})")
    try:
        header = json.loads(text)
    except json.JSONDecodeError as e:
        raise WireError(f"frame header is not JSON: {e}") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise WireError(f"frame header must be an object with a string 'type', got {text[:80]!r}")
    return header


def recv_frame(sock: socket.socket, max_payload: int = MAX_PAYLOAD,
               deadline: float | None = None) -> tuple[dict[str, Any], bytes]:
    """The next frame. `deadline` (time.monotonic()): the whole frame must arrive by then (a handshake);
    without it each read waits at most the socket's own timeout."""
    magic, n_head, n_payload = _PREFIX.unpack(_recv_exact(sock, _PREFIX.size, deadline))
    if magic != MAGIC:
        raise WireError(f"bad frame magic {magic!r} (expected {MAGIC!r}): not a robot_rl actor/learner peer")
    if n_head > MAX_HEADER:
        raise WireError(f"frame header of {n_head} B is too large (max {MAX_HEADER} B)")
    header = parse_header(_recv_exact(sock, n_head, deadline))
    if n_payload > max_payload:
        raise PayloadTooLarge(f"{header['type']} frame payload of {n_payload} B is too large (max {max_payload} B)",
                              header, n_payload)
    return header, _recv_exact(sock, n_payload, deadline) if n_payload else b""


def check_token(expected: str, given: Any) -> bool:
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode())


def check_bind(host: str, token: str) -> None:
    """A learner bound beyond loopback must have a shared token."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not token:
        raise ConfigError(f"learner host={host!r} is reachable from the network: set a shared token "
                          "(learner.token=..., the same on every actor)")


def pack_arrays(arrays: dict, metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.numpy import save

    return save(arrays, metadata=metadata)


def unpack_arrays(payload: bytes) -> dict:
    from safetensors.numpy import load

    try:
        return load(payload)
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise WireError(f"payload is not a valid safetensors blob: {e}") from None


def pack_weights(tensors: dict) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})


def unpack_weights(payload: bytes) -> dict:
    from safetensors.torch import load

    try:
        return load(payload)
    except Exception as e:
        raise WireError(f"weights payload is not a valid safetensors blob: {e}") from None
