"""Evaluate a checkpoint in the twin's env, executing each chunk as the deploy runner's scheduler merges it.

    .venv/bin/python scripts/replan_eval.py <checkpoint> --task lift --episodes 100 --seed 200000 \
        --replan 6 --scheduler crossfade --late 0

Every `--replan` actions the policy observes and its chunk goes through robot_rl.runtime.scheduler's
ActionScheduler at the observation time plus `--inference-ms`, as in `robot-rl deploy`; the env then executes
the scheduler's actions for the next `--replan` slots. The slot at the observation time gets the new chunk's
action when the scheduler kept it, else the old plan's (which the runner sent when it fell due). `--late 0`
is the earlier runner (the first action dropped once inference returns), `--late 1` the current one (kept
while its target, one period later, is ahead). Separates what the schedule costs a policy from the wall-clock
path: `robot-rl eval action_steps=<n>` is `--scheduler replace --late 1`.
"""

import argparse
import dataclasses
import json

import numpy as np

from robot_rl.core.types import ActionChunk
from robot_rl.learning.evaluate import evaluate
from robot_rl.learning.run_setup import twin_env_factory
from robot_rl.policies.io import load_policy
from robot_rl.runtime.scheduler import MODES, ActionScheduler


class ScheduledPolicy:
    def __init__(self, policy, scheduler: ActionScheduler, replan: int, inference_s: float) -> None:
        self.policy, self.scheduler, self.replan, self.inference_s = policy, scheduler, replan, inference_s
        self.period = 1.0 / float(policy.spec.rate_hz)
        self.t_obs = 0.0

    def reset(self) -> None:
        self.policy.reset()
        self.scheduler.reset()
        self.t_obs = 0.0

    def act(self, features: dict) -> ActionChunk:
        chunk = self.policy.act(features)
        t_obs, p = self.t_obs, self.period
        before = {round(a.t / p): a.action for a in self.scheduler.pending(t_obs - 0.5 * p)}
        self.scheduler.add(ActionChunk(chunk.actions, t_obs + p * np.arange(len(chunk.actions))), t_obs + self.inference_s)
        after = {round(a.t / p): a.action for a in self.scheduler.pending(t_obs - 0.5 * p)}
        first = round(t_obs / p)
        slots = [after.get(first + k, before.get(first + k)) if k == 0 else after.get(first + k)
                 for k in range(self.replan)]
        if slots[0] is None:   # the first chunk with its first action dropped: the arm waits one slot
            slots[0] = np.zeros_like(slots[1])
            slots[0][-1] = slots[1][-1]    # (dx dy dz drx dry drz gripper: no motion, the gripper as planned)
        self.t_obs += len(slots) * p
        return ActionChunk(np.stack(slots).astype(np.float32), t_obs + p * np.arange(len(slots)), info=chunk.info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--task", default="lift")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=200_000, help="first episode seed (held-out: 200000)")
    parser.add_argument("--replan", type=int, default=6, help="actions executed per chunk (the runner's replan_steps)")
    parser.add_argument("--scheduler", choices=MODES, default="replace")
    parser.add_argument("--late", type=float, default=1.0, help="late_s in action periods (0: the earlier runner)")
    parser.add_argument("--inference-ms", type=float, default=8.0)
    parser.add_argument("--out", help="write {success_rate, per_episode} as JSON here")
    args = parser.parse_args()
    policy = load_policy(args.checkpoint, device="cpu")
    spec = policy.spec
    if not 1 <= args.replan < spec.n_action_steps:
        parser.error(f"--replan {args.replan}: the runner executes 1 to n_action_steps - 1 = {spec.n_action_steps - 1} "
                     "actions of each chunk (one stands in while the next is computed)")
    period = 1.0 / float(spec.rate_hz)
    scheduler = ActionScheduler(args.scheduler, late_s=args.late * period)
    wrapped = ScheduledPolicy(policy, scheduler, args.replan, args.inference_ms / 1e3)
    spec = dataclasses.replace(spec, n_action_steps=args.replan)
    r = evaluate(wrapped, twin_env_factory({"name": args.task, "params": {}}, spec), spec, args.episodes,
                 seed=args.seed, progress=False)
    lo, hi = r.success_ci95
    print(f"{args.checkpoint}: {args.scheduler}, late {args.late:g} period, {args.replan} actions per chunk: "
          f"success {r.success_rate:.0%} over {r.episodes} episodes (95 % interval {lo:.0%}-{hi:.0%})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"success_rate": r.success_rate, "per_episode": [e["success"] for e in r.per_episode]}, f)


if __name__ == "__main__":
    main()
