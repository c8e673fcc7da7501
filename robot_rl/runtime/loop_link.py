"""The policy runner's two ends at the 1 kHz loop process: state snapshots in, EE targets out.

`LoopObservationSource` turns the loop's published state (a seqlock snapshot stamped with the host
monotonic time the arm state was read) into observation samples under the episode-store stream
names the policies were trained on (joint_pos, joint_vel, ee_pos, ee_quat, gripper_pos, and
task_state for a task backend) and pushes them into the ObservationAssembler, which applies the
per-stream latency compensation, interpolates history frames at the policy period (as the twin's
stores declare them: slerp for ee_quat, linear for the rest) and checks staleness. Poll it often
(deploy polls at `poll_hz`): a sample is only as fresh as the last poll.

`DeltaTargetConverter` turns the runner's pending actions (end-effector delta actions with absolute
action times) into absolute, timestamped EETargets with exactly TwinEnv's semantics
(robot_rl.sim.env.integrate_delta_action): the action at time t moves the commanded target that the
controller follows at t, and the result is to be reached one action period later. Along a chunk the
deltas are integrated one after the other; a new chunk starts from the commanded trajectory at its
first action time (the targets already sent, interpolated like the controller does), so a replanned
chunk supersedes the old tail without a jump. When the controller is not tracking (start of an
episode, or holding after its target watchdog fired) the chunk starts from the controller's
reference pose instead.

`LoopActionSink` is the runner's sink. It keeps the runner's latest plan and converts its actions just
in time: `dispatch()` (called at every poll) converts the action that became due with the newest
snapshot, so each action's lead clip sees the TCP measured when the action starts, exactly as
TwinEnv.step does, however long ago the chunk was planned (the first action of a plan that starts in
the future is sent at once: the controller then holds a target until the plan begins). Each action of
a plan is sent once: its target's stamp (the time the EE is to be at the pose) is its action's time
plus one action period. A replanned chunk takes effect from its first action, whose target supersedes
one sent for the same time: the runner keeps the action at the observation time while its target is
still ahead (the scheduler's `late_s`), so the decision made from the newest observation is the one
executed, as in TwinEnv.
`lookahead_steps` > 0 also sends that many actions ahead of the due one (each still once, converted
with the TCP measured when it was sent): they bridge a late dispatch, not a stalled runner. Targets
beyond the lookahead are not sent: if the runner stalls, the controller reaches the last target it has
and its target watchdog holds the arm. A held cycle (empty list) stops the plan already sent with one
target and then sends nothing, so the arm holds the same way when observations go stale.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from robot_rl.control.controller import ControllerMode
from robot_rl.control.trajectory import slerp
from robot_rl.core.clock import now
from robot_rl.core.types import EETarget
from robot_rl.runtime.observation_assembly import ObservationAssembler, SensorSpec
from robot_rl.runtime.scheduler import ScheduledAction
from robot_rl.sim.env import MAX_DELTA_ANGULAR_SPEED, MAX_DELTA_SPEED, MAX_TARGET_LEAD, integrate_delta_action

PROPRIO_STREAMS = ("joint_pos", "joint_vel", "ee_pos", "ee_quat", "gripper_pos")
STREAM_INTERP = {"ee_quat": "slerp"}   # the twin stores' StreamSpec.interp; every other loop stream: linear


def snapshot_streams(snap) -> dict[str, np.ndarray]:
    """A loop snapshot as {stream name: float32 array}, the keys TwinEnv observations and stores use."""
    out = {"joint_pos": snap.q.astype(np.float32), "joint_vel": snap.dq.astype(np.float32),
           "ee_pos": snap.ee_pos.astype(np.float32), "ee_quat": snap.ee_quat.astype(np.float32),
           "gripper_pos": np.array([snap.gripper_width], np.float32)}
    ts = snap.task_obs
    if ts.size:
        out["task_state"] = ts.astype(np.float32)
    return out


def make_assembler(streams: list[str], n_obs_steps: int, rate_hz: float, max_staleness_s: float,
                   latency_s: dict | None = None, history: int = 64, interp: dict | None = None,
                   image_shapes: dict | None = None, max_age_s: dict | None = None) -> ObservationAssembler:
    """An assembler with one sensor per stream; latency_s: {stream: seconds} (calibration), default 0;
    interp: {stream: hold|linear|slerp} (default STREAM_INTERP, else linear; image streams: hold);
    image_shapes: {stream: (H, W, C)} frames are resized to; max_age_s: {stream: seconds} overriding
    max_staleness_s (a 10 Hz goal topic is never fresher than 100 ms)."""
    from robot_rl.core.errors import ConfigError

    latency_s, interp, image_shapes = dict(latency_s or {}), dict(interp or {}), dict(image_shapes or {})
    max_age_s = dict(max_age_s or {})
    for what, d in (("runtime.latency_s", latency_s), ("interp", interp), ("image shapes", image_shapes),
                    ("max_age_s", max_age_s)):
        unknown = sorted(set(d) - set(streams))
        if unknown:
            raise ConfigError(f"{what}: unknown stream(s) {unknown}; the policy reads {sorted(streams)}")
    return ObservationAssembler(
        [SensorSpec(s, float(latency_s.get(s, 0.0)), float(max_age_s.get(s, max_staleness_s)), history,
                    "hold" if s in image_shapes else interp.get(s, STREAM_INTERP.get(s, "linear")),
                    image_shapes.get(s)) for s in streams], n_obs_steps, rate_hz)


class LoopObservationSource:
    """Reads the loop's state and feeds the streams the policy needs into `assembler`.

    loop: anything with state() -> LoopSnapshot (ControlLoopProcess). The sample's receive time is the
    snapshot's `t` (when the loop read the arm state); a loop that stops publishing leaves the samples
    to age until the assembler calls them stale.
    cameras: a frame source for the camera streams (`streams`, and `frames(snap)` -> [(stream, capture
    time, image)] of the frames that arrived since the last call; e.g. robot_rl.sim.twin_cameras'
    TwinCameraSource, which renders the snapshot's scene). Its frames take a real camera's path: stamped
    with their capture time, held until the next one, stale when the source stops."""

    def __init__(self, loop, assembler: ObservationAssembler, cameras=None) -> None:
        self.loop = loop
        self.assembler = assembler
        self.cameras = cameras
        camera_streams = set(cameras.streams) if cameras is not None else set()
        self.streams = [s for s in assembler.sensors if s not in camera_streams]
        self.last = None

    def poll(self):
        if self.cameras is not None:
            # frames first (a render takes milliseconds), then the state: the cycle that follows acts on a
            # fresh state sample, not one as old as the renders
            for stream, t, frame in self.cameras.frames(self.loop.state()):
                self.assembler.push(stream, frame, t)
        snap = self.loop.state()
        self.last = snap
        values = snapshot_streams(snap)
        missing = [s for s in self.streams if s not in values]
        if missing:
            raise KeyError(f"the loop publishes {sorted(values)}, the policy needs {missing} as well "
                           "(task_state needs a task backend: deploy twin=true task=<name>; camera streams a "
                           "camera source)")
        for s in self.streams:
            self.assembler.push(s, values[s], snap.t)
        return snap


@dataclass
class DeltaActionParams:
    """Delta-action scaling, as TwinEnv's: max_delta_pos/rot per action step at `action_hz`."""

    action_hz: float
    max_delta_pos: float | None = None
    max_delta_rot: float | None = None
    max_target_lead: float = MAX_TARGET_LEAD
    action_frame: str = "base"

    def __post_init__(self) -> None:
        if self.action_frame not in ("base", "tool"):
            raise ValueError(f"action_frame={self.action_frame!r}, expected 'base' or 'tool'")
        self.max_delta_pos = float(self.max_delta_pos or MAX_DELTA_SPEED / self.action_hz)
        self.max_delta_rot = float(self.max_delta_rot or MAX_DELTA_ANGULAR_SPEED / self.action_hz)


class DeltaTargetConverter:
    """Delta actions with action times -> EETargets (see the module docstring)."""

    def __init__(self, params: DeltaActionParams, workspace_min, workspace_max) -> None:
        self.p = params
        self.period = 1.0 / params.action_hz
        self.ws_lo = np.asarray(workspace_min, dtype=np.float64)
        self.ws_hi = np.asarray(workspace_max, dtype=np.float64)
        self._sent: list[tuple] = []   # (arrival time, pos, quat, gripper) of the targets sent, time order

    def reset(self) -> None:
        self._sent = []

    def commanded(self, t: float) -> tuple[np.ndarray, np.ndarray] | None:
        """The commanded pose at time t from the targets sent so far (None before any)."""
        pts = self._sent
        if not pts:
            return None
        if t <= pts[0][0]:
            return pts[0][1], pts[0][2]
        if t >= pts[-1][0]:
            return pts[-1][1], pts[-1][2]
        i = next(k for k in range(1, len(pts)) if pts[k][0] >= t)
        (ta, pa, qa, _), (tb, pb, qb, _) = pts[i - 1], pts[i]
        a = (t - ta) / (tb - ta)
        return pa + a * (pb - pa), np.array(slerp(tuple(qa), tuple(qb), a))

    def convert(self, pending: list[ScheduledAction], snap) -> list[EETarget]:
        """Targets for `pending` (time order). snap: the latest loop snapshot (measured TCP for the
        lead clip; controller mode and reference pose to anchor on when it is not tracking)."""
        if not pending:
            return []
        t0 = pending[0].t
        base = self.commanded(t0) if int(snap.mode) == ControllerMode.TRACKING else None
        if base is None:
            self._sent = []
            base = (np.array(snap.ref_pos, dtype=np.float64), np.array(snap.ref_quat, dtype=np.float64))
            self._sent.append((float(snap.t), base[0], base[1], None))
        pos, quat = base
        ee = np.asarray(snap.ee_pos, dtype=np.float64)
        out = []
        for act in pending:
            pos, quat, grip = integrate_delta_action(act.action, pos, quat, ee, self.p.max_delta_pos,
                                                     self.p.max_delta_rot, self.p.max_target_lead, self.ws_lo,
                                                     self.ws_hi, self.p.action_frame)
            out.append(EETarget(act.t + self.period, pos, quat, grip))
        # the new targets supersede every sent one at or after the first new arrival (as the controller's
        # trajectory does); keep one second of history for interpolation
        first = out[0].t
        keep = [p for p in self._sent if first - 1.0 < p[0] < first]
        self._sent = keep + [(tg.t, tg.position, tg.quat, tg.gripper) for tg in out]
        return out

    def freeze(self, t: float) -> EETarget | None:
        """A target that stops the commanded trajectory at time t (superseding what was sent for later),
        or None when nothing sent reaches beyond t."""
        if not self._sent or self._sent[-1][0] <= t:
            return None
        pos, quat = self.commanded(t)
        grip = next(p[3] for p in self._sent if p[0] >= t)
        self._sent = [p for p in self._sent if p[0] < t] + [(t, pos, quat, grip)]
        return EETarget(t, pos, quat, 0.0 if grip is None else grip)


class LoopActionSink:
    """PolicyRunner sink: the plan (pending actions) -> just-in-time targets -> the loop's target ring.

    An empty list (a held cycle: stale observations, or every action already past) cancels the plan the
    controller still holds: once per hold, one target stops the commanded trajectory a short `stop_s`
    ahead, then nothing more is sent, so the controller's target watchdog takes over and holds.
    lookahead_steps: actions converted and sent ahead of the one due now (each target is sent once)."""

    def __init__(self, loop, converter: DeltaTargetConverter, source: LoopObservationSource,
                 stop_s: float = 0.02, lookahead_steps: int = 0, clock=now) -> None:
        self.loop = loop
        self.converter = converter
        self.source = source
        self.stop_s = stop_s
        self.lookahead_s = max(0, int(lookahead_steps)) * converter.period
        self.clock = clock
        self.pushed = 0
        self.stops = 0
        self._stopped = False
        self._plan: list[ScheduledAction] = []
        self._last_action_t = -np.inf   # the time of the newest action whose target was sent
        self.last: list[EETarget] = []

    def __call__(self, pending: list[ScheduledAction]) -> None:
        if not pending or self.source.last is None:
            self._plan = []
            if not self._stopped:
                self._stopped = True
                stop = self.converter.freeze(self.clock() + self.stop_s)
                if stop is not None:
                    self.loop.push_target(stop)
                    self.stops += 1
            return
        self._stopped = False
        if pending[0].t > self.clock():
            self.dispatch()   # the new plan starts later: the old plan's action that fell due meanwhile goes out
        self._plan = list(pending)
        # the new plan takes over from its first action: a target already sent for that action's time (the old
        # plan's, same stamp on the scheduler's shared grid) is superseded
        self._last_action_t = min(self._last_action_t, pending[0].t - 0.5 * self.converter.period)
        self.dispatch()

    def next_due(self) -> float | None:
        """When dispatch() next has something to send (the next action not sent yet, less the lookahead),
        or None when the plan is empty: a caller may sleep until then instead of polling."""
        for a in self._plan:
            if a.t > self._last_action_t:
                return a.t - self.lookahead_s
        return None

    def dispatch(self) -> int:
        """Convert and send the actions of the plan that are due (the newest due one, or the next one when
        none is due yet; with a lookahead also those due within it) and were not sent yet, with the
        snapshot of this moment. Returns how many targets were pushed."""
        if not self._plan or self.source.last is None:
            return 0
        t, period = self.clock(), self.converter.period
        times = [a.t for a in self._plan]
        first = max(0, bisect_right(times, t) - 1, bisect_right(times, self._last_action_t))
        if first < len(times) and times[first] + period <= t:   # due so long ago its target is past
            first += 1
        if first >= len(times):   # the whole plan is behind us: the controller holds
            self._plan = []
            return 0
        # none due yet and no target sent still ahead of the controller: the first one now
        idle = self._last_action_t + period <= t
        end = bisect_right(times, (max(t, times[first]) if idle else t) + self.lookahead_s)
        if end <= first:
            return 0
        targets = self.converter.convert(self._plan[first:end], self.source.last)
        for tg in targets:
            self.loop.push_target(tg)
        self._last_action_t = times[end - 1]
        self.pushed += len(targets)
        self.last = targets
        return len(targets)
