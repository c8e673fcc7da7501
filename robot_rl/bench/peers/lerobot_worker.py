"""The LeRobot side of `robot-rl bench all`, run INSIDE a LeRobot virtual environment as a script:

    <lerobot venv>/bin/python lerobot_worker.py <request.json>

It imports only the standard library and numpy at module level (robot_rl is not installed in that
venv; lerobot and torch are imported by the measurements), so robot_rl imports this module too, for
the exchange format: `validate_request` / `validate_result` are the single definition of it.

Exchange (files only, never pickle):
    request.json   what to measure (PROTOCOL, threads, repeats, seed, result path, and the sections
                   record / read / latency, each null to skip it); see validate_request.
    episodes.npz   the recorded episodes for `record`: state (E, T, Ds) float32, action (E, T, Da)
                   float32, one (E, T, H, W, 3) uint8 array per camera; read with allow_pickle=False.
    result.json    the raw measurements (seconds per repeat / per call, samples/s per repeat) plus
                   the lerobot and torch versions; medians and ratios are computed by robot_rl.
Progress goes to stderr; the exit status is 0 only when result.json was written.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

PROTOCOL = "robot_rl.lerobot_peer/1"
READ_KINDS = ("state", "images")
REPO_ID = "robot_rl/bench"  # local datasets only (root=...), never fetched


# -- the exchange format ------------------------------------------------------------------------
def _field(where: str, obj: dict, key: str, kind, check=None, why: str = ""):
    """obj[key] of type `kind` (and passing `check`), else ValueError naming the field and value."""
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{where}: missing field {key!r}")
    value = obj[key]
    ok = isinstance(value, kind) and not (kind in (int, (int, float)) and isinstance(value, bool))
    if not ok or (check is not None and not check(value)):
        raise ValueError(f"{where}: field {key!r} = {value!r}: {why or f'expected {kind}'}")
    return value


def _positive_int(where: str, obj: dict, key: str) -> int:
    return _field(where, obj, key, int, lambda v: v > 0, "expected a positive integer")


def _path(where: str, obj: dict, key: str) -> str:
    return _field(where, obj, key, str, lambda v: len(v) > 0, "expected a non-empty path")


def validate_request(req) -> dict:
    """The request, checked field by field; ValueError names the first bad field and its value."""
    w = "request"
    if not isinstance(req, dict):
        raise ValueError(f"{w}: expected a JSON object, got {type(req).__name__}")
    _field(w, req, "protocol", str, lambda v: v == PROTOCOL, f"expected {PROTOCOL!r}")
    _path(w, req, "result")
    _path(w, req, "work_dir")
    for key in ("threads", "repeats"):
        _positive_int(w, req, key)
    _field(w, req, "seed", int)
    if all(req.get(s) is None for s in ("record", "read", "latency")):
        raise ValueError(f"{w}: nothing to measure (record, read and latency are all null)")
    if req.get("record") is not None:
        r, rw = req["record"], f"{w}.record"
        _path(rw, r, "episodes")
        _positive_int(rw, r, "fps")
        _field(rw, r, "cameras", list, lambda v: len(v) > 0 and all(isinstance(c, str) and c for c in v),
               "expected a non-empty list of camera names")
        _field(rw, r, "vcodec", str)
        _field(rw, r, "image_writer_threads_per_camera", int, lambda v: v >= 0, "expected an integer >= 0")
        _field(rw, r, "streaming_encoding", bool)
    if req.get("read") is not None:
        r, rw = req["read"], f"{w}.read"
        _positive_int(rw, r, "n_obs_steps")
        _positive_int(rw, r, "horizon")
        _field(rw, r, "workers", int, lambda v: v >= 0, "expected an integer >= 0")
        kinds = _field(rw, r, "datasets", dict, lambda v: 0 < len(v) and set(v) <= set(READ_KINDS),
                       f"expected a mapping with keys among {READ_KINDS}")
        for kind in kinds:
            _path(f"{rw}.datasets", kinds, kind)
            _positive_int(f"{rw}.batch_size", _field(rw, r, "batch_size", dict), kind)
            _positive_int(f"{rw}.samples", _field(rw, r, "samples", dict), kind)
    if req.get("latency") is not None:
        r, rw = req["latency"], f"{w}.latency"
        for key in ("action_dim", "n_obs_steps", "horizon", "n_action_steps"):
            _positive_int(rw, r, key)
        obs = _field(rw, r, "obs", dict, lambda v: len(v) > 0, "expected a non-empty mapping")
        for name, o in obs.items():
            ow = f"{rw}.obs.{name}"
            _positive_int(ow, o, "state_dim")
            _field(ow, o, "env_state_dim", int, lambda v: v >= 0, "expected an integer >= 0")
            cams = _field(ow, o, "cameras", int, lambda v: v >= 0, "expected an integer >= 0")
            if cams:
                _field(ow, o, "image_shape", list, lambda v: len(v) == 3 and all(isinstance(x, int) and x > 0
                                                                               for x in v), "expected [C, H, W]")
            elif o.get("env_state_dim", 0) == 0:
                raise ValueError(f"{ow}: LeRobot's diffusion policy needs cameras > 0 or env_state_dim > 0")
        methods = _field(rw, r, "methods", dict, lambda v: len(v) > 0, "expected a non-empty mapping")
        for name, m in methods.items():
            mw = f"{rw}.methods.{name}"
            _field(mw, m, "scheduler", str, lambda v: v in ("DDPM", "DDIM"), "expected 'DDPM' or 'DDIM'")
            _positive_int(mw, m, "steps")
            _positive_int(mw, m, "calls")
            _field(mw, m, "warmup", int, lambda v: v >= 0, "expected an integer >= 0")
            dims = m.get("down_dims")
            if dims is not None and not (isinstance(dims, list) and dims and all(
                    isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims)):
                raise ValueError(f"{mw}: field 'down_dims' = {dims!r}: expected null (LeRobot's default) or a "
                                 f"list of positive integers")
    return req


def _positive_floats(where: str, obj: dict, key: str, n: int | None) -> list[float]:
    values = _field(where, obj, key, list, lambda v: len(v) > 0 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0 for x in v),
        "expected a non-empty list of positive finite numbers")
    if n is not None and len(values) != n:
        raise ValueError(f"{where}: field {key!r} has {len(values)} values, expected {n}")
    return values


def latency_key(method: str, obs: str) -> str:
    return f"{method}_{obs}"


def validate_result(res, req: dict) -> dict:
    """A worker's result for request `req`: every requested measurement present, with the
    requested number of positive finite values; ValueError names the first bad field."""
    w = "result"
    if not isinstance(res, dict):
        raise ValueError(f"{w}: expected a JSON object, got {type(res).__name__}")
    _field(w, res, "protocol", str, lambda v: v == PROTOCOL, f"expected {PROTOCOL!r}")
    _field(w, res, "lerobot_version", str)
    _field(w, res, "torch_version", str)
    repeats = req["repeats"]
    if req.get("record") is not None:
        r = _field(w, res, "record", dict)
        _positive_floats(f"{w}.record", r, "seconds", repeats)
        _positive_int(f"{w}.record", r, "frames")
        _positive_int(f"{w}.record", r, "disk_bytes")
    if req.get("read") is not None:
        r = _field(w, res, "read", dict)
        for kind in req["read"]["datasets"]:
            _positive_floats(f"{w}.read.{kind}", _field(f"{w}.read", r, kind, dict), "samples_per_s", repeats)
    if req.get("latency") is not None:
        r = _field(w, res, "latency", dict)
        lat = req["latency"]
        for method, m in lat["methods"].items():
            for obs in lat["obs"]:
                entry = _field(f"{w}.latency", r, latency_key(method, obs), dict)
                _positive_floats(f"{w}.latency.{latency_key(method, obs)}", entry, "seconds", m["calls"])
                _positive_int(f"{w}.latency.{latency_key(method, obs)}", entry, "parameters")
    return res


# -- measurements (inside the LeRobot venv) -----------------------------------------------------
def _log(msg: str) -> None:
    print(f"  lerobot peer: {msg}", file=sys.stderr, flush=True)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def measure_record(req: dict) -> dict:
    """LeRobotDataset.create + add_frame per frame + save_episode per episode + finalize, timed
    from the first frame until finalize returns, once per repeat into a fresh root. Defaults are
    lerobot-record's (image writer threads per camera, codec, no streaming encoding)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    r = req["record"]
    with np.load(r["episodes"], allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    for key in ("state", "action", *r["cameras"]):
        if key not in data:
            raise ValueError(f"{r['episodes']}: array {key!r} missing (has {sorted(data)})")
    n_eps, steps = data["action"].shape[:2]
    features = {"observation.state": {"dtype": "float32", "shape": (data["state"].shape[-1],), "names": None},
                "action": {"dtype": "float32", "shape": (data["action"].shape[-1],), "names": None}}
    for cam in r["cameras"]:
        features[f"observation.images.{cam}"] = {"dtype": "video", "shape": tuple(data[cam].shape[2:]),
                                                 "names": ["height", "width", "channels"]}
    seconds, disk = [], 0
    for rep in range(req["repeats"]):
        root = Path(req["work_dir"]) / f"record_{rep}"
        ds = LeRobotDataset.create(REPO_ID, r["fps"], features, root=root, use_videos=True,
                                   image_writer_threads=r["image_writer_threads_per_camera"] * len(r["cameras"]),
                                   vcodec=r["vcodec"], streaming_encoding=r["streaming_encoding"])
        t0 = time.perf_counter()
        for e in range(n_eps):
            for k in range(steps):
                frame = {"observation.state": data["state"][e, k], "action": data["action"][e, k], "task": "bench"}
                for cam in r["cameras"]:
                    frame[f"observation.images.{cam}"] = data[cam][e, k]
                ds.add_frame(frame)
            ds.save_episode()
        ds.finalize()
        seconds.append(time.perf_counter() - t0)
        ds.stop_image_writer()
        disk = _dir_bytes(root)
        _log(f"record repeat {rep}: {n_eps * steps} frames in {seconds[-1]:.2f} s ({r['vcodec']})")
    return {"seconds": seconds, "frames": int(n_eps * steps), "disk_bytes": int(disk), "vcodec": r["vcodec"]}


def video_backend() -> str | None:
    """LeRobot's default decoder (torchcodec) when it loads, else PyAV: a pip-installed torchcodec
    without the system FFmpeg libraries it links against is found by LeRobot but cannot decode."""
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:  # ImportError, or OSError/RuntimeError when FFmpeg's libraries are missing
        return "pyav"
    return None


def measure_read(req: dict) -> dict:
    """Training reads: LeRobotDataset with delta_timestamps windows (n_obs_steps observations,
    horizon actions from the first observation, as diffusion policy trains) through a shuffled
    torch DataLoader; samples/s after the first batch (worker start-up), once per repeat."""
    import torch
    from torch.utils.data import DataLoader

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    r = req["read"]
    out = {}
    for kind, root in r["datasets"].items():
        meta = LeRobotDataset(REPO_ID, root=root).meta
        fps = meta.fps
        obs_dt = [(i - (r["n_obs_steps"] - 1)) / fps for i in range(r["n_obs_steps"])]
        act_dt = [(i - (r["n_obs_steps"] - 1)) / fps for i in range(r["horizon"])]
        deltas = {k: obs_dt for k in meta.features if k.startswith("observation.")} | {"action": act_dt}
        ds = LeRobotDataset(REPO_ID, root=root, delta_timestamps=deltas, video_backend=video_backend())
        batch, rates = r["batch_size"][kind], []
        n_samples = max(r["samples"][kind], 16 * batch)  # as robot_rl's reader: >= 16 timed batches
        for rep in range(req["repeats"]):
            loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=r["workers"], drop_last=True,
                                generator=torch.Generator().manual_seed(req["seed"] + rep),
                                persistent_workers=r["workers"] > 0)
            it = iter(loader)  # timed as robot_rl.bench.store.samples_per_s (which this venv cannot import)
            next(it)
            n, t0 = 0, time.perf_counter()
            while n < n_samples:
                try:
                    n += len(next(it)["action"])
                except StopIteration:
                    it = iter(loader)
            rates.append(n / (time.perf_counter() - t0))
            del it, loader
            _log(f"read {kind} repeat {rep}: {rates[-1]:.0f} samples/s (video backend {ds.video_backend})")
        out[kind] = {"samples_per_s": rates, "video_backend": ds.video_backend, "frames": int(meta.total_frames)}
    return out


