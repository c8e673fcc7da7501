"""A twin episode with known device latencies, for `calibrate latency` on synthetic data.

The arm follows a scripted sequence of start-stop moves (random translations and rotations, pauses
between them, the gripper opening and closing) so that the motion has sharp, non-periodic features. The
episode is recorded through the ordinary EpisodeRecorder; a writer proxy stamps the chosen streams
`delay` seconds after their sample time, exactly like a device whose data arrives late. The ground truth
of a camera's latency is that injected delay; the arm's and gripper's command-to-motion lags come from
the twin's controller and servo dynamics and have no closed form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from robot_rl.data.writer import EpisodeWriter


class DelayedStreams:
    """EpisodeWriter proxy: samples of `delays` streams are stamped `delays[stream]` seconds later."""

    def __init__(self, writer, delays: dict[str, float]) -> None:
        self.writer, self.delays = writer, dict(delays)

    def append(self, stream: str, value, t) -> bool:
        return self.writer.append(stream, value, t + self.delays.get(stream, 0.0))

    def __getattr__(self, name: str):
        return getattr(self.writer, name)


class LatencyTargetTask:
    """Twin 'task' for the latency episode: a ChArUco board on the table under the arm, as a textured
    target for the cameras (like the board a user puts in view). Never succeeds, never ends."""

    name = "latency_target"
    reset_finger_opening = None

    def __init__(self, board) -> None:
        from robot_rl.sim.tasks import TaskParams

        self.board, self.p = board, TaskParams(time_limit=float("inf"))
        self.model = self.data = None

    def build(self, spec) -> None:
        from robot_rl.calibration.synthetic_board import add_board

        body = spec.worldbody.add_body(name="latency_target", pos=[0.5, 0.0, 0.0005])
        add_board(spec, self.board, body, name="latency_target")

    def bind(self, model, data) -> None:
        self.model, self.data = model, data

    def reset(self, rng, tcp_pos) -> None:
        pass

    def evaluate(self, ee_pos, gripper_width) -> tuple[float, bool]:
        return 0.0, False

    def privileged_state(self) -> np.ndarray:
        return np.zeros(0, np.float32)


def scripted_motion(rng: np.random.Generator, duration_s: float, hz: float) -> np.ndarray:
    """(T, 7) delta actions: moves of 0.25-0.7 s (translation at 15-50 % of full speed, rotation at 30-100 %,
    in random directions), pauses of 0.15-0.5 s between them, the gripper toggled every 1-2 s. Moves turn
    back towards the start pose beyond 8 cm or 0.3 rad. Rotations make strong image motion for a camera
    on the hand whatever the scene depth, which is what times the camera best."""
    n = int(round(duration_s * hz))
    actions = np.zeros((n, 7))
    pos, rot, i = np.zeros(3), np.zeros(3), 0
    while i < n:
        m = int(rng.uniform(0.25, 0.7) * hz)
        for k, (acc, limit, top, per_step) in enumerate(((pos, 0.08, 0.5, 0.4), (rot, 0.3, 1.0, 1.5))):
            d = rng.normal(size=3)
            if np.linalg.norm(acc) > limit:
                d = -acc / np.linalg.norm(acc) + 0.3 * d
            d /= np.linalg.norm(d)
            a = d * rng.uniform(0.3, 1.0) * top
            actions[i:i + m, 3 * k:3 * k + 3] = a
            acc += a * min(m, n - i) / hz * per_step      # full deflection: 0.4 m/s, 1.5 rad/s
        i += m + int(rng.uniform(0.15, 0.5) * hz)
    grip, next_toggle = -1.0, rng.uniform(1.0, 2.0)
    for k in range(n):
        if k / hz >= next_toggle:
            grip, next_toggle = -grip, next_toggle + rng.uniform(1.0, 2.0)
        actions[k, 6] = grip
    return actions


@dataclass
class LatencyEpisode:
    store: Path
    camera_delays_s: dict[str, float]          # injected: stream -> s (the ground truth)
    state_delays_s: dict[str, float] = field(default_factory=dict)


def record_latency_episode(store_path: str | Path, camera_delays_s: dict[str, float] | None = None,
                           duration_s: float = 6.0, seed: int = 0, cameras=("wrist",),
                           state_delays_s: dict[str, float] | None = None, board: str = "charuco_12x9_30mm",
                           progress: bool = False) -> LatencyEpisode:
    """Record one scripted twin episode into a new store at store_path with the given injected delays
    (camera stream name such as 'cam_wrist_rgb' -> s; state stream -> s)."""
    from robot_rl.core.progress import progress_bar

    from robot_rl.data.schema import EpisodeMeta
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.sim.env import TwinEnv
    from robot_rl.sim.episode_recorder import EpisodeRecorder, twin_stream_specs

    camera_delays_s = dict(camera_delays_s if camera_delays_s is not None else {f"cam_{c}_rgb": 0.05 for c in cameras})
    state_delays_s = dict(state_delays_s or {})
    from robot_rl.calibration.boards import load_board

    env = TwinEnv(task=LatencyTargetTask(load_board(board)), cameras=list(cameras), privileged=False, seed=seed)
    try:
        store = EpisodeStore.create(store_path, twin_stream_specs(env))
        actions = scripted_motion(np.random.default_rng(seed), duration_s, env.policy_hz)
        with EpisodeWriter(store) as w:
            rec = EpisodeRecorder(env, DelayedStreams(w, camera_delays_s | state_delays_s))
            obs, info = env.reset(seed=seed)
            rec.begin(EpisodeMeta(task="latency_calibration", source="scripted", rig=env.twin.rig.name,
                                  calibration_id=env.twin.calibration_id,
                                  notes=f"injected delays (s): {camera_delays_s | state_delays_s}"))
            rec.on_step(obs, None, 0.0, info)
            for a in progress_bar(actions, desc="twin latency episode", unit="step", enabled=progress):
                obs, reward, _, _, info = env.step(a)
                rec.on_step(obs, a, reward, info)
            rec.end(success=True)
    finally:
        env.close()
    return LatencyEpisode(Path(store_path), camera_delays_s, state_delays_s)
