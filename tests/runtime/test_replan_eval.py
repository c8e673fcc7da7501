"""scripts/replan_eval.py executes each chunk as the deploy runner's scheduler merges it."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from robot_rl.core.types import ActionChunk
from robot_rl.runtime.scheduler import ActionScheduler

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "replan_eval.py"


def _module():
    spec = importlib.util.spec_from_file_location("replan_eval", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Chunks:
    """Chunk c's action k is 100 + c * 10 + k in every dimension: the executed slots name their source."""

    spec = SimpleNamespace(rate_hz=20.0, n_action_steps=8)

    def __init__(self):
        self.calls = 0

    def reset(self):
        self.calls = 0

    def act(self, features):
        c, self.calls = self.calls, self.calls + 1
        return ActionChunk(np.tile((100 + c * 10 + np.arange(8.0))[:, None], (1, 7)), np.arange(8) / 20.0)


def _run(mode, late):
    mod = _module()
    policy = mod.ScheduledPolicy(Chunks(), ActionScheduler(mode, late_s=late / 20.0), 6, 0.008)
    policy.reset()
    return [policy.act({}).actions[:, 0].tolist() for _ in range(3)]


def test_the_earlier_runner_waits_one_slot_then_runs_the_old_chunks_tail_at_each_replan():
    first, second, third = _run("crossfade", 0)
    assert first == [0, 101, 102, 103, 104, 105]        # a hold (no motion), then actions 1-5 of chunk 0
    assert second == [106, 0.5 * 107 + 0.5 * 111, 112, 113, 114, 115]   # chunk 0's 7th, its 8th half blended
    assert third == [116, 0.5 * 117 + 0.5 * 121, 122, 123, 124, 125]


def test_the_current_runner_executes_chunks_as_eval():
    assert _run("replace", 1) == [[100 + c * 10 + k for k in range(6)] for c in range(3)]
