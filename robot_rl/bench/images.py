"""`robot-rl bench images [json=<file>] [quick=true] [images.model=...] [images.baseline=...]`

What pixels cost on a CPU, for the image encoder of `images.model` (default configs/model/
diffusion_cpu_image.yaml: the strided conv stack) and of `images.baseline` (default diffusion_unet: the
full-size GroupNorm ResNet-18 of diffusion_policy), side by side in one run, on the twin's observation
shapes (2 cameras 128x128 RGB + 8 proprio values, 2 observation steps, horizon 16, 7-D actions):

  bc_train_samples_per_s_<name>    BC training (loss, backward, AdamW + EMA step) on batches from a real
                                   episode store (JPEG frames through WindowDataset, in-process): median
                                   over `windows` timed windows of `window_steps` steps (the configurations'
                                   windows take turns), `train_threads` torch threads.
  student_step_hz_<name>           the one-step student's act() on one thread: one new 128x128 frame per
                                   camera + proprio (HWC uint8 -> tensors -> encoder -> one denoiser
                                   forward); median over `step_calls` calls.
  rollout_steps_per_s_<name>       TwinEnv(task, 2 cameras, no privileged state) closed loop with that
                                   student acting every step.
  env_steps_per_s_2_cameras        TwinEnv alone with 2 cameras (random actions), vs without cameras.
  loader_samples_per_s             the window loader alone (whole batches, in-process) with decoded frames
                                   cached (the default) vs decoding every frame (frame_cache_mb=0).
  critic_update_ms_frozen_features one critic update (QEnsemble of `critic_heads` heads of 256 x 256:
                                   regression loss, backward, Adam step) at `critic_batch_size` on the
                                   camera features `model`'s frozen encoders computed once (what the RL
                                   stages' replay holds), vs critic_update_ms_trainable_encoder: the same
                                   critic with `model`'s camera encoders (a fresh copy, training mode: a random
                                   crop per frame, DrQ-v2's random shift) learning from its loss, so every
                                   update encodes the batch's frames (cameras x n_obs_steps, obs only) forward
                                   and backward. Median over `critic_updates` updates of each, taking turns,
                                   `train_threads` torch threads.
`variants` adds candidate configurations (PolicyConfig fields over `model`'s) to the training and
student rows, e.g. images.variants.size128.image_size=0 images.variants.no_crop.crop_ratio=1.0: the
trade-offs of image size and crop in docs/benchmarks.md. Random-init weights: speed does not depend on
training. quick=true: tiny sizes, a smoke test (not numbers to quote).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robot_rl.bench.policy import policy_config
from robot_rl.bench.store import scene_frames
from robot_rl.core.config import dataclass_from_dict, to_plain
from robot_rl.core.errors import ConfigError
from robot_rl.core.results import BenchRow, report_bench
from robot_rl.core.spec import FeatureSpec, PolicySpec
from robot_rl.data.dataset import EpochBatches, WindowDataset
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.sampler import WindowSampler
from robot_rl.data.schema import StreamSpec
from robot_rl.data.writer import EpisodeWriter
from robot_rl.learning.train_state import OptimConfig, Optimization
from robot_rl.policies import DiffusionPolicy, OneStepPolicy, PolicyConfig
from robot_rl.policies.critics import ChunkFeatures, QEnsemble
from robot_rl.policies.encoders.obs import ObsEncoder
from robot_rl.policies.frozen_features import FrozenFeatures
from robot_rl.policies.normalizer import Normalizer

NAME = "images"
CAMERAS = ("front", "wrist")      # the twin's cameras (streams cam_<name>_rgb)
HW = (128, 128)
PROPRIO = 8                       # ee_pos + ee_quat + gripper_pos
ACTION_DIM = 7
RATE_HZ = 20.0


@dataclass
class ImagesBenchConfig:
    """`robot-rl bench images`'s options (configs/bench.yaml's `images:` section)."""

    model: Any = "diffusion_cpu_image"   # candidate: a configs/model name, or PolicyConfig fields
    baseline: Any = "diffusion_unet"     # the ResNet-18 baseline, measured in the same run
    variants: dict = field(default_factory=dict)   # name -> PolicyConfig fields over `model`'s (trade-off rows)
    batch_size: int = 64
    train_threads: int = 1            # torch threads of the training rows: on a shared 2-core machine 2 threads
                                      # ran slower than 1 (docs/benchmarks.md); the loader has the other core
    windows: int = 5                  # timed training windows (the median is reported)
    window_steps: int = 4             # training steps per window
    step_calls: int = 50              # timed student act() calls
    env_steps: int = 200              # timed env steps per env row
    task: str = "lift"
    episodes: int = 4                 # episodes of the bench's episode store
    episode_steps: int = 100          # policy steps per episode (frames at the policy rate)
    critic_batch_size: int = 256      # the critic rows' batch (the off-policy stages' default)
    critic_heads: int = 2             # Q heads of the critic rows
    critic_updates: int = 3           # timed critic updates of each kind (the median is reported)
    quick_sizes: dict = field(default_factory=lambda: {   # quick=true: a smoke test (tiny sizes and baseline)
        "batch_size": 4, "windows": 2, "window_steps": 1, "step_calls": 3, "env_steps": 5, "episodes": 1,
        "episode_steps": 24, "critic_batch_size": 4, "critic_updates": 2,
        "baseline": {"image_width": 8, "down_dims": [32, 64, 128], "step_embed_dim": 16}})

    def quick(self) -> "ImagesBenchConfig":
        """These options with quick_sizes applied."""
        return dataclass_from_dict(ImagesBenchConfig, asdict(self) | to_plain(self.quick_sizes),
                                   "bench images.quick_sizes")

    def __post_init__(self) -> None:
        for name in ("batch_size", "windows", "window_steps", "step_calls", "env_steps", "episodes",
                     "episode_steps", "train_threads", "critic_batch_size", "critic_heads", "critic_updates"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"bench images.{name}={getattr(self, name)}: must be >= 1")


def bench_spec() -> PolicySpec:
    cams = tuple(FeatureSpec(n, (3, *HW), "rgb", stream=f"cam_{n}_rgb", normalize="image") for n in CAMERAS)
    return PolicySpec(obs=(*cams, FeatureSpec("state", (PROPRIO,), stream="state")),
                      action=FeatureSpec("action", (ACTION_DIM,)), n_obs_steps=2, horizon=16, n_action_steps=8,
                      rate_hz=RATE_HZ)


def write_store(path: Path, episodes: int, steps: int, seed: int = 0) -> EpisodeStore:
    """A real episode store of the twin's shapes: camera-like JPEG frames, proprio and actions at 20 Hz."""
    rng = np.random.default_rng(seed)
    streams = [StreamSpec("action", "float32", (ACTION_DIM,), RATE_HZ),
               StreamSpec("state", "float32", (PROPRIO,), RATE_HZ)]
    streams += [StreamSpec(f"cam_{n}_rgb", "uint8", (*HW, 3), RATE_HZ, codec="jpeg", interp="hold") for n in CAMERAS]
    store = EpisodeStore.create(path, streams)
    frames = {n: scene_frames(steps, *HW, seed=seed + i) for i, n in enumerate(CAMERAS)}
    with EpisodeWriter(store, block_on_full=True) as writer:
        for _ in range(episodes):
            ep = {"state": rng.normal(size=(steps, PROPRIO)).cumsum(0).astype(np.float32) * 0.01,
                  "action": rng.uniform(-1, 1, size=(steps, ACTION_DIM)).astype(np.float32)}
            ep |= {f"cam_{n}_rgb": frames[n] for n in CAMERAS}
            writer.begin_episode({"source": "scripted", "success": True})
            for k in range(steps):
                for key, values in ep.items():
                    writer.append(key, values[k], k / RATE_HZ)
            writer.commit()
    return EpisodeStore.open(path)


