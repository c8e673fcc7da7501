"""`robot-rl bench policy [json=<file>] [device=auto] [threads=1] [repeats=3]`

Batch-1 inference latency (p50/p99 over repeated calls: `repeats` for DDPM-100, 3x for DDIM-10,
10x for the student and the policy step) of the same diffusion_policy-sized network
(ConditionalUnet1D down_dims [256, 512, 1024], GroupNorm ResNet-18 per camera, ~91 M parameters with
two cameras) sampled three ways, side by side in one run:
    ddpm100   100 ancestral DDPM steps (DDIM chain over all train timesteps, eta = 1)
    ddim10    10 deterministic DDIM steps (eta = 0)
    student   the one-step student (one denoiser forward), warm-started from the teacher
for state observations and for two 96x96 cameras + proprio. Random-init weights: latency does not
depend on training. `policy_step_hz_2_cameras` times the student's act() on raw numpy observations
(HWC uint8 frames -> tensors -> normalization -> encoder on the new frame -> one forward -> ActionChunk).
`..._compact_student` rows time a one-step student of configs/model/diffusion_unet_small.yaml (a
distillation target that is not warm-started), for the >= 100 Hz CPU goal.
model=<configs/model name or mapping> swaps the teacher's architecture (default diffusion_unet).
Runs on one CPU thread by default (threads=0 keeps torch's default); device=auto uses CUDA when present.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from robot_rl.core.config import config_dir, dataclass_from_dict, load_yaml, to_plain
from robot_rl.core.results import BenchRow, report_bench
from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.policies import DiffusionPolicy, OneStepPolicy, PolicyConfig, resolve_device
from robot_rl.policies.device import time_calls

NAME = "policy"
ACTION_DIM = 10  # position (3) + 6-D rotation (6) + gripper (1)


@dataclass
class PolicyBenchConfig:
    """`robot-rl bench policy`'s options (configs/bench.yaml's `policy:` section)."""

    model: Any = "diffusion_unet"     # the teacher's architecture: a configs/model name, or PolicyConfig fields
    threads: int = 1                  # torch threads of the measurements (0: torch's default)


def bench_specs() -> dict[str, PolicySpec]:
    """diffusion_policy defaults: n_obs 2, horizon 16, n_act 8 at 10 Hz."""
    action = FeatureSpec("action", (ACTION_DIM,))
    proprio = FeatureSpec("proprio", (10,))
    cams = tuple(FeatureSpec(f"cam{i}", (3, 96, 96), "rgb", normalize="image") for i in range(2))
    return {"state": PolicySpec(obs=(FeatureSpec("state", (20,)),), action=action),
            "images": PolicySpec(obs=(*cams, proprio), action=action)}


def raw_obs(spec: PolicySpec, steps: int | None, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Numpy observations as a runner would hold them: images HWC uint8. steps=None: one step."""
    lead = () if steps is None else (steps,)
    out = {}
    for f in spec.obs:
        if f.kind == "low_dim":
            out[f.key] = rng.normal(size=(*lead, *f.shape)).astype(np.float32)
        else:
            C, H, W = f.shape
            out[f.key] = rng.integers(0, 256, size=(*lead, H, W, C), dtype=np.uint8)
    return out


def _ms(times: np.ndarray, q: float) -> float:
    return float(np.percentile(times, q) * 1e3)


def policy_config(name_or_fields: Any) -> PolicyConfig:
    """A configs/model/<name>.yaml name, or the PolicyConfig fields themselves."""
    if hasattr(name_or_fields, "items"):
        return PolicyConfig.from_dict(dict(name_or_fields))
    return PolicyConfig.from_dict(load_yaml(config_dir() / "model" / f"{name_or_fields}.yaml"))


