"""Distill a policy checkpoint into a one-step student (robot_rl/learning/one_step_distill.py) and compare the
two in the twin on the same seeds: success rate, batch-1 latency p50/p99, speed-up -> results.json.

    robot-rl distill teacher=runs/train/<run>/checkpoints/best                 # store and task from the teacher's run
    robot-rl distill teacher=<ckpt> store=data/reach.zarr task=reach distill.steps=2000
    robot-rl distill teacher=<ckpt> task=reach distill.mode=dagger             # black-box teacher, DAgger rounds
The student lands in <out>/checkpoints/student: `robot-rl eval policy=<out>/checkpoints/student task=...`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robot_rl.core.config import register_schema, section_schema, to_plain
from robot_rl.core.errors import ConfigError
from robot_rl.core.fields import choice, existing_path, integer, number, optional
from robot_rl.core.rundir import make_run_dir
from robot_rl.learning.one_step_distill import DistillConfig
from robot_rl.learning.run_setup import default_store, run_task, twin_env_factory
from robot_rl.learning.spec_builder import OBS_KINDS, check_obs

DistillSection = section_schema(DistillConfig, without=("seed",), flatten="optim")   # distill.lr= etc. flat


@dataclass
class DistillRunConfig:
    """configs/distill.yaml's schema; its defaults are these fields'."""

    out: str | None = None            # output directory; default runs/distill/<UTC timestamp>
    seed: int = 0
    teacher: str | None = None        # teacher checkpoint directory (e.g. <train out>/checkpoints/best); required
    obs: str | None = None            # image | state: what the teacher reads, checked against it; null: the teacher's
                                      # (image: twin rollouts with cameras and no privileged task_state)
    store: str | None = None          # episode store of observations; default: the teacher's training store, if it exists
    task: Any = None                  # twin task for evaluation and rollouts (config group configs/task)
    distill: DistillSection = field(default_factory=DistillSection)   # robot_rl.learning.one_step_distill.DistillConfig


register_schema("distill", DistillRunConfig)

FIELDS = {
    "teacher": optional(existing_path),
    "obs": optional(choice(*OBS_KINDS)),
    "store": optional(existing_path),
    "distill.mode": choice("auto", "same_noise", "dagger"),
    "distill.obs_source": choice("auto", "store", "twin"),
    "distill.dagger_rounds": integer(0),
    "distill.dagger_beta_decay": number(0.0, 1.0),
    "distill.latency_repeats": integer(1),
    "distill.latency_threads": integer(1),
    "distill.probe_size": integer(1),
}


def run(cfg, args: list[str]) -> int:
    from robot_rl.core.checkpoint import load_checkpoint
    from robot_rl.learning.one_step_distill import distill
    from robot_rl.policies.io import load_policy
    from robot_rl.sim.gym_tasks import task_label

    if args or not cfg.teacher:
        raise ConfigError("usage: robot-rl distill teacher=<checkpoint dir> [store=<store>] [task=<twin task>] "
                          "[distill.<field>=<value> ...]")
    distill_cfg = DistillConfig.from_dict(to_plain(cfg.distill) | {"seed": cfg.seed})
    teacher = load_policy(cfg.teacher, device=distill_cfg.device)
    check_obs(cfg.obs, teacher.spec, cfg.teacher)
    teacher_run = load_checkpoint(cfg.teacher).config
    store = default_store(cfg, teacher_run)
    task = run_task(cfg, teacher_run, store)
    make_env = twin_env_factory(task, teacher.spec, cfg.seed) if task else None
    out = make_run_dir(cfg, "distill")
    print(f"distilling {cfg.teacher} ({teacher.kind}) -> {out}; observations from "
          f"{store or 'the task'}; " + (f"task {task_label(task)}" if task else "no task evaluation"))
    result = distill(teacher, distill_cfg, out, make_env, store, run_config=to_plain(cfg),
                     teacher_path=str(cfg.teacher))
    r = result.results

    def fmt(x, spec):
        return "n/a" if x is None else format(x, spec)

    for who in ("teacher", "student"):
        print(f"{who}: success {fmt(r[f'{who}_success_rate'], '.0%')}, batch-1 latency p50 "
              f"{fmt(r[f'{who}_latency_ms_p50'], '.2f')} ms p99 {fmt(r[f'{who}_latency_ms_p99'], '.2f')} ms")
    print(f"speed-up (p50): {fmt(r['speedup_p50'], '.1f')}x")
    print(f"student checkpoint: {result.student}; results: {out / 'results.json'}")
    return 0