def _normalizer(spec: PolicySpec, sampler: WindowSampler) -> Normalizer:
    stats = {}
    for f in (*spec.low_dim, spec.action):
        x = sampler.features[f.key]
        stats[f.key] = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}
    return Normalizer.from_stats(spec, stats)


def train_samples_per_s(configs: dict[str, PolicyConfig], sampler: WindowSampler, opts: ImagesBenchConfig,
                        seed: int) -> dict[str, float]:
    """Median samples/s of BC training steps (data loading included) per configuration. The configurations'
    timed windows take turns, so a change in the machine's load falls on all of them alike."""
    steps = {}
    for name, cfg in configs.items():
        torch.manual_seed(seed)
        dataset = WindowDataset(sampler)
        policy = DiffusionPolicy(dataset.spec, cfg, _normalizer(dataset.spec, sampler)).train()
        opt = Optimization(policy, OptimConfig(warmup_steps=1), opts.windows * opts.window_steps + 1)
        batches = iter(EpochBatches(dataset, min(opts.batch_size, len(dataset)), seed))

        def train_step(dataset=dataset, policy=policy, opt=opt, batches=batches) -> int:
            batch = dataset[next(batches)]
            opt.step(policy.compute_loss(batch))
            return len(batch["action"])

        train_step()  # warm-up: allocations, first frame decodes
        steps[name] = train_step
    rates: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(opts.windows):
        for name, train_step in steps.items():
            t = time.perf_counter()
            n = sum(train_step() for _ in range(opts.window_steps))
            rates[name].append(n / (time.perf_counter() - t))
    return {name: statistics.median(r) for name, r in rates.items()}