def diffusion_policy(lat: dict, obs: dict, method: dict):
    """A randomly initialised LeRobot DiffusionPolicy (no hub downloads) for these shapes."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    inputs = {"observation.state": PolicyFeature(FeatureType.STATE, (obs["state_dim"],))}
    if obs["env_state_dim"]:
        inputs["observation.environment_state"] = PolicyFeature(FeatureType.ENV, (obs["env_state_dim"],))
    for c in range(obs["cameras"]):
        inputs[f"observation.images.cam{c}"] = PolicyFeature(FeatureType.VISUAL, tuple(obs["image_shape"]))
    extra = {"down_dims": tuple(method["down_dims"])} if method.get("down_dims") else {}
    config = DiffusionConfig(input_features=inputs,
                             output_features={"action": PolicyFeature(FeatureType.ACTION, (lat["action_dim"],))},
                             n_obs_steps=lat["n_obs_steps"], horizon=lat["horizon"],
                             n_action_steps=lat["n_action_steps"], noise_scheduler_type=method["scheduler"],
                             num_inference_steps=method["steps"], pretrained_backbone_weights=None, device="cpu",
                             **extra)
    return DiffusionPolicy(config).eval()


def measure_latency(req: dict) -> dict:
    """Batch-1 seconds per call of DiffusionModel.generate_actions (what predict_action_chunk runs
    once the observation queues are stacked: encoders + the sampling loop), after `warmup` calls."""
    import torch

    lat = req["latency"]
    gen = torch.Generator().manual_seed(req["seed"])
    out = {}
    for obs_name, obs in lat["obs"].items():
        T = lat["n_obs_steps"]
        batch = {"observation.state": torch.randn(1, T, obs["state_dim"], generator=gen)}
        if obs["env_state_dim"]:
            batch["observation.environment_state"] = torch.randn(1, T, obs["env_state_dim"], generator=gen)
        if obs["cameras"]:
            batch["observation.images"] = torch.rand(1, T, obs["cameras"], *obs["image_shape"], generator=gen)
        for method_name, method in lat["methods"].items():
            policy = diffusion_policy(lat, obs, method)
            times = []
            with torch.inference_mode():
                for _ in range(method["warmup"]):
                    policy.diffusion.generate_actions(batch)
                for _ in range(method["calls"]):
                    t0 = time.perf_counter()
                    policy.diffusion.generate_actions(batch)
                    times.append(time.perf_counter() - t0)
            params = sum(p.numel() for p in policy.parameters())
            out[latency_key(method_name, obs_name)] = {"seconds": times, "parameters": int(params)}
            _log(f"latency {method_name} {obs_name}: p50 {1e3 * float(np.median(times)):.1f} ms "
                 f"({params / 1e6:.1f} M parameters)")
            del policy
    return out


def run(req: dict) -> dict:
    import lerobot
    import torch

    torch.set_num_threads(req["threads"])
    Path(req["work_dir"]).mkdir(parents=True, exist_ok=True)
    res = {"protocol": PROTOCOL, "lerobot_version": str(getattr(lerobot, "__version__", "unknown")),
           "torch_version": str(torch.__version__), "threads": req["threads"]}
    if req.get("record") is not None:
        res["record"] = measure_record(req)
    if req.get("read") is not None:
        res["read"] = measure_read(req)
    if req.get("latency") is not None:
        res["latency"] = measure_latency(req)
    return validate_result(res, req)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: lerobot_worker.py <request.json>", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        req = validate_request(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, ValueError) as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 2
    res = run(req)
    tmp = Path(req["result"] + ".tmp")
    tmp.write_text(json.dumps(res, indent=2))
    os.replace(tmp, req["result"])
    return 0


if __name__ == "__main__":
    # run as a script, this file's folder is sys.path[0]: robot_rl's modules there must not shadow lerobot's
    sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    sys.exit(main(sys.argv[1:]))
