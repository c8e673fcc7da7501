"""The policy runner: observation -> policy -> timed actions, with the timing rules of a real rig.

Each cycle: assemble the observation from the latest sensor samples (stale -> hold: the policy is
not called, pending actions are cancelled and the controller's target watchdog holds the pose),
run the policy, drop actions already in the past, blend the new chunk into the pending ones, and
hand every pending action (absolute target times) to the sink, which forwards them to the
controller's interpolator. Every cycle is logged: observation age, inference time, dropped actions.

`step()` is the loop body of a chunked runner, called at the sensor polling rate: a cycle every
`replan_s` (a chunk's worth of actions minus the inference time, see robot_rl.runtime.policy_deployment), and at
every call the sink's `dispatch()` (if it has one) first sends the actions that became due: at a cycle, the old
plan's action due then stands in until the new chunk, computed from the newer observation, replaces it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from robot_rl.core.clock import RateLoop, now
from robot_rl.core.errors import StaleDataError
from robot_rl.core.types import ActionChunk
from robot_rl.runtime.observation_assembly import ObservationAssembler
from robot_rl.runtime.scheduler import ActionScheduler, ScheduledAction


class Policy(Protocol):
    def reset(self) -> None: ...
    def act(self, obs: dict) -> ActionChunk: ...


ActionSink = Callable[[list[ScheduledAction]], None]


@dataclass
class CycleLog:
    t: float
    held: bool
    obs_age_s: float | None = None
    inference_s: float | None = None
    dropped: int = 0
    reason: str = ""


@dataclass
class RunnerStats:
    cycles: list[CycleLog] = field(default_factory=list)

    def summary(self) -> dict:
        acted = [c for c in self.cycles if not c.held]
        starts = np.array([c.t for c in self.cycles])
        inf = np.array([c.inference_s for c in acted]) * 1e3 if acted else np.zeros(0)
        age = np.array([c.obs_age_s for c in acted]) * 1e3 if acted else np.zeros(0)
        pct = (lambda a, q: float(np.percentile(a, q)) if a.size else None)
        return {
            "cycles": len(self.cycles),
            "held_cycles": len(self.cycles) - len(acted),
            "dropped_actions": int(sum(c.dropped for c in self.cycles)),
            "achieved_hz": float((len(starts) - 1) / (starts[-1] - starts[0])) if len(starts) > 1 else None,
            "inference_ms_p50": pct(inf, 50), "inference_ms_p99": pct(inf, 99),
            "obs_age_ms_p50": pct(age, 50), "obs_age_ms_p99": pct(age, 99),
        }


class PolicyRunner:
    def __init__(self, policy: Policy, assembler: ObservationAssembler, scheduler: ActionScheduler,
                 sink: ActionSink, clock: Callable[[], float] = now, replan_s: float = 0.0) -> None:
        self.policy = policy
        self.assembler = assembler
        self.scheduler = scheduler
        self.sink = sink
        self.clock = clock
        self.replan_s = float(replan_s)
        self.next_cycle: float | None = None
        self.stats = RunnerStats()

    def reset(self) -> None:
        self.policy.reset()
        self.scheduler.reset()
        self.stats = RunnerStats()
        self.next_cycle = None

    def step(self) -> CycleLog | None:
        """Let the sink dispatch, then run a cycle if one is due (the first call, then every `replan_s`; after an
        overrun the next one starts at once instead of bursting). Returns the cycle's log or None."""
        t = self.clock()
        dispatch = getattr(self.sink, "dispatch", None)
        if dispatch is not None:
            dispatch()   # before a cycle too: the old plan's action due now stands in while the next is computed
        if self.next_cycle is not None and t < self.next_cycle:
            return None
        self.next_cycle = (t if self.next_cycle is None else self.next_cycle) + self.replan_s
        log = self.cycle()
        self.next_cycle = max(self.next_cycle, self.clock())
        return log

    def cycle(self) -> CycleLog:
        t0 = self.clock()
        try:
            obs = self.assembler.assemble(t0)
        except StaleDataError as e:
            self.scheduler.reset()  # never finish a plan made from data we can no longer trust
            self.sink([])
            log = CycleLog(t=t0, held=True, reason=str(e))
            self.stats.cycles.append(log)
            return log
        chunk = self.policy.act(obs)
        t1 = self.clock()
        dropped = self.scheduler.add(chunk, t1)
        self.sink(self.scheduler.pending(t1))
        log = CycleLog(t=t0, held=False, obs_age_s=t0 - obs["t"], inference_s=t1 - t0, dropped=dropped)
        self.stats.cycles.append(log)
        return log

    def run(self, rate_hz: float, duration_s: float | None = None, should_stop: Callable[[], bool] = lambda: False,
            sleep=time.sleep) -> RunnerStats:
        """Cycle at `rate_hz` until `duration_s` elapses or `should_stop()` is true."""
        loop = RateLoop(rate_hz, clock=self.clock, sleep=sleep)
        start = self.clock()
        while not should_stop() and (duration_s is None or self.clock() - start < duration_s):
            self.cycle()
            loop.wait()
        return self.stats
