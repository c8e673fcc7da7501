"""Observation histories for distillation: a growable buffer and twin rollouts that fill it.

`ObsBuffer` holds observation histories {key: (N, n_obs, *shape)} (raw units, images HWC uint8 as the
twin gives them, each frame stored once) and, for DAgger, the teacher's executable actions per history
(N, n_action_steps, Da) in raw units. `collect()` rolls out a beta-mixture of teacher and student in the twin (one coin per
chunk: the teacher's chunk with probability beta, else the student's) and labels visited histories
with the teacher's `act()` (the black-box policy interface: reset() / act(obs) -> ActionChunk).
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from robot_rl.core.errors import CheckpointError
from robot_rl.core.spec import PolicySpec
from robot_rl.learning.evaluate import is_success

LABEL = "__teacher_actions__"  # buffer key of the teacher's labels (no observation key can be this)


class ObsBuffer:
    """Aggregated observation histories (+ optional teacher labels), sampled uniformly.

    Camera frames are kept once each, with every history holding n_obs_steps indices into them: consecutive
    histories share all but one frame, so a labelled step costs one frame per camera (49 kB at 128 x 128),
    not n_obs_steps of them."""

    def __init__(self, spec: PolicySpec):
        self.spec = spec
        self._lists: dict[str, list[np.ndarray]] = collections.defaultdict(list)    # low-dim histories, labels
        self._frames: dict[str, list[np.ndarray]] = collections.defaultdict(list)   # image key -> distinct frames
        self._index: dict[str, list[np.ndarray]] = collections.defaultdict(list)    # image key -> (n_obs,) ids
        self._n = 0
        self._tensors: dict[str, torch.Tensor] | None = None

    def add(self, history: Mapping[str, np.ndarray], label: np.ndarray | None = None) -> None:
        """history: {obs key: (n_obs, *shape)}; label: (n_action_steps, Da) raw teacher actions or None."""
        if label is not None:
            label = np.asarray(label, dtype=np.float32)
            expected = (self.spec.n_action_steps, self.spec.action_dim)
            if label.shape != expected:
                raise ValueError(f"teacher act() returned actions of shape {label.shape}, expected {expected} "
                                 f"(n_action_steps, action_dim) of the student's spec")
        for f in self.spec.obs:
            x = np.asarray(history[f.key])
            if f.kind == "low_dim":
                self._lists[f.key].append(x)
            else:
                self._index[f.key].append(np.array([self._frame_id(f.key, frame) for frame in x], np.int64))
        if label is not None:
            self._lists[LABEL].append(label)
        self._n += 1
        self._tensors = None

    def _frame_id(self, key: str, frame: np.ndarray) -> int:
        """The index of `frame` among the key's frames: one of the last few (a history repeats its
        predecessor's frames), else a new copy."""
        frames = self._frames[key]
        for j in range(len(frames) - 1, max(-1, len(frames) - 2 - self.spec.n_obs_steps), -1):
            if np.array_equal(frames[j], frame):
                return j
        frames.append(np.array(frame))
        return len(frames) - 1

    def tensors(self) -> dict[str, torch.Tensor]:
        """Low-dim histories and labels {key: (N, ...)}, and per image key `frames/<key>` (M, *frame) and
        `index/<key>` (N, n_obs) (the form saved)."""
        if self._tensors is None:
            t = {k: torch.from_numpy(np.stack(v)) for k, v in self._lists.items() if v}
            for k in self._index:
                t[f"frames/{k}"] = torch.from_numpy(np.stack(self._frames[k]))
                t[f"index/{k}"] = torch.from_numpy(np.stack(self._index[k]))
            self._tensors = t
        return self._tensors

    def __len__(self) -> int:
        return self._n

    @property
    def labelled(self) -> bool:
        return len(self._lists[LABEL]) == len(self) > 0

    def _gather(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        t = self.tensors()
        obs = {f.key: t[f.key][idx] if f.kind == "low_dim" else t[f"frames/{f.key}"][t[f"index/{f.key}"][idx]]
               for f in self.spec.obs}
        return obs, (t[LABEL][idx] if LABEL in t else None)

    def sample(self, batch_size: int,
               generator: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """({key: (B, n_obs, *shape)}, labels (B, n_action_steps, Da) or None), drawn with replacement."""
        return self._gather(torch.randint(0, len(self), (batch_size,), generator=generator))

    def first(self, n: int) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        return self._gather(torch.arange(min(n, len(self))))

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in self.tensors().items()}, str(tmp))
        tmp.replace(path)

    def load(self, path: str | Path) -> None:
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - any parse failure is a corrupt file
            raise CheckpointError(f"{path}: unreadable distillation buffer ({e})") from None
        need = [k for f in self.spec.obs
                for k in ((f.key,) if f.kind == "low_dim" else (f"frames/{f.key}", f"index/{f.key}"))]
        missing = [k for k in need if k not in tensors]
        if missing:
            raise CheckpointError(f"{path}: buffer lacks observation arrays {missing}")
        images = {f.key for f in self.spec.obs if f.kind != "low_dim"}
        self._lists = collections.defaultdict(list, {k: list(v.numpy()) for k, v in tensors.items() if "/" not in k})
        self._frames = collections.defaultdict(list, {k: list(tensors[f"frames/{k}"].numpy()) for k in images})
        self._index = collections.defaultdict(list, {k: list(tensors[f"index/{k}"].numpy()) for k in images})
        first = next(f for f in self.spec.obs)
        self._n = len(self._lists[first.key]) if first.kind == "low_dim" else len(self._index[first.key])
        self._tensors = None


