"""Build a PolicySpec from a config section and the store it will be trained on.

Shapes the config leaves out are read from the store: a low-dim feature's width is the sum of its
streams' widths, an image feature defaults to the stream's (C, H, W), the rate to the action's. A feature
that names an image stream is an image feature (rgb or depth) unless it says otherwise.
"""

from __future__ import annotations

from typing import Any, Mapping

from robot_rl.core.errors import ConfigError
from robot_rl.core.spec import FeatureSpec, PolicySpec


def _stream(store, name: str, key: str):
    if name not in store.streams:
        raise ConfigError(f"spec {key}: stream {name!r} is not in {store.path} (streams: {sorted(store.streams)})")
    return store.streams[name]


def _image_kind(stream) -> str | None:
    """rgb for a colour image stream (H, W, 3), depth for another image stream (stored as JPEG or PNG), None
    otherwise."""
    if stream.codec not in ("jpeg", "png"):
        return None
    return "rgb" if len(stream.shape) == 3 and stream.shape[2] == 3 else "depth"


def build_spec(section: Mapping[str, Any], store) -> PolicySpec:
    section = dict(section)
    obs = []
    for key, f in dict(section.get("obs") or {}).items():
        f = dict(f or {})
        f.setdefault("stream", key)
        streams = [s.strip() for s in f["stream"].split("+")]
        specs = [_stream(store, s, key) for s in streams]
        kind = f.setdefault("kind", _image_kind(specs[0]) or "low_dim")   # an image stream names its own kind
        if "shape" not in f or f["shape"] is None:
            if kind == "low_dim":
                f["shape"] = [sum(int(s.shape[-1]) if s.shape else 1 for s in specs)]
            else:
                h, w = specs[0].shape[:2]
                c = specs[0].shape[2] if len(specs[0].shape) == 3 else 1
                f["shape"] = [c, h, w]
        if kind != "low_dim":
            f.setdefault("normalize", "image")
        obs.append(FeatureSpec(key=key, **f))
    action = dict(section.get("action") or {"stream": "action"})
    action.setdefault("key", "action")
    action.setdefault("stream", "action")
    a_spec = _stream(store, action["stream"], "action")
    action.setdefault("shape", list(a_spec.shape))
    rate = section.get("rate_hz") or a_spec.rate_hz
    return PolicySpec(
        obs=tuple(obs), action=FeatureSpec(**action),
        n_obs_steps=int(section.get("n_obs_steps", 2)), horizon=int(section.get("horizon", 16)),
        n_action_steps=int(section.get("n_action_steps", 8)), rate_hz=float(rate),
    )
