"""Evaluate a policy checkpoint in the twin on fixed seeds: success rate, time to success and
per-step latency, written to results.json; optionally records the episodes into a store.

The env gives what the checkpoint's spec reads: cameras for an image policy (and then no privileged
task_state), task_state for a state policy; obs=image|state, when given, must agree with the checkpoint.

randomize=true evaluates under held-out appearance randomization (lighting, object and material colours,
texture scale, camera pose jitter; RandomizationParams.visual(), ranges overridable with
randomization.<field>=...). The appearance draws leave every other draw of a seed alone, so the same
seeds with and without it place the same objects, and the two results.json (both record `randomize` and
the ranges) give the drop the rendering alone causes.

action_steps=<n> executes n actions of each predicted chunk before predicting the next (a diffusion or
one-step policy; the checkpoint's n_action_steps by default, which the deploy runner also executes; deploy
`runtime.replan_steps=<n>` executes the same n)."""

from __future__ import annotations

from robot_rl.core.config import to_plain
from robot_rl.core.errors import ConfigError
from robot_rl.core.fields import choice, directory_target, existing_path, integer, optional
from robot_rl.core.results import write_results
from robot_rl.core.rundir import make_run_dir
from robot_rl.core.spec import RECEDING_KINDS
from robot_rl.data.writer import EpisodeWriter
from robot_rl.learning.spec_builder import OBS_KINDS, check_obs

FIELDS = {
    "policy": optional(existing_path),
    "obs": optional(choice(*OBS_KINDS)),
    "episodes": integer(1),
    "record": optional(directory_target),
    "action_steps": optional(integer(1)),
}


def with_action_steps(policy, n: int, where):
    """`policy` executing `n` actions of each predicted chunk (at most the chunk's steps after the last
    observation); policies built on a fixed chunk length (residual, steered noise, ...) are refused."""
    from dataclasses import replace

    spec = policy.spec
    most = spec.max_action_steps
    if policy.kind not in RECEDING_KINDS:
        raise ConfigError(f"eval action_steps={n}: {where} is a {policy.kind} policy, whose chunks have a fixed "
                          f"length; action_steps applies to {' and '.join(RECEDING_KINDS)} policies")
    if n > most:
        raise ConfigError(f"eval action_steps={n}: {where} predicts {spec.horizon} actions from {spec.n_obs_steps} "
                          f"observation steps, so at most {most} can run; use action_steps={most} or less")
    policy.spec = replace(spec, n_action_steps=n)
    return policy


def _randomization(cfg) -> dict | None:
    """The randomization ranges of randomize=true (the visual preset, then randomization.<field> overrides),
    checked; None when off."""
    from robot_rl.sim.randomization import RandomizationParams

    overrides = {k: v for k, v in dict(to_plain(cfg.get("randomization")) or {}).items() if v is not None}
    if not cfg.get("randomize"):
        if overrides:
            raise ConfigError(f"eval: randomization.{sorted(overrides)[0]}=... is set but randomize=false; add "
                              "randomize=true to evaluate under randomization")
        return None
    return RandomizationParams.from_dict(RandomizationParams.visual().to_dict() | overrides).to_dict()


def run(cfg, args: list[str]) -> int:
    from robot_rl.learning.run_setup import twin_env_factory
    from robot_rl.learning.evaluate import evaluate
    from robot_rl.policies.io import load_policy
    from robot_rl.sim.gym_tasks import is_gym_task, stream_specs, task_label

    if args or not cfg.policy:
        raise ConfigError("usage: robot-rl eval policy=<checkpoint dir> task=<twin task> episodes=<n>")
    policy = load_policy(cfg.policy, device=cfg.device)
    check_obs(cfg.obs, policy.spec, cfg.policy)
    if cfg.get("action_steps") is not None:
        policy = with_action_steps(policy, int(cfg.action_steps), cfg.policy)
    task_cfg = to_plain(cfg.task)
    task = task_label(task_cfg)
    randomization = _randomization(cfg)
    make_env = twin_env_factory(task_cfg, policy.spec, cfg.seed, randomization)
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
                  randomize=randomization is not None, randomization=randomization,
                  action_steps=policy.spec.n_action_steps, **result.to_dict())
    low, high = result.success_ci95 or (0.0, 0.0)
    label = f"{task} (randomized rendering)" if randomization else task
    print(f"{label}: success {result.success_rate:.0%} over {result.episodes} episodes "
          f"(95 % interval {low:.0%}-{high:.0%}); "
          f"latency p50 {result.latency_ms_p50:.2f} ms p99 {result.latency_ms_p99:.2f} ms -> {out / 'results.json'}")
    return 0
