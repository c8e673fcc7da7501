"""The whole pipeline on the MuJoCo twin in one command, with a report:

    robot-rl pipeline                                  # lift, state observations, full profile (<= 30 min, 2 cores)
    robot-rl pipeline profile=quick out=runs/smoke     # a few minutes (the CI smoke test)
    robot-rl pipeline obs=image profile=quick          # cameras + proprio, no privileged state (a real rig's)
    robot-rl pipeline task=insert obs=image device=auto

collect (scripted teleop, mixed quality) -> bc -> offline (IQL + RL-100 rounds) -> online (residual by
default) -> distill (one-step student) -> deploy (policy runner -> timestamped targets -> the 1 kHz
impedance loop process). Every stage is an ordinary `robot-rl` command writing into <out>/<stage>/
(the exact command lines are in <out>/commands.txt); each policy is then evaluated on the same fixed
seeds. A stage that finished is not run again: re-running with the same out= resumes at the first
unfinished stage. Writes <out>/report.md (table + plots) and <out>/results.json (`stages` list).
obs=image|state reaches every stage as its own obs= (robot_rl.learning.spec_builder): image demos with
cameras, an image policy (no privileged task_state), and the later stages check it against their checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from robot_rl.core.config import to_plain
from robot_rl.core.errors import ConfigError, RobotRLError
from robot_rl.core.fields import Invalid, Rule, choice, integer, key_of, optional

STAGES = ("collect", "bc", "offline", "online", "distill", "deploy")
COMPOSITE_ALGOS = ("residual", "dsrl")   # online algorithms whose policy wraps the frozen diffusion base
RL_STAGES = ("offline", "online")
EVAL_SEED = 100_000


def _stage_names(v):
    if not isinstance(v, list) or not v or any(s not in STAGES for s in v):
        raise Invalid(f"a non-empty list of stages from {list(STAGES)}, e.g. [collect,bc]")
    return v


FIELDS = {
    "obs": choice("state", "image"),
    "profile": key_of("profiles"),
    "online_algo": choice("filtered_bc", "residual", "ppo", "dsrl"),
    "corrector": optional(choice("scripted")),
    "torch_threads": integer(1),
    "stages": Rule(_stage_names),
    "profiles.*.eval_episodes": integer(1),
}


@dataclass
class Stage:
    name: str
    argv: list[str]            # robot-rl command line of the stage
    policy: Path | None        # the checkpoint the stage produces (evaluated afterwards), if any
    out: Path


def plan(cfg, out: Path) -> tuple[list[Stage], list[str]]:
    """The stages to run (in order) and the ones skipped with their reason."""
    unknown = [s for s in cfg.stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"pipeline: unknown stage(s) {unknown}; stages are {list(STAGES)}")
    if cfg.obs not in ("state", "image"):
        raise ConfigError(f"pipeline: obs={cfg.obs!r}, expected state or image")
    profiles = to_plain(cfg.profiles)
    if cfg.profile not in profiles:
        raise ConfigError(f"pipeline: profile={cfg.profile!r}, expected one of {sorted(profiles)}")
    prof = profiles[cfg.profile]
    from robot_rl.sim.gym_tasks import gym_state_streams, is_gym_task, state_override

    task_cfg = to_plain(cfg.task)
    gym = is_gym_task(task_cfg)
    if gym and not cfg.expert:
        raise ConfigError("pipeline: task=gym collects its demos from a third-party expert: add "
                          "expert=<module>:<class, factory or function> (docs/environments.md)")
    store = out / "demos.zarr"
    common = [*task_args(task_cfg), f"seed={cfg.seed}"]
    stages, skipped, policy = [], [], None
    composite = False     # the policy so far wraps a frozen base (residual, DSRL): distillation runs DAgger
    for name in STAGES:
        if name not in cfg.stages:
            continue
        if name == "deploy" and gym:
            skipped.append("deploy: a Gymnasium task has no 1 kHz impedance loop (the eval rows run the policy at "
                           "the env's own rate)")
            continue
        if name != "collect" and name != "bc" and policy is None:
            raise ConfigError(f"pipeline: stage {name} needs a policy from an earlier stage (stages={list(cfg.stages)})")
        d = out / name
        extra = [str(a) for a in prof.get(name, []) + (prof.get("image", {}).get(name, []) if cfg.obs == "image" else [])]
        if name == "collect":
            argv = ["collect", *common, f"store={store}", "progress=false", f"obs={cfg.obs}"]
            argv += ["source=expert", f"expert={cfg.expert}"] if gym else []
            stages.append(Stage(name, argv + [f"out={d}", *extra], None, d))
            continue
        if name == "bc":
            argv = ["train", f"store={store}", *common, f"obs={cfg.obs}", "train.success_only=true",
                    f"train.device={cfg.device}"]
            if gym:   # the policy's state: every observation stream of the env
                argv += [state_override(gym_state_streams(task_cfg))]
            produced = d / "checkpoints" / "best"
        elif name == "offline":
            argv = ["finetune", "algo=offline", f"policy={policy}", f"store={store}", *common, f"obs={cfg.obs}",
                    f"device={cfg.device}"]
            produced = d / "policy"
        elif name == "online":
            argv = ["finetune", f"algo={cfg.online_algo}", f"policy={policy}", f"store={store}", *common,
                    f"obs={cfg.obs}", f"device={cfg.device}"]
            if gym and cfg.online_algo == "residual":   # the default bounds name the twin's 7-D action's dimensions
                argv += ["residual.dim_scales=null"]
            if cfg.corrector and not gym:   # the scripted corrector knows the twin's tasks only
                argv += [f"corrector={cfg.corrector}"]
            produced = d / "policy"
            composite = cfg.online_algo in COMPOSITE_ALGOS
        elif name == "distill":
            argv = ["distill", f"teacher={policy}", f"store={store}", *common, f"obs={cfg.obs}",
                    f"distill.device={cfg.device}"]
            if not composite:   # a diffusion teacher distils by same-noise regression: no DAgger rounds
                extra = [a for a in extra if not a.startswith("distill.dagger_")]
            produced = d / "checkpoints" / "student"
        else:
            argv = ["deploy", f"policy={policy}", "twin=true", *common, f"obs={cfg.obs}", f"device={cfg.device}",
                    "progress=false"]
            produced = None
        stages.append(Stage(name, argv + [f"out={d}", *extra], produced, d))
        policy = produced or policy
    return stages, skipped


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _run(argv: list[str]) -> None:
    from robot_rl.cli import main

    code = main(argv)
    if code != 0:
        raise RobotRLError(f"pipeline: `robot-rl {' '.join(argv)}` exited with {code}")


def task_args(task_cfg: dict) -> list[str]:
    """The overrides selecting the pipeline's task in each stage (a twin task by name, as its stages default)."""
    from robot_rl.sim.gym_tasks import is_gym_task, task_overrides

    return task_overrides(task_cfg) if is_gym_task(task_cfg) else [f"task={task_cfg['name']}"]


