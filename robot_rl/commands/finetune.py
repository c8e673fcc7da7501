"""Improve a policy with RL in the twin (or from a store) and write the result as a checkpoint that
eval, distill and deploy read:

    robot-rl finetune algo=offline policy=<bc ckpt> store=data/lift.zarr          # IQL + RL-100 rounds
    robot-rl finetune policy=<ckpt> task=lift corrector=scripted                  # filtered BC (default), interventions
    robot-rl finetune algo=residual policy=<ckpt> task=lift                       # residual RL on the frozen base
    robot-rl finetune algo=ppo policy=<ckpt> task=lift                            # PPO over the denoising chain
    robot-rl finetune algo=dsrl policy=<ckpt> task=lift                           # latent-noise steering
    robot-rl finetune algo=rlpd store=data/lift.zarr task=lift                    # from scratch, demos in the batch
    robot-rl finetune algo=residual policy=<ckpt> task=lift actors=4              # 4 twin actor processes, 1 learner
    robot-rl finetune policy=<ckpt> task=lift reward=classifier reward_model=<train algo=reward out>/reward
                                                                                  # success from the learned detector
The policy lands in <out>/policy; results.json holds the learning curve and the final success rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any

from robot_rl.core.config import register_schema
from robot_rl.core.errors import ConfigError
from robot_rl.core.fields import Invalid, Rule, choice, existing_path, integer, integers, number, optional, text
from robot_rl.core.progress import progress_enabled
from robot_rl.core.rundir import make_run_dir
from robot_rl.learning.rl.algorithms import ALGORITHMS
from robot_rl.learning.rl.context import build_context
from robot_rl.learning.rl.online import OnlineConfig
from robot_rl.learning.spec_builder import OBS_KINDS, check_obs, checkpoint_spec
from robot_rl.runtime.finetune_roles import run_actor, run_learner
from robot_rl.runtime.learner import LearnerConfig

ROLES = ("local", "learner", "actor")   # local: actor and learner interleaved in this process


@dataclass
class FinetuneRunConfig:
    """What one `robot-rl finetune` run does; FinetuneConfig adds a section per algorithm."""

    out: str | None = None            # output directory; default runs/finetune/<UTC timestamp>
    seed: int = 0
    algo: str = "filtered_bc"         # a name of robot_rl.learning.rl.algorithms.ALGORITHMS (docs/rl.md: why this one)
    policy: str | None = None         # base checkpoint (a diffusion policy from `robot-rl train`); required except for rlpd
    obs: str | None = None            # image | state: what the base reads, checked against it; null: the base's
                                      # (image: twin with cameras and no privileged task_state; state: twin only)
    store: str | None = None          # prior data: demos (mixed quality), interventions, earlier rollouts;
                                      # default: the base's training store
    device: str = "auto"
    corrector: str | None = None      # null | scripted: a scripted expert takes over when a twin episode goes wrong
    reward: str = "twin"              # twin: the twin's success check | classifier: the learned detector reward_model
                                      # (the real-robot path; the twin's check is still logged as ground truth)
    reward_model: str | None = None   # reward=classifier: its checkpoint (`robot-rl train algo=reward` writes <out>/reward)
    reward_consecutive: int = 2       # reward=classifier: positive frames in a row that declare success
    actors: int = 0                   # N > 0: N twin actor processes feed a learner in this process (residual, rlpd)
    role: str = "local"               # local | learner (serve actors started elsewhere) | actor (one twin actor)
    actor_id: str | None = None       # role=actor: its name (its spool: <out>/spool/<actor_id>); default actor<seed>
    actor_episodes: int = 0           # role=actor: stop after this many episodes (0: run until stopped)
    task: Any = None                  # the twin task (config group configs/task); default: the base's training task
    learner: LearnerConfig = field(default_factory=LearnerConfig)   # the actor/learner link and its limits
    online: OnlineConfig = field(default_factory=OnlineConfig)      # the online loop (residual, filtered_bc, ppo, dsrl, rlpd)


# configs/finetune.yaml's schema: the run's settings and one section per algorithm, each its config dataclass
FinetuneConfig = make_dataclass("FinetuneConfig", [(name, a.config, field(default_factory=a.config))
                                                   for name, a in ALGORITHMS.items()], bases=(FinetuneRunConfig,))
register_schema("finetune", FinetuneConfig)


def _run_seed(v, config):
    """online.seed is OnlineConfig's; a run sets it with seed=, so any other value would be ignored."""
    if v not in (0, config.get("seed")):
        raise Invalid(f"the run's seed (the online loop runs on it): set seed={v}")
    return v


FIELDS = {
    "algo": choice(*ALGORITHMS),
    "policy": optional(existing_path),
    "obs": optional(choice(*OBS_KINDS)),
    "store": optional(existing_path),
    "corrector": optional(choice("scripted")),
    "reward": choice("twin", "classifier"),
    "reward_model": optional(existing_path),
    "reward_consecutive": integer(1),
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
    "online.seed": Rule(_run_seed, with_config=True),
}


def run(cfg, args: list[str]) -> int:
    from dataclasses import asdict

    from robot_rl.core.results import write_results
    from robot_rl.sim.gym_tasks import task_label

    if args:
        raise ConfigError(f"finetune takes no positional arguments, got {args}; see robot-rl finetune --help")
    if cfg.algo not in ALGORITHMS:
        raise ConfigError(f"finetune: algo={cfg.algo!r}, expected one of {list(ALGORITHMS)}")
    if cfg.policy:   # before anything is built: obs= must name what the base reads
        check_obs(cfg.obs, checkpoint_spec(cfg.policy), cfg.policy)
    out = make_run_dir(cfg, "finetune")
    ctx, task = build_context(cfg, out)
    ctx.progress = progress_enabled()   # `progress=false` reaches the algorithms' own bars
    role = str(cfg.role)
    if role not in ROLES:
        raise ConfigError(f"finetune: role={role!r}, expected one of {list(ROLES)}")
    if role == "actor":
        return run_actor(cfg, ctx)
    print(f"finetune algo={cfg.algo} base={cfg.policy} store={ctx.store.path if ctx.store else None} "
          f"task={task_label(task) if task else None} -> {out}")
    if role == "learner" or int(cfg.actors) > 0:
        result = run_learner(cfg, ctx)
    else:
        result = ALGORITHMS[cfg.algo].run(ctx)
    final = result.curve[-1].success_rate if result.curve else result.metrics.get("success_rate")
    write_results(out / "results.json", stage="finetune", algo=cfg.algo, policy=str(result.policy_path),
                  base=str(cfg.policy), task=task, success_rate=final,
                  eval_episodes=int(cfg.online.eval_episodes) if final is not None else None,
                  env_steps=result.curve[-1].env_steps if result.curve else 0,
                  curve=[asdict(p) for p in result.curve], reward=str(cfg.reward),
                  detector=result.curve[-1].detector if result.curve else None, **result.metrics)
    print(f"{cfg.algo}: final success {final} -> {result.policy_path}")
    return 0
