"""Observation/action spec: the single source of truth for keys, shapes and normalization.

It is saved inside every checkpoint (under `spec:` in config.yaml) and read by the data sampler,
the policies and the policy runner. Images are stored HWC uint8 but described here as the model
sees them after decoding: (C, H, W).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from robot_rl.core.errors import ConfigError

KINDS = ("low_dim", "rgb", "depth")
NORMALIZATIONS = ("limits", "gaussian", "none", "image")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class FeatureSpec:
    """One model input or output.

    key: name the model uses; stream: episode-store stream it is read from (defaults to key);
    shape: per-timestep shape ((D,) for low_dim, (C, H, W) for images); kind: low_dim | rgb | depth;
    normalize: limits (to [-1, 1]) | gaussian (zero mean, unit std) | image ([0, 1]) | none.
    """

    key: str
    shape: tuple[int, ...]
    kind: str = "low_dim"
    stream: str = ""
    normalize: str = "limits"

    def __post_init__(self) -> None:
        if not _NAME.match(self.key):
            raise ConfigError(f"spec key {self.key!r}: must match {_NAME.pattern}")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if not self.stream:
            object.__setattr__(self, "stream", self.key)
        if self.kind not in KINDS:
            raise ConfigError(f"spec {self.key}.kind={self.kind!r}: expected one of {KINDS}")
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(f"spec {self.key}.normalize={self.normalize!r}: expected one of {NORMALIZATIONS}")
        if self.kind != "low_dim" and len(self.shape) != 3:
            raise ConfigError(f"spec {self.key}: image shape must be (C, H, W), got {self.shape}")
        if not all(self.streams):
            raise ConfigError(f"spec {self.key}.stream={self.stream!r}: empty stream name in '+' list")
        if self.kind != "low_dim" and len(self.streams) != 1:
            raise ConfigError(f"spec {self.key}.stream={self.stream!r}: an image feature reads exactly one stream")

    @property
    def streams(self) -> list[str]:
        """Store streams this feature reads; several joined with '+' are concatenated on the last axis."""
        return [s.strip() for s in self.stream.split("+")]

    def from_streams(self, sample: Mapping[str, Any]):
        """This feature's value from a {stream name: array} sample (an env observation, a store row)."""
        import numpy as np

        try:
            parts = [np.asarray(sample[s]) for s in self.streams]
        except KeyError as e:
            raise ConfigError(f"spec {self.key}: stream {e} missing from observation with keys {sorted(sample)}") from None
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)


# policy kinds whose act() can return any number of the chunk's actions after the last observation step (up to
# PolicySpec.max_action_steps); the others (residual, steered noise, Gaussian chunks) are built on a fixed length
RECEDING_KINDS = ("diffusion", "one_step")


@dataclass(frozen=True)
class PolicySpec:
    """Observation features, the action, and the chunking of a policy.

    n_obs_steps: observation history length; horizon: predicted action steps; n_action_steps:
    steps executed per chunk; rate_hz: policy/action rate.
    """

    obs: tuple[FeatureSpec, ...]
    action: FeatureSpec
    n_obs_steps: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    rate_hz: float = 10.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.obs:
            raise ConfigError("spec.obs: at least one observation feature is required")
        keys = [f.key for f in self.obs]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"spec.obs: duplicate keys {keys}")
        if self.action.kind != "low_dim" or len(self.action.shape) != 1:
            raise ConfigError(f"spec.action: must be low_dim with shape (D,), got {self.action}")
        if not (1 <= self.n_action_steps <= self.horizon):
            raise ConfigError(
                f"spec: need 1 <= n_action_steps ({self.n_action_steps}) <= horizon ({self.horizon})"
            )
        if self.n_obs_steps < 1:
            raise ConfigError(f"spec.n_obs_steps must be >= 1, got {self.n_obs_steps}")

    @property
    def max_action_steps(self) -> int:
        """The most actions a chunk can execute: those from the last observation step to the horizon's end."""
        return self.horizon - self.n_obs_steps + 1

    @property
    def low_dim(self) -> tuple[FeatureSpec, ...]:
        return tuple(f for f in self.obs if f.kind == "low_dim")

    @property
    def images(self) -> tuple[FeatureSpec, ...]:
        return tuple(f for f in self.obs if f.kind != "low_dim")

    def obs_from_streams(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        """Policy observation {key: value} from a {stream name: array} sample."""
        return {f.key: f.from_streams(sample) for f in self.obs}

    @property
    def action_dim(self) -> int:
        return self.action.shape[0]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["obs"] = [asdict(f) | {"shape": list(f.shape)} for f in self.obs]
        d["action"] = asdict(self.action) | {"shape": list(self.action.shape)}
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "PolicySpec":
        try:
            obs = d["obs"]
            if isinstance(obs, Mapping):  # {key: {...}} form used in YAML configs
                obs = [{"key": k, **dict(v)} for k, v in obs.items()]
            action = dict(d["action"])
            action.setdefault("key", "action")
            return PolicySpec(
                obs=tuple(FeatureSpec(**dict(f)) for f in obs),
                action=FeatureSpec(**action),
                n_obs_steps=int(d.get("n_obs_steps", 2)),
                horizon=int(d.get("horizon", 16)),
                n_action_steps=int(d.get("n_action_steps", 8)),
                rate_hz=float(d.get("rate_hz", 10.0)),
                extra=dict(d.get("extra", {}) or {}),
            )
        except KeyError as e:
            raise ConfigError(f"spec: missing field {e}") from None
        except TypeError as e:
            raise ConfigError(f"spec: {e}") from None