def measure(cfg: PolicyBenchConfig, device: str = "auto", repeats: int = 3, seed: int = 0) -> list[BenchRow]:
    model = policy_config(cfg.model)
    device = resolve_device(device or "auto")
    n = max(1, int(repeats))  # timed calls of the slowest method; faster ones get more
    repeats = {"ddpm100": n, "ddim10": 3 * n, "student": 10 * n, "step": 10 * n}
    rng = np.random.default_rng(int(seed))
    torch.manual_seed(int(seed))
    rows: list[BenchRow] = []
    for obs_name, spec in bench_specs().items():
        teacher = DiffusionPolicy(spec, model).to(device).eval()
        student = OneStepPolicy.from_teacher(teacher).eval()
        obs = {k: torch.as_tensor(v[None]) for k, v in raw_obs(spec, spec.n_obs_steps, rng).items()}
        methods = {
            "ddpm100": lambda: teacher.predict_action(obs, num_inference_steps=100, eta=1.0),
            "ddim10": lambda: teacher.predict_action(obs, num_inference_steps=10, eta=0.0),
            "student": lambda: student.predict_action(obs),
        }
        with torch.inference_mode():
            times = {m: time_calls(fn, repeats[m], device) for m, fn in methods.items()}
        for m, t in times.items():
            rows.append(BenchRow(f"latency_ms_p50_{m}_{obs_name}", _ms(t, 50), "ms"))
            rows.append(BenchRow(f"latency_ms_p99_{m}_{obs_name}", _ms(t, 99), "ms"))
        for base in ("ddim10", "ddpm100"):
            rows.append(BenchRow.compare(f"latency_ms_p50_student_vs_{base}_{obs_name}", _ms(times["student"], 50),
                                         "ms", f"latency_ms_p50_{base}_{obs_name}", _ms(times[base], 50),
                                         higher_is_better=False))
        if obs_name == "images":
            # End to end policy step on one new frame per camera (past frames' features are cached by act()).
            compact = OneStepPolicy(spec, policy_config("diffusion_unet_small")).to(device).eval()
            with torch.inference_mode():
                t = time_calls(lambda: compact.predict_action(obs), repeats["student"], device)
            rows.append(BenchRow.compare("latency_ms_p50_compact_student_vs_student_images", _ms(t, 50), "ms",
                                         "latency_ms_p50_student_images", _ms(times["student"], 50),
                                         higher_is_better=False))
            steps = {}
            for m, policy in (("student", student), ("ddim10", teacher), ("compact_student", compact)):
                policy.reset()
                frames = [raw_obs(spec, None, rng) for _ in range(4)]
                counter = iter(range(10**9))
                steps[m] = time_calls(lambda: policy.act(frames[next(counter) % 4]),
                                      repeats["ddim10"] if m == "ddim10" else repeats["step"], device)
            hz = {m: 1.0 / float(np.median(t)) for m, t in steps.items()}
            rows.append(BenchRow.compare("policy_step_hz_2_cameras", hz["student"], "Hz",
                                         "policy_step_hz_2_cameras_ddim10", hz["ddim10"], higher_is_better=True))
            rows.append(BenchRow("policy_step_ms_p99_2_cameras", _ms(steps["student"], 99), "ms"))
            rows.append(BenchRow.compare("policy_step_hz_2_cameras_compact_student", hz["compact_student"], "Hz",
                                         "policy_step_hz_2_cameras", hz["student"], higher_is_better=True))
        del teacher, student
    return rows


def main(cfg) -> int:
    """cfg: configs/bench.yaml's common keys (json, device, repeats, seed) and its policy: section, as
    robot_rl.bench.all.section_config gives them."""
    plain = to_plain(cfg)
    names = {f.name for f in fields(PolicyBenchConfig)}
    options = dataclass_from_dict(PolicyBenchConfig, {k: v for k, v in plain.items() if k in names}, "bench policy")
    previous = torch.get_num_threads()
    if options.threads > 0:
        torch.set_num_threads(options.threads)
    try:
        rows = measure(options, plain["device"], plain["repeats"], plain["seed"])
    finally:
        torch.set_num_threads(previous)
    report_bench(NAME, rows, plain["json"])
    return 0
