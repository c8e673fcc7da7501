"""What every fine-tuning algorithm receives and returns, so `robot-rl finetune`, the pipeline and
`bench finetune` drive all of them the same way.

An algorithm (an entry of robot_rl.learning.rl.algorithms.ALGORITHMS) runs as
`run(ctx: FinetuneContext) -> FinetuneResult` and writes its policy with a save that `robot_rl.policies.io.load_policy` reads back, so `eval`,
`distill` and `deploy` work on every stage's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from robot_rl.core.checkpoint import load_checkpoint
from robot_rl.core.config import to_plain
from robot_rl.core.errors import ConfigError
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.learning.evaluate import evaluate
from robot_rl.learning.rl.online import CurvePoint, OnlineConfig
from robot_rl.learning.run_setup import default_store, run_task, twin_env_factory
from robot_rl.policies.io import load_policy
from robot_rl.sim.corrector import scripted_corrector
from robot_rl.sim.gym_tasks import is_gym_task, task_label


@dataclass
class FinetuneContext:
    """base: the frozen base policy (a loaded DiffusionPolicy; None only for from-scratch rlpd);
    store: prior data (EpisodeStore: demos of mixed quality, interventions, earlier rollouts) or None;
    make_env: TwinEnv factory for the task (None on a real robot, where the actor/learner runs instead);
    evaluate: policy -> success rate on fixed seeds; config: the algorithm's settings (its section of
    the finetune config, plain; the algorithm builds its config dataclass from it with dataclass_from_dict);
    online: the shared online-loop settings; out: the run directory (policy goes to out/'policy')."""

    base: Any
    store: Any
    make_env: Callable[[], Any] | None
    evaluate: Callable[[Any], float] | None
    config: dict
    online: OnlineConfig
    out: Path
    seed: int = 0
    device: str = "auto"
    make_corrector: Callable | None = None       # env -> corrector (interventions), see ChunkEnv
    make_success_fn: Callable | None = None      # env -> learned success detector (reward=classifier), see ChunkEnv
    progress: bool = True
    task: dict | None = None                      # twin task config {name, params}: saved with the policy


@dataclass
class FinetuneResult:
    policy: Any                                   # exported policy (satisfies the policy interface)
    policy_path: Path                             # where it was saved
    curve: list[CurvePoint] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


def save_finetuned(ctx: FinetuneContext, policy: Any, algo: str, cfg: Any, meta: dict | None = None) -> Path:
    """Write an algorithm's policy to <out>/policy with what eval/distill read from a run config (task,
    store) and the algorithm's settings (cfg: its config dataclass)."""
    from dataclasses import asdict

    from robot_rl.policies.io import save_policy

    config = {"task": ctx.task, "store": str(ctx.store.path) if ctx.store is not None else None,
              "finetune": {"algo": algo, algo: asdict(cfg), "online": asdict(ctx.online)}}
    return save_policy(policy, Path(ctx.out) / "policy", config=config, meta=meta)


def build_context(cfg, out: Path):
    """FinetuneContext from a finetune config: base policy, prior store, twin task and evaluation."""
    if not cfg.policy and cfg.algo != "rlpd":
        raise ConfigError(f"finetune algo={cfg.algo} needs policy=<base checkpoint dir>")
    base = load_policy(cfg.policy, device=cfg.device) if cfg.policy else None
    base_run = load_checkpoint(cfg.policy).config if cfg.policy else {}
    store_path = default_store(cfg, base_run)
    task = run_task(cfg, base_run, store_path)
    store = EpisodeStore.open(store_path) if store_path else None
    online = OnlineConfig(**to_plain(cfg.online) | {"seed": int(cfg.seed)})   # the loop runs on the run's seed
    spec = base.spec if base is not None else None
    make_env = eval_env = None
    detector = success_detector_model(cfg, online, task)
    if task:
        if spec is None:
            raise ConfigError("finetune algo=rlpd needs policy=<ckpt> for its observation/action spec")
        eval_env = make_env = twin_env_factory(task, spec, cfg.seed)
        if detector is not None:   # the detector's streams too; episodes end when it fires, not at the twin's success
            make_env = twin_env_factory(task, spec, cfg.seed, also=(detector.spec,), terminate_on_success=False)
        if is_gym_task(task):
            scales = (cfg.get("residual") or {}).get("dim_scales") or {}
            if cfg.algo == "residual" and any(int(d) >= spec.action_dim for d in scales):
                raise ConfigError(f"finetune: residual.dim_scales={to_plain(scales)} are the twin's 7-D EE action's; "
                                  f"{task_label(task)} has {spec.action_dim} action dimensions: add "
                                  "residual.dim_scales=null (or name its own)")

    def success_rate(policy) -> float:   # always the twin's own success check: the ground truth
        return evaluate(policy, eval_env, policy.spec, online.eval_episodes, seed=online.eval_seed,
                        progress=False).success_rate

    make_success_fn = None
    if detector is not None:
        from robot_rl.learning.reward_classifier import SuccessDetector

        consecutive = int(cfg.get("reward_consecutive", 2))
        make_success_fn = lambda env: SuccessDetector(detector, consecutive=consecutive)  # noqa: E731

    make_corrector = None
    if cfg.corrector == "scripted" and is_gym_task(task):
        raise ConfigError(f"finetune: corrector=scripted takes over the twin's tasks; task={task_label(task)} is a "
                          "Gymnasium task: use corrector=null")
    if cfg.corrector == "scripted":
        make_corrector = scripted_corrector
    elif cfg.corrector:
        raise ConfigError(f"finetune: corrector={cfg.corrector!r}, expected null or 'scripted'")
    return FinetuneContext(base=base, store=store, make_env=make_env, evaluate=success_rate if make_env else None,
                           config=to_plain(cfg.get(cfg.algo) or {}), online=online, out=out, seed=int(cfg.seed),
                           device=str(cfg.device), make_corrector=make_corrector, make_success_fn=make_success_fn,
                           task=task), task


def success_detector_model(cfg, online: OnlineConfig, task):
    """reward=classifier: the reward classifier at reward_model= (a RewardModel), else None."""
    reward = str(cfg.get("reward") or "twin")
    if reward == "twin":
        return None
    if reward != "classifier":
        raise ConfigError(f"finetune: reward={reward!r}, expected 'twin' or 'classifier'")
    if not cfg.get("reward_model"):
        raise ConfigError("finetune reward=classifier needs reward_model=<reward classifier checkpoint dir> "
                          "(`robot-rl train algo=reward store=<store> out=<dir>` writes <dir>/reward)")
    if online.reward != "sparse":
        raise ConfigError(f"finetune reward=classifier: online.reward={online.reward!r}; the learned detector gives "
                          "the sparse reward: use online.reward=sparse")
    if task and is_gym_task(task):
        raise ConfigError(f"finetune reward=classifier runs on the twin's tasks; task={task_label(task)} is a "
                          "Gymnasium task: use reward=twin")
    from robot_rl.policies.reward_model import RewardModel

    return RewardModel.load(cfg.reward_model, device="cpu")
