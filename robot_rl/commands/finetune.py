"""Improve a policy with RL in the twin (or from a store) and write the result as a checkpoint that
eval, distill and deploy read:

    robot-rl finetune algo=offline policy=<bc ckpt> store=data/lift.zarr          # IQL + RL-100 rounds
    robot-rl finetune policy=<ckpt> task=lift online.env_steps=20000              # residual (default)
    robot-rl finetune algo=ppo policy=<ckpt> task=lift                            # PPO over the denoising chain
    robot-rl finetune algo=dsrl policy=<ckpt> task=lift                           # latent-noise steering
    robot-rl finetune algo=rlpd store=data/lift.zarr task=lift                    # from scratch, demos in the batch
    robot-rl finetune policy=<ckpt> task=lift actors=4                            # 4 twin actor processes, 1 learner
The policy lands in <out>/policy; results.json holds the learning curve and the final success rate.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from robot_rl.core.config import to_plain
from robot_rl.core.errors import ConfigError
from robot_rl.core.fields import choice, existing_path, integer, integers, number, optional, text
from robot_rl.core.rundir import make_run_dir

ROLES = ("local", "learner", "actor")   # local: actor and learner interleaved in this process

FIELDS = {
    "algo": choice("offline", "residual", "ppo", "dsrl", "rlpd"),
    "policy": optional(existing_path),
    "store": optional(existing_path),
    "corrector": optional(choice("scripted")),
    "actors": integer(0),
    "role": choice(*ROLES),
    "actor_id": optional(text),
    "actor_episodes": integer(0),
    "learner.host": text,
    "learner.port": integer(0, 65535),
    "online.env_steps": integer(0),   # 0: algo=offline collects nothing online
    "online.eval_episodes": integer(1),   # a success rate over 0 episodes would read as 0 %
    "online.reward": choice("sparse", "dense"),
    "offline.rounds": integer(1),
    "offline.n_q": integer(1),
    "offline.export": choice("policy", "best_of_n"),
    "offline.best_of_n": integer(0),
    "offline.dynamics_models": integer(1),
    "offline.ope_horizon": integer(1),
    "offline.ope_starts": integer(1),
    "offline.gate_threshold": number(0.0),
    "*.log_every": integer(0),   # 0: no TensorBoard scalars
    "*.log_prob_reduce": choice("mean", "sum"),
    "*.chain_steps": integer(1),
    "*.num_inference_steps": integer(1),
    "*.clip": number(0.0, min_open=True),
    "*.eta": number(0.0),
    "*.min_std": number(0.0),
    "*.utd": number(0.0, min_open=True),
    "*.n_step": integer(1),
    "*.capacity": integer(1),
    "*.critic_heads": integer(1),
    "*.target_heads": integer(1),
    "*.n_critics": integer(1),
    "*.target_subset": integer(1),
    "*.scale": number(0.0, min_open=True),
    "*.dim_scales.*": number(0.0, min_open=True),
    "*.dims": optional(integers(0)),
    "*.penalty": number(0.0),
    "*.explore_std": number(0.0),
    "*.max_noise": number(0.0, min_open=True),
    "*.init_alpha": number(0.0, min_open=True),
    "*.init_temperature": number(0.0, min_open=True),
    "*.epochs": integer(1),
    "*.rollout_chunks": integer(1),
    "*.gae_lambda": number(0.0, 1.0),
    "dsrl.check_episodes": integer(-1),   # -1: online.eval_episodes, 0: skip
}


def build_context(cfg, out: Path):
    """FinetuneContext from a finetune config: base policy, prior store, twin task and evaluation."""
    from robot_rl.commands.distill import _default_store, _task
    from robot_rl.commands.train import twin_env_factory
    from robot_rl.core.checkpoint import load_checkpoint
    from robot_rl.data.store import EpisodeStore
    from robot_rl.learning.evaluate import evaluate
    from robot_rl.learning.rl.context import ALGORITHMS, FinetuneContext
    from robot_rl.learning.rl.online import OnlineConfig
    from robot_rl.policies.io import load_policy
    from robot_rl.sim.gym_tasks import is_gym_task, task_label

    if cfg.algo not in ALGORITHMS:
        raise ConfigError(f"finetune: algo={cfg.algo!r}, expected one of {list(ALGORITHMS)}")
    if not cfg.policy and cfg.algo != "rlpd":
        raise ConfigError(f"finetune algo={cfg.algo} needs policy=<base checkpoint dir>")
    base = load_policy(cfg.policy, device=cfg.device) if cfg.policy else None
    base_run = load_checkpoint(cfg.policy).config if cfg.policy else {}
    store_path = _default_store(cfg, base_run)
    task = _task(cfg, base_run, store_path)
    store = EpisodeStore.open(store_path) if store_path else None
    online = OnlineConfig(**to_plain(cfg.online), seed=int(cfg.seed))
    spec = base.spec if base is not None else None
    make_env = None
    if task:
        if spec is None:
            raise ConfigError("finetune algo=rlpd needs policy=<ckpt> for its observation/action spec")
        make_env = twin_env_factory(task, spec, cfg.seed)
        if is_gym_task(task):
            make_env().close()   # a wrong task.id, module or env fails now
            scales = (cfg.get("residual") or {}).get("dim_scales") or {}
            if cfg.algo == "residual" and any(int(d) >= spec.action_dim for d in scales):
                raise ConfigError(f"finetune: residual.dim_scales={to_plain(scales)} are the twin's 7-D EE action's; "
                                  f"{task_label(task)} has {spec.action_dim} action dimensions: add "
                                  "residual.dim_scales=null (or name its own)")

    def success_rate(policy) -> float:
        return evaluate(policy, make_env, policy.spec, online.eval_episodes, seed=online.eval_seed,
                        progress=False).success_rate

    make_corrector = None
    if cfg.corrector == "scripted" and is_gym_task(task):
        raise ConfigError(f"finetune: corrector=scripted takes over the twin's tasks; task={task_label(task)} is a "
                          "Gymnasium task: use corrector=null")
    if cfg.corrector == "scripted":
        from robot_rl.sim.corrector import scripted_corrector

        make_corrector = scripted_corrector
    elif cfg.corrector:
        raise ConfigError(f"finetune: corrector={cfg.corrector!r}, expected null or 'scripted'")
    return FinetuneContext(base=base, store=store, make_env=make_env, evaluate=success_rate if make_env else None,
                           config=to_plain(cfg.get(cfg.algo) or {}), online=online, out=out, seed=int(cfg.seed),
                           device=str(cfg.device), make_corrector=make_corrector, task=task), task


def run(cfg, args: list[str]) -> int:
    from dataclasses import asdict

    from robot_rl.core.results import write_results
    from robot_rl.sim.gym_tasks import task_label

    if args:
        raise ConfigError(f"finetune takes no positional arguments, got {args}; see robot-rl finetune --help")
    out = make_run_dir(cfg, "finetune")
    ctx, task = build_context(cfg, out)
    role = str(cfg.role)
    if role not in ROLES:
        raise ConfigError(f"finetune: role={role!r}, expected one of {list(ROLES)}")
    if role == "actor":
        from robot_rl.commands.finetune_split import run_actor

        return run_actor(cfg, ctx)
    print(f"finetune algo={cfg.algo} base={cfg.policy} store={ctx.store.path if ctx.store else None} "
          f"task={task_label(task) if task else None} -> {out}")
    if role == "learner" or int(cfg.actors) > 0:
        from robot_rl.commands.finetune_split import run_learner

        result = run_learner(cfg, ctx)
    else:
        result = importlib.import_module(f"robot_rl.learning.rl.{cfg.algo}").run(ctx)
    final = result.curve[-1].success_rate if result.curve else result.metrics.get("success_rate")
    write_results(out / "results.json", stage="finetune", algo=cfg.algo, policy=str(result.policy_path),
                  base=str(cfg.policy), task=task, success_rate=final,
                  env_steps=result.curve[-1].env_steps if result.curve else 0,
                  curve=[asdict(p) for p in result.curve], **result.metrics)
    print(f"{cfg.algo}: final success {final} -> {result.policy_path}")
    return 0
