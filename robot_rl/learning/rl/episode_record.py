"""One online episode as typed arrays: what an actor sends to the learner and what lands in its store.

Step arrays: obs features (T + 1, D) float32 per key (an image feature: (T + 1, H, W, C) uint8 frames in
the env's layout), actions (T, Da), rewards (T,), interventions (T,);
chunk arrays: extras (n_chunks, ...) (e.g. base actions, noise, log-probs). In an episode store it
becomes streams `obs_<key>`, `action`, `reward`, `intervention` at the policy rate and `x_<extra>`
at the chunk rate (frames png, lossless), read back row for row, so a learner that crashed rebuilds exactly the
transitions it had (`transitions()` applies the one chunk rule of robot_rl.learning.rl.transitions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_rl.core.errors import RobotRLError, StoreError
from robot_rl.core.spec import PolicySpec
from robot_rl.learning.rl.transitions import Transitions, chunk_transitions

_STEP = ("actions", "rewards", "interventions")


class InvalidEpisode(RobotRLError, ValueError):
    """An episode record that is malformed or does not fit its run (a learner rejects it, saying why)."""


@dataclass
class EpisodeRecord:
    obs: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    interventions: np.ndarray
    terminated: bool
    success: bool
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)       # actor_id, seq, weights_version, seed (JSON-able)

    @property
    def env_steps(self) -> int:
        return len(self.actions)

    def transitions(self, spec: PolicySpec, gamma: float, source: str = "online", episode: int = 0) -> Transitions:
        return chunk_transitions(self.obs, self.actions, self.rewards, self.terminated, spec, gamma,
                                 interventions=self.interventions, source=source, episode=episode,
                                 success=self.success, extras=self.extras)

    # ---- flat typed arrays (the wire format: safetensors-compatible, never pickled) -------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {f"obs.{k}": np.ascontiguousarray(v, obs_dtype(v)) for k, v in self.obs.items()}
        out |= {f"extras.{k}": np.ascontiguousarray(v) for k, v in self.extras.items()}
        out["actions"] = np.ascontiguousarray(self.actions, np.float32)
        out["rewards"] = np.ascontiguousarray(self.rewards, np.float32)
        out["interventions"] = np.ascontiguousarray(self.interventions, np.uint8)
        out["flags"] = np.array([self.terminated, self.success], np.uint8)
        return out

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray], meta: dict | None = None, source: str = "record") -> "EpisodeRecord":
        """The record of `to_arrays` output; InvalidEpisode naming the array when the set is not one."""
        unknown = sorted(k for k in arrays if k not in (*_STEP, "flags") and not k.startswith(("obs.", "extras.")))
        missing = [k for k in (*_STEP, "flags") if k not in arrays]
        obs = {k[4:]: v for k, v in arrays.items() if k.startswith("obs.")}
        if missing or not obs:
            raise InvalidEpisode(f"{source}: episode record lacks {missing or ['obs.<key>']} (has {sorted(arrays)})")
        if unknown:
            raise InvalidEpisode(f"{source}: episode record has unknown arrays {unknown} (has {sorted(arrays)})")
        flat = [k for k, v in arrays.items() if np.ndim(v) == 0]
        if flat:
            raise InvalidEpisode(f"{source}: arrays {flat} are scalars; every array has a leading time/chunk axis")
        T = len(arrays["actions"])
        bad = {k: len(v) for k, v in obs.items() if len(v) != T + 1}
        if bad or len(arrays["rewards"]) != T or len(arrays["interventions"]) != T:
            raise InvalidEpisode(f"{source}: inconsistent episode record: {T} actions, {len(arrays['rewards'])} "
                                 f"rewards, {len(arrays['interventions'])} intervention flags, obs lengths "
                                 f"{ {k: len(v) for k, v in obs.items()} } (expected T + 1 = {T + 1})")
        for name, shape in (("interventions", (T,)), ("flags", (2,))):
            v = arrays[name]
            if v.shape != shape or v.dtype not in (np.uint8, np.bool_) or v.astype(np.uint8).max(initial=0) > 1:
                raise InvalidEpisode(f"{source}: {name} must be {shape} flags of 0/1 (uint8), got {v.dtype} "
                                     f"{v.shape} with values {np.unique(v)[:5].tolist()}")
        flags = arrays["flags"]
        return EpisodeRecord(obs, arrays["actions"], arrays["rewards"], arrays["interventions"].astype(bool),
                             bool(flags[0]), bool(flags[1]),
                             {k[7:]: v for k, v in arrays.items() if k.startswith("extras.")}, dict(meta or {}))

    def check(self, spec: PolicySpec, extras: dict[str, tuple[tuple[int, ...], str]] | None = None,
              source: str = "episode") -> None:
        """Raise InvalidEpisode naming the first array that does not fit the run: obs keys and shapes of
        `spec` (T + 1 steps; images uint8 (H, W, C)), actions (T, action_dim), T >= 1, float32 otherwise,
        every value finite, and
        one row of each extra per executed chunk with the per-chunk (shape, dtype) of `extras` (what the
        run's algorithm returns from act(); None: any). Whatever passes, the learner can store and learn from."""
        T, n_chunks = self.env_steps, -(-self.env_steps // spec.n_action_steps)
        if T < 1:
            raise InvalidEpisode(f"{source}: no actions (an episode needs at least one env step)")
        want = {f.key: ((T + 1, *feature_layout(f)[0]), feature_layout(f)[1]) for f in spec.obs}
        if set(self.obs) != set(want):
            raise InvalidEpisode(f"{source}: observation keys {sorted(self.obs)}, the run's spec has {sorted(want)}")
        arrays = {f"obs[{k!r}]": (self.obs[k], shape, dtype) for k, (shape, dtype) in want.items()}
        arrays |= {"actions": (self.actions, (T, spec.action_dim), "float32"),
                   "rewards": (self.rewards, (T,), "float32")}
        if extras is not None and set(self.extras) != set(extras):
            raise InvalidEpisode(f"{source}: extras {sorted(self.extras)}, the run's algorithm sends {sorted(extras)}")
        for k, v in self.extras.items():
            shape, dtype = extras[k] if extras is not None else (v.shape[1:], str(v.dtype))
            arrays[f"extras[{k!r}]"] = (v, (n_chunks, *shape), dtype)
        for name, (v, shape, dtype) in arrays.items():
            if v.shape != shape or str(v.dtype) != dtype:
                raise InvalidEpisode(f"{source}: {name} is {v.dtype} {tuple(v.shape)}, expected {dtype} {shape}"
                                     f" ({T} env steps, {n_chunks} chunks of {spec.n_action_steps})")
            if v.dtype.kind not in "biuf":
                raise InvalidEpisode(f"{source}: {name} has dtype {v.dtype}; only numbers are learnable")
            if v.dtype.kind == "f" and not np.isfinite(v).all():
                bad = np.argwhere(~np.isfinite(v))[0].tolist()
                raise InvalidEpisode(f"{source}: {name} holds a non-finite value ({v[tuple(bad)]} at index {bad})")


def feature_layout(f) -> tuple[tuple[int, ...], str]:
    """(per-step shape, dtype) of a spec feature in an episode record: low-dim (D,) float32, an image
    (H, W, C) uint8 (the env's layout; the spec describes it as the model's (C, H, W))."""
    if f.kind == "low_dim":
        return tuple(f.shape), "float32"
    C, H, W = f.shape
    return (H, W, C), "uint8"


def obs_dtype(v: np.ndarray):
    """uint8 frames stay uint8; every other observation feature is float32."""
    return np.uint8 if np.asarray(v).dtype == np.uint8 else np.float32


# ---- episode store ----------------------------------------------------------------------------
def record_streams(record: EpisodeRecord, rate_hz: float, n_action_steps: int):
    """StreamSpecs of a learner store for records shaped like `record`."""
    from robot_rl.data.schema import StreamSpec

    S = StreamSpec
    specs = [S(f"obs_{k}", "uint8", v.shape[1:], rate_hz, codec="png", interp="hold", description=f"camera frames {k}")
             if obs_dtype(v) == np.uint8 else
             S(f"obs_{k}", "float32", v.shape[1:], rate_hz, description=f"policy feature {k}")
             for k, v in record.obs.items()]
    specs += [S("action", "float32", record.actions.shape[1:], rate_hz, interp="hold",
                description="executed action (raw units)"),
              S("reward", "float32", (1,), rate_hz, interp="hold", description="reward of the step"),
              S("intervention", "uint8", (1,), rate_hz, interp="hold", description="step taken over by a corrector")]
    specs += [S(f"x_{k}", str(v.dtype), v.shape[1:] or (1,), rate_hz / n_action_steps, interp="hold",
                description=f"algorithm data per chunk: {k}") for k, v in record.extras.items()]
    return specs


def write_record(writer, record: EpisodeRecord, rate_hz: float, n_action_steps: int, meta) -> int:
    """Append `record` as one episode (committed, durable on return). Returns its episode index."""
    dt, chunk_dt = 1.0 / rate_hz, n_action_steps / rate_hz
    writer.begin_episode(meta)
    ok = True
    for k, v in record.obs.items():
        ok &= all(writer.append(f"obs_{k}", x, i * dt) for i, x in enumerate(v))
    for i in range(record.env_steps):
        ok &= writer.append("action", record.actions[i], i * dt)
        ok &= writer.append("reward", np.float32([record.rewards[i]]), (i + 1) * dt)
        ok &= writer.append("intervention", np.uint8([record.interventions[i]]), i * dt)
    for k, v in record.extras.items():
        ok &= all(writer.append(f"x_{k}", np.asarray(x).reshape(writer.store.streams[f"x_{k}"].shape), i * chunk_dt)
                  for i, x in enumerate(v))
    if not ok:
        writer.discard()
        raise StoreError(f"{writer.path}: the writer dropped samples of an online episode (queue full); not committed")
    shapes = {k: list(v.shape[1:]) for k, v in record.extras.items()}
    return int(writer.commit(success=record.success, terminated=record.terminated, extras_shapes=shapes,
                             **record.meta).result())


def read_record(store, episode: int) -> EpisodeRecord:
    """The EpisodeRecord stored as `episode` by write_record."""
    meta = store.episode_meta(episode)
    extra = dict(meta.get("extra") or {})
    arrays = {f"obs.{s[4:]}": store.read(s, episode)[0] for s in store.streams if s.startswith("obs_")}
    shapes = extra.pop("extras_shapes", {})
    for s in store.streams:
        if s.startswith("x_"):
            v = store.read(s, episode)[0]
            arrays[f"extras.{s[2:]}"] = v.reshape(len(v), *shapes.get(s[2:], v.shape[1:]))
    arrays["actions"] = store.read("action", episode)[0]
    arrays["rewards"] = store.read("reward", episode)[0].reshape(-1)
    arrays["interventions"] = store.read("intervention", episode)[0].reshape(-1)
    arrays["flags"] = np.array([bool(extra.pop("terminated", False)), bool(meta.get("success"))], np.uint8)
    return EpisodeRecord.from_arrays(arrays, extra, source=f"{store.path}[episode {episode}]")
