"""Checkpoint directories: safetensors weights + YAML config + normalizer stats + code version.

Layout of a checkpoint directory:
    model.safetensors       weights (flat name -> array)
    normalizer.safetensors  normalizer statistics (flat name -> array), may be empty
    config.yaml             resolved config, including the observation/action spec
    meta.json               format version, code version, creation time, sha256 of every file

Loading parses JSON, YAML (safe loader) and safetensors headers only, so it never executes code.
The sha256 digests catch truncated or tampered files; shape checks catch a mismatched model; weights
or normalizer statistics with NaN/inf (a diverged run) are refused, naming the tensor.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from robot_rl.core.config import load_yaml, save_yaml
from robot_rl.core.errors import CheckpointError

FORMAT = "robot_rl.checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
NORMALIZER = "normalizer.safetensors"
CONFIG = "config.yaml"
META = "meta.json"


@dataclass
class Checkpoint:
    path: Path
    weights: dict[str, np.ndarray]
    config: dict[str, Any]
    normalizer: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def code_version() -> str:
    """Package version plus the git commit of the checkout, when there is one."""
    from robot_rl import __version__

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+g{sha}" if sha else __version__


def _to_numpy(tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for name, value in tensors.items():
        if hasattr(value, "detach"):  # torch tensor, without importing torch here
            value = value.detach().cpu().numpy()
        arr = np.ascontiguousarray(np.asarray(value))
        if arr.dtype == object:
            raise CheckpointError(f"checkpoint tensor {name!r} has dtype object; only numeric arrays are stored")
        out[str(name)] = arr
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(
    path: str | Path,
    weights: Mapping[str, Any],
    config: Mapping[str, Any],
    normalizer: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (written beside, then renamed into place)."""
    from safetensors.numpy import save_file

    path = Path(path)
    tmp = partial_dir(path)
    tmp.mkdir(parents=True)
    save_file(_to_numpy(weights), str(tmp / WEIGHTS))
    save_file(_to_numpy(normalizer or {}), str(tmp / NORMALIZER))
    save_yaml(dict(config), tmp / CONFIG)
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "code_version": code_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **dict(meta or {}),
        "sha256": {name: _sha256(tmp / name) for name in (WEIGHTS, NORMALIZER, CONFIG)},
    }
    (tmp / META).write_text(json.dumps(info, indent=2, default=str))
    return replace_directory(tmp, path)


def partial_dir(path: Path) -> Path:
    """`<path>.partial`, emptied (not created): where a directory is written before replace_directory
    swaps it in place of `path`."""
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def replace_directory(tmp: Path, path: Path) -> Path:
    """Put the fully written directory `tmp` in place of `path` (the old one is removed only after)."""
    if path.exists():
        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint directory. Raises CheckpointError naming the bad file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint directory")
    meta_path = path / META
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{meta_path}: missing; {path} is not a robot_rl checkpoint") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{meta_path}: format_version={version!r}, expected an integer version "
                              f"(this robot_rl reads 1 to {FORMAT_VERSION})")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: format_version {version} is newer than this robot_rl supports ({FORMAT_VERSION}); "
            f"upgrade robot_rl"
        )
    digests = meta.get("sha256")
    if not isinstance(digests, dict):
        raise CheckpointError(f"{meta_path}: sha256={digests!r}, expected a mapping of file name to digest")
    for name in (WEIGHTS, NORMALIZER, CONFIG):
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing from checkpoint")
        if name not in digests:
            raise CheckpointError(f"{meta_path}: no sha256 recorded for {name}")
        actual = _sha256(file)
        if actual != digests[name]:
            raise CheckpointError(
                f"{file}: sha256 {actual[:12]}... does not match {digests[name][:12]}... recorded in "
                f"{META}; the file was modified or truncated after saving"
            )
    try:
        weights = load_file(str(path / WEIGHTS))
        normalizer = load_file(str(path / NORMALIZER))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None
    for name, tensors in ((WEIGHTS, weights), (NORMALIZER, normalizer)):
        check_finite(tensors, str(path / name))
    config = load_yaml(path / CONFIG) or {}
    if not isinstance(config, dict):
        raise CheckpointError(f"{path / CONFIG}: expected a mapping, got {type(config).__name__}")
    return Checkpoint(path=path, weights=weights, config=config, normalizer=normalizer, meta=meta)


def check_finite(tensors: Mapping[str, np.ndarray], source: str) -> None:
    """Raise CheckpointError naming the first tensors holding NaN or inf (such a policy acts on garbage)."""
    bad = []
    for name, arr in tensors.items():
        if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.complexfloating):
            n = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            if n:
                bad.append(f"{name} ({n} of {arr.size} values)")
    if bad:
        raise CheckpointError(f"{source}: non-finite weights (NaN or inf) in {', '.join(bad[:5])}"
                              f"{f' and {len(bad) - 5} more tensors' if len(bad) > 5 else ''}; the run that saved "
                              f"it diverged: use an earlier checkpoint")


def check_shapes(expected: Mapping[str, tuple], weights: Mapping[str, np.ndarray], source: str) -> None:
    """Raise CheckpointError listing missing, unexpected and mis-shaped tensors."""
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [
        f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(expected[k])}"
        for k in sorted(set(expected) & set(weights))
        if tuple(weights[k].shape) != tuple(expected[k])
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append("shape mismatch " + "; ".join(wrong[:5]))
        raise CheckpointError(f"{source}: checkpoint does not match the model: " + ", ".join(parts))
