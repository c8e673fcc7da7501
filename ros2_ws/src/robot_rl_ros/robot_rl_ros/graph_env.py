"""GraphEnv: the Gymnasium-style env of the online-RL actor over the node graph's topics (TwinEnv's contract).

robot_rl.runtime.actor.Actor wraps it in a ChunkEnv exactly as it wraps TwinEnv: reset(seed) ->
(obs, info), step(action) -> (obs, reward, terminated, truncated, info), obs = {stream name: (D,)
float32} for the streams the policy reads, action (7,) an end-effector delta action in TwinEnv's
semantics, info["success"] / info["is_success"].

reset(): calls the reset service (Trigger; /twin/reset_episode on the twin, "" for none: the scene is
reset by other means) and waits until every observed topic, the arm's pose and diagnostics, and the
success source have spoken after it (nothing of the previous episode is observed or rewarded).
step(action): converts the action into one absolute target with the deploy runtime's converter
(robot_rl.runtime.loop_link.DeltaTargetConverter anchored on the measured arm, published through
policy_link.TargetPublisher), waits one action period on the node's clock, and returns the
observation assembled by policy_link.TopicObservations. An observation is only returned if every
stream has a sample received after the action was sent and none is older than max_staleness_s;
otherwise, after fresh_timeout_s, StaleDataError names the topic and the sample's age (the arm's
target watchdog holds meanwhile: nothing is sent while waiting). The reward is the sparse success
read from a status topic (JSON with a boolean "success", and "episode" when the source counts
episodes: /twin/status, or a success classifier on the robot); success terminates the episode, and
`episode_time_s` (a whole number of action periods) truncates it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from robot_rl.core.clock import now
from robot_rl.core.errors import ConfigError, RobotRLError, StaleDataError
from robot_rl.runtime.loop_link import DeltaTargetConverter, make_assembler
from robot_rl.runtime.recording_session import Route
from robot_rl.runtime.scheduler import ScheduledAction
from robot_rl.runtime.transport import STATUS, Topic, Transport
from robot_rl_ros import graph
from robot_rl_ros.policy_link import ArmView, ObservationOptions, TargetPublisher, TopicObservations


class EnvStopped(RobotRLError):
    """The env's stop event was set (the node deactivates): the episode is abandoned."""


@dataclass
class GraphEnvConfig:
    action_hz: float                               # the policy's action rate
    episode_time_s: float = 10.0                   # time limit: truncated after this many seconds of actions
    reset_service: str = graph.RESET_EPISODE       # Trigger starting the next episode ("" : none)
    success_topic: str = graph.TWIN_STATUS.name    # status JSON with "success" (and "episode")
    max_staleness_s: float = 0.1                   # the oldest sample an observation may use
    fresh_timeout_s: float = 2.0                   # wait this long for fresh observations, then raise
    reset_timeout_s: float = 10.0                  # reset service answer and first fresh observations

    def __post_init__(self) -> None:
        for name in ("action_hz", "episode_time_s", "max_staleness_s", "fresh_timeout_s", "reset_timeout_s"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"graph env: {name}={getattr(self, name)!r}, must be > 0")
        if not self.success_topic:
            raise ConfigError("graph env: success_topic is empty; the sparse reward needs a success source")

    @property
    def max_steps(self) -> int:
        return max(1, int(round(self.episode_time_s * self.action_hz)))


