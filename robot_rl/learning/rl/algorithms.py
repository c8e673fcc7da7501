"""The fine-tuning algorithms by the name `robot-rl finetune algo=<name>` selects.

Each entry names the algorithm's config dataclass (the only place its defaults are written; the finetune
config's section of the same name is built from it, see robot_rl.commands.finetune.FinetuneConfig), its
`run(ctx) -> FinetuneResult`, and for the off-policy ones `make_agent(ctx)`, which the actor/learner split
(robot_rl.runtime.finetune_roles) runs on both sides. A new algorithm is one module and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from robot_rl.learning.rl import dsrl, filtered_bc, offline, ppo, residual, rlpd
from robot_rl.learning.rl.context import FinetuneContext, FinetuneResult


@dataclass(frozen=True)
class Algorithm:
    config: type                                           # its settings: finetune config section `<name>:`
    run: Callable[[FinetuneContext], FinetuneResult]
    make_agent: Callable[[FinetuneContext], tuple[Any, Any]] | None = None   # off-policy: actors and a learner


ALGORITHMS: dict[str, Algorithm] = {
    "offline": Algorithm(offline.OfflineConfig, offline.run),      # IQL critics + RL-100 rounds, OPE-gated
    "residual": Algorithm(residual.ResidualConfig, residual.run, residual.make_agent),   # off-policy, actors=N
    "filtered_bc": Algorithm(filtered_bc.FilteredBCConfig, filtered_bc.run),  # the default: imitate own successes
    "ppo": Algorithm(ppo.PPOConfig, ppo.run),                      # PPO over the denoising chain
    "dsrl": Algorithm(dsrl.DSRLConfig, dsrl.run),                  # SAC over the base's initial noise
    "rlpd": Algorithm(rlpd.RLPDConfig, rlpd.run, rlpd.make_agent),  # from scratch, demos in the batch
}
