"""Online RL episodes into an episode store, through the ChunkEnv recorder hook.

`OnlineRecorder` writes every twin step of the online loop (the robot_rl.sim.episode_recorder streams, the
per-step `intervention` flag included) into <run>/online.zarr, one committed episode per rollout
(source "policy"; its success is the one the loop used, a learned detector's when there is one, with the
env's own verdict beside it as meta `true_success`), so a crashed run can rebuild its replay from the store
and later stages can train on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from robot_rl.data.schema import EpisodeMeta
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.writer import EpisodeWriter


class OnlineRecorder:
    """Use `wrap(make_env)` as run_online's env factory and pass the recorder as its `recorder`.
    An episode opens at reset and is committed at its last step; close() flushes the writer."""

    def __init__(self, path: str | Path, task: str = "", rig: str = "twin") -> None:
        self.path, self.task, self.rig = Path(path), task, rig
        self._writer = None
        self._rec = None
        self._success = False
        self._true: bool | None = None

    def wrap(self, make_env: Callable[[], Any]) -> Callable[[], Any]:
        def make():
            env = make_env()
            self.attach(env)
            return env
        return make

    def attach(self, env) -> None:
        from robot_rl.sim.gym_tasks import episode_recorder, stream_specs

        self.close()
        store = EpisodeStore.create(self.path, stream_specs(env), exist_ok=True)
        self._writer = EpisodeWriter(store, on_interrupted="discard")   # a crash's half episode is not data
        self._rec = episode_recorder(env, self._writer)

    def on_step(self, obs, action, reward, info: dict) -> None:
        if self._rec is None:
            raise RuntimeError("OnlineRecorder: no env attached; build the env through recorder.wrap(make_env)")
        if action is None:                                   # reset: a new episode
            if self._rec.active:
                self._end("online rollout (cut short)")
            self._rec.begin(EpisodeMeta(task=self.task, rig=self.rig, source="policy", notes="online rollout"))
            self._success, self._true = False, None
            self._rec.on_step(obs, None, reward, {"controller_mode": 0} | info)
            return
        self._rec.on_step(obs, action, reward, info)
        self._success |= bool(info.get("is_success", False))
        if "true_success" in info:
            self._true = bool(self._true) | bool(info["true_success"])
        if info.get("terminated") or info.get("truncated"):
            self._end("online rollout")

    def _end(self, notes: str) -> None:
        truth = {} if self._true is None else {"true_success": self._true}
        self._rec.end(self._success, notes=notes, **truth)

    def close(self) -> None:
        if self._rec is not None and self._rec.active:
            self._end("online rollout (cut short)")
        if self._writer is not None:
            self._writer.close()
        self._writer = self._rec = None