def critic_update_ms(spec: PolicySpec, cfg: PolicyConfig, normalizer: Normalizer, opts: ImagesBenchConfig,
                     seed: int) -> tuple[float, float]:
    """Median ms of one critic update on cached frozen camera features and with trainable camera encoders.
    Both critics read the same ChunkFeatures input (camera features + normalized proprio over n_obs_steps, the
    action chunk), so the difference is the encoders' forward and backward pass over the batch's frames."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    B, S = opts.critic_batch_size, spec.n_obs_steps
    raw = {n: rng.integers(0, 256, size=(B, S, *HW, 3), dtype=np.uint8) for n in CAMERAS}
    raw["state"] = rng.normal(size=(B, S, PROPRIO)).astype(np.float32)
    actions = torch.as_tensor(rng.uniform(-1, 1, (B, spec.n_action_steps, ACTION_DIM)), dtype=torch.float32)
    target = torch.as_tensor(rng.normal(size=B), dtype=torch.float32)

    frozen = FrozenFeatures(OneStepPolicy(spec, cfg, normalizer))
    features = ChunkFeatures(frozen.view, normalizer)
    cached = frozen.obs(raw)                       # encoded once, as the replay holds them

    cameras = ObsEncoder(spec, cfg).cameras.train()
    frames = {n: normalizer.normalize(n, torch.as_tensor(raw[n]).movedim(-1, -3)) for n in CAMERAS}
    state = torch.as_tensor(raw["state"])

    def pixel_obs() -> dict[str, torch.Tensor]:
        out = {n: cameras[n](x.flatten(0, 1)).reshape(B, S, -1) for n, x in frames.items()}
        return out | {"state": state}

    def update_step(q: QEnsemble, opt: torch.optim.Optimizer, obs) -> None:
        loss = (q(features.obs(obs()), features.action(actions)) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    steps = {}
    for name, params, obs in (("frozen", [], lambda: cached), ("trainable", list(cameras.parameters()), pixel_obs)):
        q = QEnsemble(features.obs_dim, features.action_dim, opts.critic_heads, (256, 256))
        opt = torch.optim.Adam([*params, *q.parameters()], lr=3e-4)
        steps[name] = lambda q=q, opt=opt, obs=obs: update_step(q, opt, obs)
        steps[name]()                              # warm-up: allocations
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(opts.critic_updates):
        for name, step in steps.items():
            t = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t)
    return statistics.median(times["frozen"]) * 1e3, statistics.median(times["trainable"]) * 1e3


def camera_obs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One step of raw observations as the runner holds them (frames HWC uint8)."""
    out = {n: rng.integers(0, 256, size=(*HW, 3), dtype=np.uint8) for n in CAMERAS}
    out["state"] = rng.normal(size=PROPRIO).astype(np.float32)
    return out


