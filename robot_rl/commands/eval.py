"""Evaluate a policy checkpoint in the twin on fixed seeds: success rate, time to success and
per-step latency, written to results.json; optionally records the episodes into a store.
The env gives what the checkpoint's spec reads: cameras for an image policy (and then no privileged
task_state), task_state for a state policy; obs=image|state, when given, must agree with the checkpoint."""

from __future__ import annotations

from robot_rl.core.config import to_plain
from robot_rl.core.errors import ConfigError
from robot_rl.core.fields import choice, directory_target, existing_path, integer, optional
from robot_rl.core.results import write_results
from robot_rl.core.rundir import make_run_dir
from robot_rl.data.writer import EpisodeWriter
from robot_rl.learning.spec_builder import OBS_KINDS, check_obs

FIELDS = {
    "policy": optional(existing_path),
    "obs": optional(choice(*OBS_KINDS)),
    "episodes": integer(1),
    "record": optional(directory_target),
}


def run(cfg, args: list[str]) -> int:
    from robot_rl.learning.run_setup import twin_env_factory
    from robot_rl.learning.evaluate import evaluate
    from robot_rl.policies.io import load_policy
    from robot_rl.sim.gym_tasks import is_gym_task, stream_specs, task_label

    if args or not cfg.policy:
        raise ConfigError("usage: robot-rl eval policy=<checkpoint dir> task=<twin task> episodes=<n>")
    policy = load_policy(cfg.policy, device=cfg.device)
    check_obs(cfg.obs, policy.spec, cfg.policy)
    task_cfg = to_plain(cfg.task)
    task = task_label(task_cfg)
    make_env = twin_env_factory(task_cfg, policy.spec, cfg.seed)
    out = make_run_dir(cfg, "eval")
    writer = None
    if cfg.record:
        from robot_rl.data.episode_store import EpisodeStore

        probe = make_env()
        store = EpisodeStore.create(cfg.record, stream_specs(probe), exist_ok=True)
        probe.close()
        writer = EpisodeWriter(store)
    try:
        result = evaluate(policy, make_env, policy.spec, cfg.episodes, seed=cfg.seed_offset, writer=writer,
                          meta={"task": task, "rig": "gym" if is_gym_task(task_cfg) else "twin",
                                "notes": f"eval of {cfg.policy}"})
    finally:
        if writer is not None:
            writer.close()
    write_results(out / "results.json", stage="eval", policy=str(cfg.policy), task=task,
                  **result.to_dict())
    low, high = result.success_ci95 or (0.0, 0.0)
    print(f"{task}: success {result.success_rate:.0%} over {result.episodes} episodes "
          f"(95 % interval {low:.0%}-{high:.0%}); "
          f"latency p50 {result.latency_ms_p50:.2f} ms p99 {result.latency_ms_p99:.2f} ms -> {out / 'results.json'}")
    return 0
