"""Train a policy from an episode store. algo=bc: diffusion policy by imitation (see
robot_rl/learning/bc.py). Evaluates in the twin every train.eval_every steps and keeps the best
checkpoint by success rate. Multi-GPU/multi-node: launch with
`torchrun --nproc_per_node=N -m robot_rl.cli train ...`.
"""

from __future__ import annotations

import sys

from dataclasses import dataclass, field
from typing import Any

from robot_rl.core.config import register_schema, section_schema, to_plain
from robot_rl.core.errors import ConfigError
from robot_rl.core.fields import choice, existing_path, integer, integers, number, optional
from robot_rl.core.rundir import make_run_dir
from robot_rl.learning.bc import BCConfig
from robot_rl.learning.reward_classifier import RewardConfig
from robot_rl.learning.run_setup import resolve_task, twin_env_factory
from robot_rl.learning.spec_builder import OBS_KINDS, spec_section
from robot_rl.policies.model_config import (BETA_SCHEDULES, DENOISERS, IMAGE_ENCODERS, POOLS, PREDICTION_TYPES,
                                           PolicyConfig)

BCSection = section_schema(BCConfig, without=("seed",), flatten="optim")   # the optimizer's fields flat: train.lr=
RewardSection = section_schema(RewardConfig, without=("seed", "progress"))


@dataclass
class TrainConfig:
    """configs/train.yaml's schema; its defaults are these fields' (the YAML holds the groups, the spec and the
    values that differ)."""

    out: str | None = None            # output directory; default runs/train/<UTC timestamp>
    seed: int = 0
    algo: str = "bc"                  # bc: diffusion policy by imitation | reward: success classifier
    obs: str = "state"                # image: proprio + cameras (a real rig's; model diffusion_cpu_image unless
                                      # model= is given) | state: proprio + task_state (privileged: twin only)
    store: str | None = None          # episode store (path or fsspec URL) to train on; required
    task: Any = None                  # twin task for evaluation rollouts (config group configs/task)
    spec: dict = field(default_factory=dict)   # observation/action spec (configs/train.yaml) over obs='s features;
                                               # shapes from the store
    model: PolicyConfig = field(default_factory=PolicyConfig)   # the architecture (config group configs/model)
    train: BCSection = field(default_factory=BCSection)          # algo=bc: robot_rl.learning.bc.BCConfig
    reward: RewardSection = field(default_factory=RewardSection)   # algo=reward: reward_classifier.RewardConfig


register_schema("train", TrainConfig)

IMAGE_MODEL = "diffusion_cpu_image"   # obs=image's model (configs/model) when no model= is given


def preset_overrides(overrides: list[str]) -> list[str]:
    """The command line with obs=image's model choice first (model= given on it wins): the default MLP model is
    sized for state vectors."""
    given = {o.lstrip("+~").split("=", 1)[0]: o.split("=", 1)[1] for o in overrides if "=" in o}
    if given.get("obs") == "image" and "model" not in given:
        return [f"model={IMAGE_MODEL}", *overrides]
    return overrides


FIELDS = {
    "algo": choice("bc", "reward"),
    "obs": choice(*OBS_KINDS),
    "store": optional(existing_path),
    "train.eval_episodes": integer(1),   # evaluation is turned off with train.eval_every=0, not with 0 episodes
    "spec.n_obs_steps": integer(1),
    "spec.horizon": integer(1),
    "spec.n_action_steps": integer(1),
    "spec.rate_hz": optional(number(0.0, min_open=True)),
    "reward.positive_s": number(0.0, min_open=True),
    "reward.min_precision": number(0.0, 1.0),
    "model.denoiser": choice(*DENOISERS),
    "model.image_pool": choice(*POOLS),
    "model.image_encoder": choice(*IMAGE_ENCODERS),
    "model.image_size": integer(0),
    "model.conv_channels": integers(1),
    "model.beta_schedule": choice(*BETA_SCHEDULES),
    "model.prediction_type": choice(*PREDICTION_TYPES),
    "model.down_dims": integers(1),
    "model.image_blocks": integers(1),
    "model.state_dims": integers(1),
    "model.mlp_num_blocks": integer(0),
    "model.crop_ratio": number(0.0, 1.0, min_open=True),
    "model.eta": number(0.0),
    "model.*_dim": integer(1),
    "model.num_*": integer(1),
    "model.kernel_size": integer(1),
    "model.n_groups": integer(1),
    "model.image_width": integer(1),
}