def collect(teacher, student, make_env: Callable[[], Any], spec: PolicySpec, episodes: int, seed: int,
            beta: float, buffer: ObsBuffer, label: bool = True, label_every: int = 1,
            rng: np.random.Generator | None = None) -> dict[str, float]:
    """Roll out `episodes` episodes (env seeds seed, seed+1, ...) of the beta-mixture and add visited
    histories to `buffer` (every `label_every` env steps, with teacher labels when `label`).

    The teacher is called with full histories {key: (n_obs, *shape)}, the form evaluate() uses, so its
    answer must not depend on earlier calls. Returns {episodes, env_steps, teacher_chunks, student_chunks,
    success_rate} of the rollouts.
    """
    rng = rng or np.random.default_rng(seed)
    env = make_env()
    stats = collections.Counter()
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            teacher.reset()
            if student is not None:
                student.reset()
            history = collections.deque([obs] * spec.n_obs_steps, maxlen=spec.n_obs_steps)
            queue: list[np.ndarray] = []
            done, success, steps = False, False, 0
            while not done:
                features = spec.obs_from_streams({k: np.stack([h[k] for h in history]) for k in obs})
                teacher_chunk = None
                if steps % label_every == 0:
                    teacher_chunk = teacher.act(features).actions if label else None
                    buffer.add(features, teacher_chunk)
                if not queue:  # a decision point: whose chunk runs next
                    use_teacher = student is None or rng.random() < beta
                    if use_teacher:
                        chunk = teacher_chunk if teacher_chunk is not None else teacher.act(features).actions
                    else:
                        chunk = student.act(features).actions
                    stats["teacher_chunks" if use_teacher else "student_chunks"] += 1
                    queue = list(chunk)
                obs, _, terminated, truncated, info = env.step(queue.pop(0))
                history.append(obs)
                steps += 1
                success = success or is_success(info)
                done = terminated or truncated
            stats["env_steps"] += steps
            stats["successes"] += int(success)
    finally:
        env.close()
    return {"episodes": episodes, "env_steps": stats["env_steps"], "teacher_chunks": stats["teacher_chunks"],
            "student_chunks": stats["student_chunks"], "success_rate": stats["successes"] / max(1, episodes)}