class GraphEnv:
    """transport: the node's Transport; routes/unchecked: policy_link.observation_routes of the streams the
    policy reads; converter: robot_rl.runtime.policy_deployment.make_converter (TwinEnv's delta-action semantics);
    options: observation_routes' per-stream options (subscription QoS, max ages, interpolation, image
    shapes); stop: set to abandon a reset/step at once (EnvStopped)."""

    def __init__(self, transport: Transport, routes: list[Route], unchecked: set[str],
                 converter: DeltaTargetConverter, cfg: GraphEnvConfig, frame: str = "base",
                 latency_s: dict | None = None, stop: threading.Event | None = None,
                 clock: Callable[[], float] = now, options: ObservationOptions | None = None) -> None:
        self.transport, self.converter, self.cfg, self.clock = transport, converter, cfg, clock
        self.stop = stop or threading.Event()
        self.streams = [r.spec.name for r in routes]
        self.topic_of = {r.spec.name: r.topic for r in routes}
        self.latency_s = dict(latency_s or {})
        self.options = options or ObservationOptions()
        self.obs = TopicObservations(routes, unchecked, self._assembler(), self.options.qos)
        self._arrived = threading.Event()     # set by every message: waits wake on news, not on a poll
        self.arm = ArmView(notify=self._arrived.set)
        self.targets = TargetPublisher(transport, frame)
        self._diag_t: float | None = None     # receive time of the newest /arm/diagnostics
        self._status: tuple[float, dict] | None = None
        for topic in self.obs.by_topic:
            self.obs.tap(topic, lambda _s: self._arrived.set())
        self._subs = [*self.obs.attach(transport), *self.arm.attach(transport, self.obs),
                      transport.subscribe(graph.ARM_DIAGNOSTICS, lambda d: self._mark_diag()),
                      transport.subscribe(Topic(cfg.success_topic, "status", STATUS), self._on_status)]
        self.steps = 0
        self.t0 = 0.0
        self.episode: Any = None

    def _assembler(self):
        o = self.options
        return make_assembler(self.streams, 1, self.cfg.action_hz, self.cfg.max_staleness_s, self.latency_s,
                              interp=o.interp, image_shapes=o.image_shapes, max_age_s=o.max_age_s)

    def _mark_diag(self) -> None:
        self._diag_t = self.clock()
        self._arrived.set()

    def _on_status(self, d: dict) -> None:
        self._status = (self.clock(), d)
        self._arrived.set()

    # ---- waiting --------------------------------------------------------------------------------
    def _wait(self, ready: Callable[[], bool], timeout_s: float, explain: Callable[[], str]) -> None:
        """Until ready() (checked whenever a message arrives), else StaleDataError after timeout_s."""
        deadline = self.clock() + timeout_s
        while True:
            self._arrived.clear()
            if ready():
                return
            left = deadline - self.clock()
            if left <= 0:
                raise StaleDataError(explain())
            self._arrived.wait(min(left, 0.05))
            if self.stop.is_set():
                raise EnvStopped("graph env stopped")

    def _stale(self, since: float) -> list[str]:
        """Why the observation streams are not fresh: none received since `since`, or too old."""
        t, out = self.clock(), []
        for s in self.streams:
            last = self.obs.assembler.latest_time(s)
            max_age = self.obs.assembler.sensors[s].max_staleness_s
            received = None if last is None else last + self.latency_s.get(s, 0.0)
            if received is None:
                out.append(f"topic {self.topic_of[s]} (stream {s}): no sample received")
            elif received < since or t - last > max_age:
                out.append(f"topic {self.topic_of[s]} (stream {s}): newest sample is {(t - last) * 1e3:.0f} ms "
                           f"old (max {max_age * 1e3:.0f} ms, needed one after the "
                           f"{'reset' if self.steps == 0 else 'action'} {(t - since) * 1e3:.0f} ms ago)")
        return out

    def _observe(self, since: float, timeout_s: float) -> dict[str, np.ndarray]:
        """Each stream's value at the newest time all of them cover, once all are fresh (or StaleDataError)."""
        self._wait(lambda: not self._stale(since), timeout_s,
                   lambda: f"graph env: stale observation after {timeout_s:g} s: " + "; ".join(self._stale(since)))
        obs = self.obs.assemble(self.clock())
        return {s: np.asarray(obs[s][-1], np.float32) for s in self.streams}

    def _success(self) -> bool:
        return bool(self._status[1].get("success", False)) if self._status is not None else False

    def _info(self, success: bool) -> dict[str, Any]:
        snap = self.arm.last
        return {"is_success": success, "success": success, "time": self.steps / self.cfg.action_hz,
                "episode": self.episode, "controller_mode": None if snap is None else int(snap.mode)}

    # ---- the env ----------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode. `seed` is not used: the reset service draws the episode (the twin: its seed
        parameter + episodes so far; the robot: whatever the scene is)."""
        if self.stop.is_set():
            raise EnvStopped("graph env stopped")
        prev = self._status[1].get("episode") if self._status is not None else None
        t_call = self.clock()
        if self.cfg.reset_service:
            reply = self.transport.call(self.cfg.reset_service, "trigger", timeout_s=self.cfg.reset_timeout_s)
            if not reply.success:
                raise RobotRLError(f"graph env: reset service {self.cfg.reset_service} failed: {reply.message}")
        t_fresh = self.clock()
        self.converter.reset()
        self.obs.replace(self._assembler())
        self.steps = 0

        def status_of_new_episode() -> bool:
            if self._status is None:
                return False
            t, d = self._status
            if prev is not None and "episode" in d:
                return d["episode"] != prev and t >= t_call
            return t >= t_fresh

        def arm_fresh() -> bool:
            return self.arm.last is not None and self.arm.last.t >= t_fresh and (self._diag_t or 0.0) >= t_fresh

        what = {"status": (status_of_new_episode, f"no status on {self.cfg.success_topic} since the reset"),
                "arm": (arm_fresh, f"no pose on {graph.EE_POSE.name} and diagnostics on "
                                   f"{graph.ARM_DIAGNOSTICS.name} since the reset")}
        for ready, message in what.values():
            self._wait(ready, self.cfg.reset_timeout_s, lambda m=message: f"graph env: {m} "
                                                                          f"({self.cfg.reset_timeout_s:g} s)")
        obs = self._observe(t_fresh, self.cfg.reset_timeout_s)
        self.episode = self._status[1].get("episode")
        self.t0 = self.clock()
        return obs, self._info(False)

    def step(self, action):
        snap = self.arm.last
        t = self.clock()
        if snap is None or t - snap.t > self.cfg.max_staleness_s:
            age = "none received" if snap is None else f"newest is {(t - snap.t) * 1e3:.0f} ms old"
            raise StaleDataError(f"graph env: arm pose on {graph.EE_POSE.name}: {age} "
                                 f"(max {self.cfg.max_staleness_s * 1e3:.0f} ms); no target sent")
        (target,) = self.converter.convert([ScheduledAction(t, np.asarray(action, np.float64))], snap)
        self.targets.push_target(target)
        if self.stop.wait(max(0.0, t + 1.0 / self.cfg.action_hz - self.clock())):
            raise EnvStopped("graph env stopped")
        self.steps += 1
        obs = self._observe(t, self.cfg.fresh_timeout_s)
        success = self._success()
        truncated = self.steps >= self.cfg.max_steps and not success
        return obs, float(success), success, truncated, self._info(success)

    def close(self) -> None:
        for sub in self._subs:
            try:
                sub.close()
            except RobotRLError:   # the transport was closed first
                pass
        self._subs = []