def stage_row(stage: Stage, eval_episodes: int, task: list[str], obs: str = "state") -> dict:
    """Run the stage's evaluation (policy stages) and assemble its row of results.json."""
    res = _read(stage.out / "results.json")
    row = {"name": stage.name, "command": "robot-rl " + " ".join(stage.argv)}
    if stage.name == "collect":
        return row | {"success_rate": res.get("success_rate"), "episodes": res.get("episodes"),
                      "env_steps": res.get("env_steps"), "latency_ms_p50": None, "latency_ms_p99": None,
                      "mean_time_to_success_s": None, "control_rate_hz": None, "note": "scripted teleop demos"}
    train_steps = int(res.get("env_steps") or 0) if stage.name in RL_STAGES else 0
    if stage.name == "deploy":
        runner = res.get("runner", {})
        return row | {"success_rate": res.get("success_rate"), "episodes": res.get("episodes"),
                      "env_steps": res.get("env_steps", 0), "latency_ms_p50": runner.get("inference_ms_p50"),
                      "latency_ms_p99": runner.get("inference_ms_p99"),
                      "mean_time_to_success_s": res.get("mean_time_to_success_s"),
                      "control_rate_hz": runner.get("achieved_hz"), "loop": res.get("loop")}
    ev_dir = stage.out / "eval"
    _run(["eval", f"policy={stage.policy}", *task, f"obs={obs}", f"episodes={eval_episodes}",
          f"seed_offset={EVAL_SEED}", f"out={ev_dir}"])
    ev = _read(ev_dir / "results.json")
    return row | {"success_rate": ev["success_rate"], "episodes": ev["episodes"], "env_steps": train_steps,
                  "eval_env_steps": ev["env_steps"], "latency_ms_p50": ev["latency_ms_p50"],
                  "latency_ms_p99": ev["latency_ms_p99"], "mean_time_to_success_s": ev["mean_time_to_success_s"],
                  "control_rate_hz": None, "policy": str(stage.policy), "latencies_ms": ev.get("latencies_ms")}


def run(cfg, args: list[str]) -> int:
    import torch

    from robot_rl.commands.pipeline_report import write_report
    from robot_rl.core.results import write_results
    from robot_rl.core.rundir import make_run_dir
    from robot_rl.sim.gym_tasks import task_label

    if args:
        raise ConfigError(f"pipeline takes no positional arguments, got {args}; see robot-rl pipeline --help")
    torch.set_num_threads(int(cfg.torch_threads))
    out = make_run_dir(cfg, "pipeline")
    stages, skipped = plan(cfg, out)
    (out / "commands.txt").write_text("".join(f"robot-rl {' '.join(s.argv)}\n" for s in stages))
    eval_episodes = int(to_plain(cfg.profiles)[cfg.profile]["eval_episodes"])
    rows, t0 = [], time.monotonic()
    for i, stage in enumerate(stages):
        marker = stage.out / "stage.json"
        if marker.exists():
            print(f"[{i + 1}/{len(stages)}] {stage.name}: done earlier ({marker}), skipping")
            rows.append(_read(marker))
            continue
        print(f"[{i + 1}/{len(stages)}] {stage.name}: robot-rl {' '.join(stage.argv)}", flush=True)
        t_stage = time.monotonic()
        _run(stage.argv)
        row = stage_row(stage, eval_episodes, task_args(to_plain(cfg.task)), str(cfg.obs)) | {
            "wall_s": time.monotonic() - t_stage}
        marker.write_text(json.dumps(row, indent=1, default=float))
        rows.append(row)
    summary = [{k: v for k, v in r.items() if k != "latencies_ms"} for r in rows]
    write_results(out / "results.json", stage="pipeline", task=task_label(to_plain(cfg.task)), obs=cfg.obs,
                  profile=cfg.profile, stages=summary, skipped=skipped, wall_s=time.monotonic() - t0)
    report = write_report(out, rows, skipped, cfg)
    print(f"pipeline: {len(rows)} stages -> {report} and {out / 'results.json'}")
    return 0
