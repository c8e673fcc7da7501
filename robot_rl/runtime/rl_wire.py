"""The actor/learner wire: ZeroMQ messages of a JSON header frame and an optional safetensors frame.

    message = [header (UTF-8 JSON object with a string "type")]  or  [header, payload]

The learner binds a ROUTER socket and each actor connects a DEALER (pyzmq): ZeroMQ does the framing,
connecting, reconnecting and heartbeats. Episodes travel as safetensors of their typed arrays, weights
as safetensors of tensors: nothing is pickled, so a message from the network can never execute code.
A message of the wrong frame count, or a header over the size or nesting bounds, is refused before it
is parsed.

    actor -> learner   hello {token, actor_id}    opens a session; answered by weights or error
                       episode {meta} + arrays     one finished episode (EpisodeRecord.to_arrays)
                       ping {}                     keeps an idle session open
    learner -> actor   weights {version, idle_timeout_s, max_episode_bytes} + tensors   (the answer to a good hello)
                       ack {seq}                   the episode is committed to the learner's store
                       reject {seq, reason}        the episode does not fit the run and never will
                       error {message, retry}      retry false: refused (e.g. a wrong token); true: busy, idle
                                                   or restarted, say hello again

A learner that listens beyond localhost refuses to start without a token.

Camera frames travel as the env's uint8 (H, W, C), uncompressed (the learner stores them png, lossless):
an episode of T steps carries (T + 1) x H x W x 3 bytes per camera, 98 kB per step for the twin's two
128 x 128 cameras, 15.8 MB for an 8 s lift episode at 20 Hz (the learner takes up to max_episode_bytes, 1 GiB).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from itertools import accumulate
from typing import Any

from robot_rl.core.errors import ConfigError, RobotRLError

MAX_HEADER = 64 << 10        # bytes; the largest real header (an episode's meta) is well under 1 kB
MAX_DEPTH = 8                # JSON nesting of a header; real ones use 2
MAX_PAYLOAD = 1 << 31
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


class WireError(RobotRLError):
    """A malformed message, a lost link or a rejected token."""


class PayloadTooLarge(WireError):
    """A well-formed header with a payload over the receiver's limit: the receiver can still name the
    message it refuses (`header`)."""

    def __init__(self, message: str, header: dict[str, Any], size: int) -> None:
        super().__init__(message)
        self.header, self.size = header, size


def endpoint(host: str, port: int | str) -> str:
    """The ZeroMQ TCP endpoint of host:port (IPv6 addresses in brackets)."""
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def encode(header: dict[str, Any], payload: bytes = b"") -> list[bytes]:
    head = json.dumps(header).encode()
    return [head, payload] if payload else [head]


def send_msg(sock, header: dict[str, Any], payload: bytes = b"", flags: int = 0) -> None:
    sock.send_multipart(encode(header, payload), flags, copy=False)


def json_depth(text: str) -> int:
    """Nesting depth of a JSON text's arrays/objects (0 for a scalar), without parsing it."""
    brackets = (1 if c in "[{" else -1 for c in _JSON_STRING.sub("", text) if c in "[]{}")
    return max(accumulate(brackets), default=0)


def parse_header(raw: bytes) -> dict[str, Any]:
    """A message header: a UTF-8 JSON object with a string "type", at most MAX_DEPTH deep."""
    try:
        text = bytes(raw).decode()
    except UnicodeDecodeError as e:
        raise WireError(f"message header is not UTF-8: {e}") from None
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise WireError(f"message header nests {depth} levels deep (max {MAX_DEPTH})")
    try:
        header = json.loads(text)
    except json.JSONDecodeError as e:
        raise WireError(f"message header is not JSON: {e}") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise WireError(f"message header must be an object with a string 'type', got {text[:80]!r}")
    return header


def decode(frames: list, max_payload: int = MAX_PAYLOAD) -> tuple[dict[str, Any], bytes]:
    """(header, payload) of a received message's frames (a ROUTER's routing id already taken off)."""
    if not 1 <= len(frames) <= 2:
        raise WireError(f"a message has a header frame and at most one payload frame, got {len(frames)} frames")
    if len(frames[0]) > MAX_HEADER:
        raise WireError(f"message header of {len(frames[0])} B is too large (max {MAX_HEADER} B)")
    header = parse_header(frames[0])
    payload = bytes(frames[1]) if len(frames) == 2 else b""
    if len(payload) > max_payload:
        raise PayloadTooLarge(f"{header['type'][:40]} message payload of {len(payload)} B is too large "
                              f"(max {max_payload} B)", header, len(payload))
    return header, payload


def recv_msg(sock, max_payload: int = MAX_PAYLOAD, flags: int = 0) -> tuple[dict[str, Any], bytes]:
    return decode(sock.recv_multipart(flags), max_payload)


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
