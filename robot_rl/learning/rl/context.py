"""What every fine-tuning algorithm receives and returns, so `robot-rl finetune`, the pipeline and
`bench finetune` drive all of them the same way.

An algorithm module robot_rl.learning.rl.<algo> exposes `run(ctx: FinetuneContext) -> FinetuneResult`
and writes its policy with a save that `robot_rl.policies.io.load_policy` reads back, so `eval`,
`distill` and `deploy` work on every stage's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from robot_rl.learning.rl.online import CurvePoint, OnlineConfig

ALGORITHMS = ("offline", "residual", "ppo", "dsrl", "rlpd")


@dataclass
class FinetuneContext:
    """base: the frozen base policy (a loaded DiffusionPolicy; None only for from-scratch rlpd);
    store: prior data (EpisodeStore: demos of mixed quality, interventions, earlier rollouts) or None;
    make_env: TwinEnv factory for the task (None on a real robot, where the actor/learner runs instead);
    evaluate: policy -> success rate on fixed seeds; config: the algorithm's section of configs/finetune.yaml;
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