def state_hint(store) -> str:
    """For a store without the twin's streams (e.g. a Gymnasium task's): the override naming its own."""
    from robot_rl.sim.gym_tasks import RECORDER_STREAMS, state_override

    own = [n for n, s in store.streams.items() if n not in RECORDER_STREAMS and not s.is_image]
    if not own or "ee_pos" in store.streams:
        return ""
    return f"; this store's observations: {state_override(own)}"


def obs_hint(obs: str, store, task_cfg) -> str:
    """obs=state on a store without the privileged stream but with obs=image's (a rig's): that preset."""
    from robot_rl.learning.spec_builder import PRIVILEGED_STREAMS, obs_preset

    image = {s for f in obs_preset("image", task_cfg).values() for s in f["stream"].split("+")}
    if obs != "state" or set(PRIVILEGED_STREAMS) <= set(store.streams) or not image <= set(store.streams):
        return ""
    return "; this store has no privileged task_state (a real rig's): train on its cameras with obs=image"


def run(cfg, args: list[str]) -> int:
    from omegaconf import OmegaConf

    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.learning.bc import train_bc
    from robot_rl.learning.spec_builder import build_spec
    from robot_rl.policies.diffusion_policy import DiffusionPolicy
    from robot_rl.policies.io import check_model_size
    from robot_rl.sim.gym_tasks import task_label

    if args:
        raise ConfigError(f"robot-rl train takes key=value options only, got {args}")
    if cfg.algo not in ("bc", "reward"):
        raise ConfigError(f"algo={cfg.algo!r}: `robot-rl train` does imitation (algo=bc) and success classifiers "
                          "(algo=reward); RL is `robot-rl finetune`")
    if not cfg.store:
        raise ConfigError("store=<path> is required (an episode store, e.g. from `robot-rl collect`)")
    store = EpisodeStore.open(cfg.store)
    task_cfg = to_plain(cfg.task) if cfg.get("task") else None
    section = spec_section(cfg.obs, to_plain(cfg.spec), task_cfg)
    OmegaConf.update(cfg, "spec", section, merge=False)   # the run config saved with the policy names its features
    try:
        spec = build_spec(section, store)
    except ConfigError as e:
        raise ConfigError(f"{e}{state_hint(store)}{obs_hint(cfg.obs, store, task_cfg)}") from None
    if cfg.algo == "reward":
        return _train_reward(cfg, store, spec)
    train_cfg = BCConfig.from_dict(to_plain(cfg.train) | {"seed": cfg.seed})
    model_cfg = PolicyConfig.from_dict(to_plain(cfg.model))
    check_model_size(DiffusionPolicy, spec, model_cfg, f"train model={model_cfg.denoiser}")
    task = resolve_task(cfg.get("task"), store)
    make_env = twin_env_factory(task, spec, cfg.seed) if task else None
    out = make_run_dir(cfg, "train")
    print(f"training {cfg.algo} on {cfg.store} ({store.n_episodes} episodes) -> {out}"
          + (f"; evaluating on task {task_label(task)}" if task else "; no evaluation rollouts (no task)"))
    result = train_bc(cfg.store, spec, model_cfg, train_cfg, out, make_env,
                      run_config=to_plain(cfg))
    print(f"best checkpoint: {result.best}")
    return 0


def _train_reward(cfg, store, spec) -> int:
    """algo=reward: the success classifier on the spec's observation features (robot_rl.learning.reward_classifier)."""
    from robot_rl.core.results import write_results
    from robot_rl.learning.reward_classifier import train_reward_classifier

    out = make_run_dir(cfg, "train")
    reward_cfg = RewardConfig.from_dict(to_plain(cfg.reward) | {"seed": cfg.seed})
    print(f"training a success classifier on {cfg.store} ({store.n_episodes} episodes; features "
          f"{[f.key for f in spec.obs]}) -> {out / 'reward'}")
    _, metrics = train_reward_classifier(store, list(spec.obs), reward_cfg, out / "reward",
                                         PolicyConfig.from_dict(to_plain(cfg.model)))   # the run's encoder
    write_results(out / "results.json", stage="train", algo="reward", store=str(cfg.store), **metrics)
    print(f"threshold {metrics['threshold']:.3f}: validation precision {metrics['val_precision']}, recall "
          f"{metrics['val_recall']}, accuracy {metrics['val_accuracy']:.3f} -> {out / 'reward'}")
    if (metrics["val_precision"] or 0.0) < reward_cfg.min_precision:
        print(f"warning: no threshold reaches reward.min_precision={reward_cfg.min_precision} on the validation "
              f"episodes (precision {metrics['val_precision']}); a false success ends an online episode early: "
              f"train longer (reward.steps={2 * reward_cfg.steps}) or record more demos before using it as a reward",
              file=sys.stderr)
    return 0
