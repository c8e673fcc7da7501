"""The actor/learner wire format: length-prefixed frames of a JSON header and a safetensors payload.

    frame = b"RRL1" | u32 header bytes | u64 payload bytes | header (UTF-8 JSON object) | payload

Episodes travel as safetensors of their typed arrays, weights as safetensors of tensors: nothing
is pickled, so a frame from the network can never execute code. The first frame of a connection is
`hello` with the shared token; a learner that listens beyond localhost refuses to start without one.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import socket
import struct
from typing import Any

from robot_rl.core.errors import ConfigError, RobotRLError

MAGIC = b"RRL1"
_PREFIX = struct.Struct("!4sIQ")
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 1 << 31


class WireError(RobotRLError):
    """A malformed frame, a closed connection or a rejected token."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise WireError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def send_frame(sock: socket.socket, header: dict[str, Any], payload: bytes = b"") -> None:
    head = json.dumps(header).encode()
    sock.sendall(_PREFIX.pack(MAGIC, len(head), len(payload)) + head + payload)


def recv_frame(sock: socket.socket, max_payload: int = MAX_PAYLOAD) -> tuple[dict[str, Any], bytes]:
    magic, n_head, n_payload = _PREFIX.unpack(_recv_exact(sock, _PREFIX.size))
    if magic != MAGIC:
        raise WireError(f"bad frame magic {magic!r} (expected {MAGIC!r}): not a robot_rl actor/learner peer")
    if n_head > MAX_HEADER or n_payload > max_payload:
        raise WireError(f"frame too large: header {n_head} B (max {MAX_HEADER}), payload {n_payload} B "
                        f"(max {max_payload})")
    try:
        header = json.loads(_recv_exact(sock, n_head))
    except json.JSONDecodeError as e:
        raise WireError(f"frame header is not JSON: {e}") from None
    if not isinstance(header, dict) or "type" not in header:
        raise WireError(f"frame header must be an object with a 'type', got {str(header)[:80]}")
    return header, _recv_exact(sock, n_payload) if n_payload else b""


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