def student_step_hz(student: OneStepPolicy, calls: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    frames = [camera_obs(rng) for _ in range(4)]
    student.reset()
    student.act(frames[0])
    times = []
    for i in range(calls):
        t = time.perf_counter()
        student.act(frames[i % 4])
        times.append(time.perf_counter() - t)
    return 1.0 / statistics.median(times)


def _env(task: str, cameras: bool, seed: int):
    from robot_rl.sim.env import TwinEnv

    return TwinEnv(task=task, cameras=cameras, privileged=False, seed=seed)


def env_steps_per_s(task: str, cameras: bool, steps: int, seed: int, student: OneStepPolicy | None = None) -> float:
    """TwinEnv steps/s (random actions, or `student` acting on every step's observation)."""
    env = _env(task, cameras, seed)
    rng = np.random.default_rng(seed)
    try:
        obs, _ = env.reset(seed=seed)
        if student is not None:
            student.reset()
        t = time.perf_counter()
        for _ in range(steps):
            if student is None:
                action = rng.uniform(-1, 1, ACTION_DIM).astype(np.float32)
            else:
                step = {n: obs[f"cam_{n}_rgb"] for n in CAMERAS}
                step["state"] = np.concatenate([obs["ee_pos"], obs["ee_quat"], obs["gripper_pos"]])
                action = np.clip(student.act(step).actions[0], -1, 1)
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                obs, _ = env.reset()
                if student is not None:
                    student.reset()
        return steps / (time.perf_counter() - t)
    finally:
        env.close()


def loader_samples_per_s(dataset: WindowDataset, batch_size: int, batches: int, seed: int) -> float:
    """Whole batches/s from the dataset in-process, after one pass that fills the frame cache."""
    order = EpochBatches(dataset, min(batch_size, len(dataset)), seed)
    per_epoch = max(1, order.per_epoch())
    it = iter(order)
    for _ in range(per_epoch):
        dataset[next(it)]
    t, n = time.perf_counter(), 0
    for _ in range(batches):
        n += len(dataset[next(it)]["action"])
    return n / (time.perf_counter() - t)


def measure(opts: ImagesBenchConfig, repeats: int = 3, seed: int = 0) -> list[BenchRow]:
    spec = bench_spec()
    configs = {"candidate": policy_config(opts.model), "resnet18": policy_config(opts.baseline)}
    base_fields = configs["candidate"].to_dict()
    for name, extra in opts.variants.items():
        configs[str(name)] = PolicyConfig.from_dict(base_fields | dict(extra or {}))
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="bench_images_") as tmp:
        store = write_store(Path(tmp) / "images.zarr", opts.episodes, opts.episode_steps, seed)
        sampler = WindowSampler(store, spec)

        previous = torch.get_num_threads()
        try:
            torch.set_num_threads(opts.train_threads)
            train = train_samples_per_s(configs, sampler, opts, seed)
            critic_frozen, critic_trainable = critic_update_ms(spec, configs["candidate"],
                                                               _normalizer(spec, sampler), opts, seed)
            torch.set_num_threads(1)
            students = {name: OneStepPolicy(spec, cfg, _normalizer(spec, sampler)).eval()
                        for name, cfg in configs.items()}
            hz = {name: student_step_hz(s, opts.step_calls, seed) for name, s in students.items()}
            rollout = {name: env_steps_per_s(opts.task, True, opts.env_steps, seed, students[name])
                       for name in ("candidate", "resnet18")}
            cached = loader_samples_per_s(WindowDataset(sampler), opts.batch_size, max(2, opts.windows), seed)
            decoded = loader_samples_per_s(WindowDataset(sampler, frame_cache_mb=0), opts.batch_size,
                                           max(2, opts.windows), seed)
        finally:
            torch.set_num_threads(previous)
    env_cams = statistics.median(env_steps_per_s(opts.task, True, opts.env_steps, seed) for _ in range(repeats))
    env_bare = statistics.median(env_steps_per_s(opts.task, False, opts.env_steps, seed) for _ in range(repeats))

    for name in configs:
        if name == "resnet18":
            continue
        rows.append(BenchRow.compare(f"bc_train_samples_per_s_{name}", train[name], "samples/s",
                                     "bc_train_samples_per_s_resnet18", train["resnet18"], higher_is_better=True))
        rows.append(BenchRow.compare(f"student_step_hz_{name}", hz[name], "Hz", "student_step_hz_resnet18",
                                     hz["resnet18"], higher_is_better=True))
    rows.append(BenchRow("bc_train_samples_per_s_resnet18", train["resnet18"], "samples/s"))
    rows.append(BenchRow("student_step_hz_resnet18", hz["resnet18"], "Hz"))
    rows.append(BenchRow.compare("rollout_steps_per_s_candidate", rollout["candidate"], "steps/s",
                                 "rollout_steps_per_s_resnet18", rollout["resnet18"], higher_is_better=True))
    rows.append(BenchRow("rollout_steps_per_s_resnet18", rollout["resnet18"], "steps/s"))
    rows.append(BenchRow.compare("env_steps_per_s_2_cameras", env_cams, "steps/s", "env_steps_per_s_no_cameras",
                                 env_bare, higher_is_better=True))
    rows.append(BenchRow.compare("loader_samples_per_s", cached, "samples/s", "loader_samples_per_s_uncached",
                                 decoded, higher_is_better=True))
    rows.append(BenchRow.compare("critic_update_ms_frozen_features", critic_frozen, "ms",
                                 "critic_update_ms_trainable_encoder", critic_trainable, higher_is_better=False))
    rows.append(BenchRow("critic_update_ms_trainable_encoder", critic_trainable, "ms"))
    return rows


def main(cfg) -> int:
    """cfg: configs/bench.yaml's common keys (json, repeats, seed, quick) and its images: section, as
    robot_rl.bench.all.section_config gives them."""
    plain = to_plain(cfg)
    names = {f.name for f in fields(ImagesBenchConfig)}
    opts = dataclass_from_dict(ImagesBenchConfig, {k: v for k, v in plain.items() if k in names}, "bench images")
    if plain.get("quick"):
        opts = opts.quick()
    rows = measure(opts, 1 if plain.get("quick") else int(plain.get("repeats", 3)), int(plain.get("seed", 0)))
    report_bench(NAME, rows, plain.get("json"))
    return 0
