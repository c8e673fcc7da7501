"""Build a PolicySpec from a config section and the store it will be trained on, and the observation presets.

Shapes the config leaves out are read from the store: a low-dim feature's width is the sum of its
streams' widths, an image feature defaults to the stream's (C, H, W), the rate to the action's. A feature
that names an image stream is an image feature (rgb or depth) unless it says otherwise.

`obs=image|state` names the observation features a command trains on or expects of a checkpoint:
image: proprioception + the cameras (what a real rig has); state: proprioception + task_state, the twin's
ground truth of the scene (object poses), which no real rig has: twin-only.
"""

from __future__ import annotations

from typing import Any, Mapping

from robot_rl.core.errors import ConfigError
from robot_rl.core.spec import FeatureSpec, PolicySpec

OBS_KINDS = ("state", "image")
PRIVILEGED_STREAMS = ("task_state",)          # the twin's scene ground truth: no real rig has it
PROPRIO = "ee_pos+ee_quat+gripper_pos"         # what the arm and gripper report, on the twin and a rig
TWIN_CAMERAS = ("front", "wrist")              # calibration/twin/cameras.yaml: streams cam_<name>_rgb
GYM_CAMERA = "render"                          # a Gymnasium task's rendered frame: stream cam_render_rgb


def obs_preset(obs: str, task_cfg: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """The spec.obs features of obs=<state|image>: state reads PROPRIO + task_state (privileged, twin-only); image
    reads PROPRIO and the twin's cameras (a Gymnasium task: its rendered frame; its state streams are named with
    spec.obs.state.stream=..., as for obs=state)."""
    from robot_rl.sim.gym_tasks import is_gym_task

    if obs not in OBS_KINDS:
        raise ConfigError(f"obs={obs}: expected one of {', '.join(OBS_KINDS)}")
    if obs == "state":
        return {"state": {"stream": f"{PROPRIO}+task_state"}}
    cameras = (GYM_CAMERA,) if is_gym_task(dict(task_cfg) if task_cfg else None) else TWIN_CAMERAS
    return {"state": {"stream": PROPRIO}} | {c: {"stream": f"cam_{c}_rgb", "kind": "rgb"} for c in cameras}


def spec_section(obs: str, section: Mapping[str, Any], task_cfg: Mapping[str, Any] | None = None) -> dict:
    """The spec config `section` with its features: obs_preset(obs)'s, each updated by the section's own
    spec.obs.<key> (a new key adds a feature, `spec.obs.<key>=null` drops one)."""
    features = obs_preset(obs, task_cfg)
    for key, f in dict(section.get("obs") or {}).items():
        if f is None:
            features.pop(key, None)
        else:
            features[key] = {**features.get(key, {}), **dict(f)}
    if not features:
        raise ConfigError(f"spec.obs: obs={obs} with every feature dropped leaves the policy no observation")
    return {**dict(section), "obs": features}


def privileged_streams(spec: PolicySpec) -> list[str]:
    """The privileged (twin-only) streams the spec's observation features read."""
    return sorted({s for f in spec.obs for s in f.streams if s in PRIVILEGED_STREAMS})


def obs_kind(spec: PolicySpec) -> str | None:
    """image: cameras and no privileged stream; state: no camera; None: cameras and privileged state both."""
    if not spec.images:
        return "state"
    return None if privileged_streams(spec) else "image"


def checkpoint_spec(checkpoint) -> PolicySpec:
    """The spec a policy checkpoint directory's config.yaml holds (no weights are read)."""
    from pathlib import Path

    from robot_rl.core.config import load_yaml
    from robot_rl.core.errors import CheckpointError

    config = load_yaml(Path(checkpoint) / "config.yaml")
    try:
        return PolicySpec.from_dict(config["policy"]["spec"])
    except (KeyError, TypeError):
        raise CheckpointError(f"{Path(checkpoint) / 'config.yaml'}: no policy.spec; not a policy checkpoint") from None


def check_obs(obs: str | None, spec: PolicySpec, checkpoint) -> None:
    """obs= given with a checkpoint must name what its spec reads (None: nothing to check)."""
    if obs is None:
        return
    if obs not in OBS_KINDS:
        raise ConfigError(f"obs={obs}: expected one of {', '.join(OBS_KINDS)} (or leave it out: the checkpoint decides)")
    kind = obs_kind(spec)
    if kind == obs:
        return
    cams = [f.stream for f in spec.images]
    reads = (f"cameras {', '.join(cams)}" if cams else "no camera") + (
        f" and privileged {', '.join(privileged_streams(spec))}" if privileged_streams(spec) else "")
    fix = f"use obs={kind} or leave obs= out" if kind else "leave obs= out"
    raise ConfigError(f"obs={obs}: checkpoint {checkpoint} reads {reads} ({kind or 'image + privileged state'}"
                      f" observations); {fix}")


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
