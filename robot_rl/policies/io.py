"""Save and load policies as robot_rl checkpoints (safetensors + YAML; never pickle).

config.yaml holds {"policy": {"type", "spec", "model"}} plus whatever the caller adds (e.g. the
training config); normalizer.safetensors holds "<key>.scale" / "<key>.offset".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from robot_rl.core.checkpoint import (WEIGHTS, check_shapes, load_checkpoint, partial_dir, replace_directory,
                                      save_checkpoint)
from robot_rl.core.config import to_plain
from robot_rl.core.errors import CheckpointError, ConfigError
from robot_rl.core.spec import PolicySpec
from robot_rl.policies.base import ChunkPolicy
from robot_rl.policies.model_config import PolicyConfig
from robot_rl.policies.device import resolve_device
from robot_rl.policies.diffusion_policy import DiffusionPolicy
from robot_rl.policies.normalizer import Normalizer
from robot_rl.policies.one_step import OneStepPolicy

POLICY_TYPES: dict[str, type[ChunkPolicy]] = {"diffusion": DiffusionPolicy, "one_step": OneStepPolicy}
# policies composed on a frozen base (RL stages): "module:Class" whose class has checkpoint_parts() (what
# save_policy writes) and classmethod load(path, device); the base is saved inside the directory (BASE_DIR)
BASE_DIR = "base"
COMPOSITE_TYPES: dict[str, str] = {
    "residual": "robot_rl.policies.residual_policy:ResidualPolicy",
    "noise_steered": "robot_rl.policies.noise_steered:NoiseSteeredPolicy",
    "gaussian": "robot_rl.policies.gaussian_chunk:GaussianChunkPolicy",   # actor-only (RLPD from scratch)
    "best_of_n": "robot_rl.policies.best_of_n:BestOfNPolicy",            # N base samples, argmax Q (offline)
}


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


# bytes per parameter to train it: fp32 weights, gradients, AdamW's two moments and the EMA copy
TRAINING_BYTES_PER_PARAMETER = 5 * 4


def check_model_size(cls: type[ChunkPolicy], spec: PolicySpec, cfg: PolicyConfig, source: str,
                     bytes_per_parameter: int = TRAINING_BYTES_PER_PARAMETER) -> int:
    """Count the parameters of `cls(spec, cfg)` without allocating them (built on the meta device) and
    raise ConfigError when they would not fit this machine's memory (e.g. model.mlp_hidden_dim=300000
    asks for ~360 GB of weights). Returns the parameter count."""
    try:
        with torch.device("meta"):
            model = cls(spec, cfg)
    except (ValueError, RuntimeError) as e:   # a shape the layers refuse (e.g. kernel larger than the chunk)
        raise ConfigError(f"{source}: the model cannot be built from this config: {e}") from None
    n = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    need, have = n * bytes_per_parameter, physical_memory_bytes()
    if need > have:
        raise ConfigError(f"{source}: the model has {n / 1e9:.2f} billion parameters and needs about "
                          f"{need / 2**30:.0f} GiB, more than this machine's {have / 2**30:.0f} GiB of memory; "
                          f"reduce {_size_fields(cfg)}")
    return n


def _size_fields(cfg: PolicyConfig) -> str:
    if cfg.denoiser == "mlp":
        return f"model.mlp_hidden_dim (now {cfg.mlp_hidden_dim}) or model.mlp_num_blocks (now {cfg.mlp_num_blocks})"
    return f"model.down_dims (now {list(cfg.down_dims)})"


def _composite(kind: str):
    import importlib

    module, name = COMPOSITE_TYPES[kind].split(":")
    return getattr(importlib.import_module(module), name)


def save_policy(policy: ChunkPolicy, path: str | Path, config: Mapping[str, Any] | None = None,
                meta: Mapping[str, Any] | None = None) -> Path:
    """Write `policy` (weights, spec, model config, normalizer) to the checkpoint directory `path`; the one
    writer of every policy checkpoint. A composite's `checkpoint_parts()` gives (its config section beside
    type and spec, the module whose weights are saved, the flat normalizer or None, the base or None); the
    base goes to path/BASE_DIR."""
    extra = dict(to_plain(dict(config or {})))
    extra.pop("policy", None)
    base = None
    if policy.kind in COMPOSITE_TYPES:
        section, module, normalizer, base = policy.checkpoint_parts()
    else:
        section, module, normalizer = {"model": policy.cfg.to_dict()}, policy, policy.normalizer.flat()
    full = {"policy": {"type": policy.kind, "spec": policy.spec.to_dict(), **to_plain(dict(section))}, **extra}
    if base is None:
        return save_checkpoint(path, module.state_dict(), full, normalizer, meta)
    path = Path(path)   # composite and base written beside `path`, swapped in whole: never one without the other
    tmp = partial_dir(path)
    save_checkpoint(tmp, module.state_dict(), full, normalizer, meta)
    save_policy(base, tmp / BASE_DIR, meta=meta)
    return replace_directory(tmp, path)


def load_policy(path: str | Path, device: str | torch.device = "auto") -> ChunkPolicy:
    """Checkpoint directory -> DiffusionPolicy, OneStepPolicy or a composite (COMPOSITE_TYPES) in eval
    mode on `device`. Raises CheckpointError naming the file and the mismatching field/tensor."""
    ckpt = load_checkpoint(path)
    config_file = Path(path) / "config.yaml"
    section = ckpt.config.get("policy")
    if isinstance(section, dict) and section.get("type") in COMPOSITE_TYPES:
        return _composite(section["type"]).load(path, device)
    if not isinstance(section, dict) or not {"type", "spec", "model"} <= set(section):
        raise CheckpointError(f"{config_file}: no 'policy' section with type, spec and model; not a policy checkpoint")
    cls = POLICY_TYPES.get(section["type"])
    if cls is None:
        raise CheckpointError(f"{config_file}: policy.type={section['type']!r}, expected one of "
                              f"{sorted(POLICY_TYPES) + sorted(COMPOSITE_TYPES)}")
    try:
        spec = PolicySpec.from_dict(section["spec"])
        cfg = PolicyConfig.from_dict(section["model"])
    except ConfigError as e:
        raise CheckpointError(f"{config_file}: {e}") from None
    normalizer = Normalizer.from_flat(spec, ckpt.normalizer, source=str(Path(path) / "normalizer.safetensors"))
    try:   # the config is checked before anything is allocated: a tampered size must not exhaust memory
        check_model_size(cls, spec, cfg, str(config_file), bytes_per_parameter=4)
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    policy = cls(spec, cfg, normalizer)
    expected = {k: tuple(v.shape) for k, v in policy.state_dict().items()}
    check_shapes(expected, ckpt.weights, str(Path(path) / WEIGHTS))
    policy.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ckpt.weights.items()})
    return policy.to(resolve_device(device)).eval()
