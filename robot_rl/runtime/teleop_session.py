"""A teleop device driving an env through delta actions, with a recording session around it.

Every tick (the env's policy period):
    read the device (and an optional second device for the session keys)
    -> session keys call the RecordingSession: start, stop_and_save, discard, mark_success, mark_failure
    -> the command as the env's (7,) delta action (zero motion while the deadman is released; gripper
       from the toggle; robot_rl.hardware.teleop.actions) -> env.step
    -> while recording, the step goes to the recorder -> session timers (max_episode_s, reset period)
    -> the live view gets the latest frames and signals (it composes on its own thread).
When an episode ends (saved or discarded) the env is reset: the twin draws the next scene; on a real rig
the operator restores the scene during the reset period. The operator can move the arm at any time;
only steps inside an episode are recorded. The env's own termination and truncation are ignored: the
operator ends episodes and `max_episode_s` bounds them.

Any env with gym's reset()/step() and TwinEnv's delta-action attributes (max_delta_pos, max_delta_rot,
policy_hz, action_frame) works: the twin today, a real rig's env with the same semantics later.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from robot_rl.core.clock import RateLoop, now
from robot_rl.hardware.teleop.actions import ActionScale
from robot_rl.hardware.teleop.events import EventKind, TeleopCommand
from robot_rl.runtime.recording_session import RecordingSession

SESSION_KEYS = {EventKind.START: "start", EventKind.STOP_AND_SAVE: "stop_and_save", EventKind.DISCARD: "discard",
                EventKind.MARK_SUCCESS: "mark_success", EventKind.MARK_FAILURE: "mark_failure"}
LABELS = {None: "-", True: "success", False: "failure"}


class SessionSink:
    """The writer side of a robot_rl.sim.episode_recorder.EpisodeRecorder, routed into a RecordingSession
    (which begins and commits the episodes itself)."""

    def __init__(self, session: RecordingSession) -> None:
        self.session = session

    def append(self, stream: str, value, t: float) -> bool:
        return self.session.append(stream, value, t)

    def begin_episode(self, meta=None) -> None:
        """Already begun by the session."""

    def commit(self, success=None, **meta) -> None:
        """Committed by the session (stop_and_save)."""


def camera_frames(obs: dict) -> dict[str, np.ndarray]:
    """The image entries of an observation (H, W, 3) uint8, by stream name."""
    return {k: v for k, v in obs.items() if isinstance(v, np.ndarray) and v.ndim == 3 and v.dtype == np.uint8}


class DeviceSession:
    """See the module docstring.

    device / keys: connected devices with read(t) -> TeleopCommand (robot_rl.hardware.teleop); of `keys`
    only the session events are used. The caller opens and closes the devices and the view.
    recorder: begin(meta), on_step(obs, action, reward, info), end(success), writing through a SessionSink
    of `session` (robot_rl.sim.episode_recorder.EpisodeRecorder). view: a robot_rl.runtime.live_view.LiveView or None.
    `on_reply(text)` hears every session-key answer.
    """

    def __init__(self, device, env, session: RecordingSession, recorder, keys=None, view=None,
                 clock: Callable[[], float] = now, on_reply: Callable[[str], None] | None = None) -> None:
        self.device, self.env, self.session, self.recorder = device, env, session, recorder
        self.keys, self.view, self.clock, self.on_reply = keys, view, clock, on_reply
        self.scale = ActionScale.of_env(env)
        self.replies: list[str] = []
        self.ticks = 0
        self.last: TeleopCommand | None = None
        self.obs: dict = {}
        self.info: dict = {}
        self._recording = False
        self._closing = False
        session.listeners.append(self._on_episode)

    def open(self) -> None:
        """Reset the env for the first episode."""
        self.obs, self.info = self.env.reset()

    def _on_episode(self, event: str, episode: int) -> None:
        if event == "begin":
            self._recording = True
            self.recorder.begin(None)
            self.recorder.on_step(self.obs, None, 0.0, self.info)   # the scene as the episode starts
            return
        self._recording = False
        self.recorder.end(None)
        if not self._closing:
            self.obs, self.info = self.env.reset()

    def tick(self) -> dict:
        """One control period: device -> session keys -> action -> env step -> recording. Returns the signals."""
        t = self.clock()
        cmd = self.device.read(t)
        self.last = cmd
        events = list(cmd.events) + (list(self.keys.read(t).events) if self.keys is not None else [])
        for e in events:
            name = SESSION_KEYS.get(e.kind)
            if name is not None:
                reply = getattr(self.session, name)()
                self._reply(f"{name}: {'ok' if reply.success else 'refused'}: {reply.message}")
        action = self.scale.action(cmd)
        self.obs, reward, _, _, self.info = self.env.step(action)
        self.ticks += 1
        if self._recording:
            self.recorder.on_step(self.obs, action, reward, self.info)
        signals = self.signals(self.session.tick(), cmd)
        if self.view is not None:
            self.view.update(camera_frames(self.obs), signals)
        return signals

    def _reply(self, text: str) -> None:
        self.replies = (self.replies + [text])[-5:]
        if self.on_reply is not None:
            self.on_reply(text)

    def signals(self, status: dict, cmd: TeleopCommand) -> dict:
        """What the operator watches: episode state and timing, device state, data health, EE pose."""
        return {
            "state": status["state"],
            "episode": status["episode"],
            "elapsed_s": status["elapsed_s"],
            "reset_left_s": status["reset_remaining_s"],
            "label": LABELS[status["label"]],
            "saved": status["episodes_saved"] + status["episodes_pending"],
            "discarded": status["episodes_discarded"],
            "deadman": cmd.enabled,
            "gripper": "closed" if cmd.gripper_closed else "open",
            "intervention": cmd.intervention,
            "dropped": sum(status["dropped"].values()),
            "missing": sum(status["missing"].values()),
            "ee_pos": self.obs.get("ee_pos"),
            "ee_quat": self.obs.get("ee_quat"),
            "last": self.replies[-1] if self.replies else "",
        }

    def run(self, episodes: int, rate_hz: float | None = None,
            on_tick: Callable[[dict], None] | None = None) -> RateLoop | None:
        """Tick until `episodes` episodes are saved (Ctrl-C ends earlier). rate_hz paces the ticks on the wall
        clock (the operator's real time); None runs as fast as the env steps (replayed input)."""
        rate = RateLoop(rate_hz) if rate_hz else None
        while True:
            signals = self.tick()
            if on_tick is not None:
                on_tick(signals)
            if signals["saved"] >= episodes and signals["state"] != "recording":
                return rate
            if rate is not None:
                rate.wait()

    def close(self) -> None:
        """Save an open episode and wait for pending saves (devices and view stay the caller's to close)."""
        self._closing = True
        self.session.close(save_open=True)
