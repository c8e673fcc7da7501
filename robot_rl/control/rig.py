"""Rig configuration (configs/robot/*.yaml), read the same way by the twin and by real backends."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from robot_rl.control.controller import LAWS, Controller
from robot_rl.control.impedance import GainProfile
from robot_rl.control.limits import SafetyLimits
from robot_rl.core.config import config_dir, load_yaml, to_plain
from robot_rl.core.errors import ConfigError


def repo_root() -> Path:
    """Rig files name paths relative to the checkout (the parent of configs/)."""
    return config_dir().parent


@dataclass
class RigConfig:
    """A parsed rig file. Paths are absolute; rates in Hz."""

    name: str
    backend: str
    model: Path
    calibration: Path
    arm: dict
    gripper: dict
    cameras: dict
    loop_hz: float
    policy_hz: float
    profile: str
    profiles: dict[str, GainProfile]
    safety: SafetyLimits
    raw: dict = field(default_factory=dict, repr=False)

    def make_controller(self, gravity_comp: bool | None = None) -> Controller:
        """A Controller with this rig's limits, gains and null-space posture, ticking at loop_hz."""
        if gravity_comp is None:
            gravity_comp = not bool(self.arm.get("gravity_compensated_by_backend", True))
        return Controller(self.safety, self.profile, self.arm.get("nullspace_q"), 1.0 / self.loop_hz,
                          gravity_comp, self.profiles, str(self.raw.get("control", {}).get("law", "auto")))


def load_rig(cfg: Mapping[str, Any] | str | Path = "panda_twin") -> RigConfig:
    """Rig from a config mapping (Hydra `robot` group), a file path, or a name in configs/robot/."""
    if isinstance(cfg, (str, Path)):
        path = Path(cfg)
        if not path.suffix:
            path = config_dir() / "robot" / f"{cfg}.yaml"
        source = str(path)
        cfg = load_yaml(path)
    else:
        source = f"robot config {cfg.get('name', '?')!r}"
    d = to_plain(cfg)
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a mapping, got {type(d).__name__}")

    def need(key: str):
        if key not in d:
            raise ConfigError(f"{source}: missing field {key!r}")
        return d[key]

    root = repo_root()
    ctrl = dict(need("control"))
    profiles = {n: GainProfile(n, **dict(p)) for n, p in dict(ctrl.get("profiles", {})).items()}
    if not profiles:
        from robot_rl.control.impedance import PROFILES
        profiles = dict(PROFILES)
    profile = str(ctrl.get("profile", "precise"))
    if profile not in profiles:
        raise ConfigError(f"{source}: control.profile={profile!r} is not one of {sorted(profiles)}")
    try:
        safety = SafetyLimits.from_dict(ctrl.get("safety"))
    except ConfigError as e:
        raise ConfigError(f"{source}: control.{e}") from None
    if str(ctrl.get("law", "auto")) not in LAWS:
        raise ConfigError(f"{source}: control.law={ctrl['law']!r} is not one of {list(LAWS)} (compiled: the C law, "
                          f"python: the reference law, auto: compiled when built)")
    policy_hz = float(ctrl.get("policy_hz", 20))
    if not 1.0 <= policy_hz <= 100.0:
        raise ConfigError(f"{source}: control.policy_hz={policy_hz} outside 1..100 Hz")
    model = root / str(need("model"))
    calibration = root / str(need("calibration"))
    for key, p in (("model", model), ("calibration", calibration)):
        if not p.is_file():
            raise ConfigError(f"{source}: {key}={d[key]!r} not found at {p}")
    return RigConfig(
        name=str(d.get("name", "rig")), backend=str(d.get("backend", "twin")), model=model,
        calibration=calibration, arm=dict(need("arm")), gripper=dict(d.get("gripper", {})),
        cameras=dict(d.get("cameras", {})), loop_hz=float(ctrl.get("loop_hz", 1000)), policy_hz=policy_hz,
        profile=profile, profiles=profiles, safety=safety, raw=d,
    )
