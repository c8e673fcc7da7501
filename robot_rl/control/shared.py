"""Shared-memory channels between the 1 kHz loop process and its clients; the loop never blocks.

One `multiprocessing.shared_memory` block holds:
  header   int64[32]   commands (counters the loop compares with what it has seen) and loop counters;
  targets  float64[K, 9] single-producer/single-consumer ring of EE targets
           (t, px, py, pz, qw, qx, qy, qz, gripper); the client writes a slot, then bumps the count;
  state    float64[STATE_SIZE] seqlock-protected snapshot: the writer makes the sequence odd, copies,
           makes it even; a reader retries while it is odd or changed (the writer never waits);
  ticks    float32[R]  ring of per-tick controller compute times (us) for percentiles;
  loops    float32[R]  ring of whole-iteration times (us), every iteration.
x86-64 keeps stores in program order, and each numpy store is a separate statement, so the sequence
counter brackets the payload without explicit fences.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

from robot_rl.control.controller import N_FAULTS

TARGET_SLOTS = 256
TICK_RING = 1 << 17

# header indices
H_SHUTDOWN, H_ESTOP, H_RESET, H_PROFILE, H_PROFILE_REQ, H_TARGET_COUNT, H_STATE_SEQ, H_READY = range(8)
H_TICKS, H_DEADLINE_MISSES, H_TICK_COUNT, H_TORCH_LOADED, H_TARGETS_DROPPED, H_PID, H_FAULTED, H_REALTIME = range(8, 16)
# episode reset of a task backend: the client writes the seed, then bumps the request counter
H_EPISODE_REQ, H_EPISODE_SEED = 16, 17
# deadline-miss policy counters (loop.MissPolicy), real-time set-up flags, and a test hook: the loop
# busy-waits H_INJECT_DELAY_US at the end of its next iteration (one-shot) to inject a miss
H_MISS_HELD, H_MISS_BRAKED, H_INJECT_DELAY_US, H_MLOCKED, H_CPU, H_GC_FROZEN, H_LAW_COMPILED = range(18, 25)
# misses whose own iteration fit in one period after an on-time one: the wake-up came late (the OS or
# the hypervisor, not the loop's work); and whether the loop holds /dev/cpu_dma_latency at 0
H_MISS_LATE_WAKEUP, H_DMA_LATENCY = 25, 26
HEADER = 32
TASK_STATE_MAX = 32   # floats of a task's privileged state published with every snapshot
SCENE_MAX = 64        # floats of a simulated backend's scene (qpos, mocap poses, site positions)

# state layout: name -> (offset, size)
_FIELDS = [("t", 1), ("q", 7), ("dq", 7), ("ee_pos", 3), ("ee_quat", 4), ("tau", 7), ("f_ext", 6),
           ("gripper_width", 1), ("ref_pos", 3), ("ref_quat", 4), ("mode", 1), ("tick_us", 1),
           ("tick_us_max", 1), ("loop_us", 1), ("sim_time", 1), ("counts", N_FAULTS),
           # task backends only (zeros otherwise): episode counter and start time, the task's privileged
           # state (first task_dim floats), its dense reward and success now, and the time of the first
           # success since the episode started (0: none yet)
           ("episode", 1), ("episode_t0", 1), ("task_dim", 1), ("task_state", TASK_STATE_MAX), ("dense", 1),
           ("success", 1), ("success_t", 1),
           # simulated backends only (zeros otherwise): the scene a renderer outside the loop needs
           # (robot_rl.sim.twin_arm.pack_scene: qpos, mocap poses, site positions; the first scene_dim
           # floats) and the loop-clock time it describes
           ("scene_t", 1), ("scene_dim", 1), ("scene", SCENE_MAX)]
STATE_LAYOUT: dict[str, tuple[int, int]] = {}
_o = 0
for _n, _s in _FIELDS:
    STATE_LAYOUT[_n] = (_o, _s)
    _o += _s
STATE_SIZE = _o


@dataclass
class LoopSnapshot:
    """A consistent copy of the loop's published state (seconds on the loop clock, SI units)."""

    values: np.ndarray
    ticks: int
    deadline_misses: int

    def __getattr__(self, name: str):
        if name in STATE_LAYOUT:
            o, s = STATE_LAYOUT[name]
            return float(self.values[o]) if s == 1 else self.values[o:o + s]
        raise AttributeError(name)

    @property
    def task_obs(self) -> np.ndarray:
        """The task's privileged state (task_dim floats; empty without a task backend)."""
        o, _ = STATE_LAYOUT["task_state"]
        return self.values[o:o + int(self.values[STATE_LAYOUT["task_dim"][0]])].copy()

    @property
    def scene_state(self) -> np.ndarray:
        """The simulated scene (scene_dim floats; empty for a real arm), at loop time `scene_t`."""
        o, _ = STATE_LAYOUT["scene"]
        return self.values[o:o + int(self.values[STATE_LAYOUT["scene_dim"][0]])].copy()


class LoopChannels:
    """Create (create=True, the client) or attach to (the loop process) the shared block `name`."""

    def __init__(self, name: str | None = None, create: bool = False) -> None:
        size = HEADER * 8 + TARGET_SLOTS * 9 * 8 + (STATE_SIZE + 1) * 8 + 2 * TICK_RING * 4
        self.shm = shared_memory.SharedMemory(name=name, create=create, size=size if create else 0)
        self.owner = create
        buf = self.shm.buf
        o = 0
        self.header = np.ndarray((HEADER,), np.int64, buf, o)
        o += HEADER * 8
        self.targets = np.ndarray((TARGET_SLOTS, 9), np.float64, buf, o)
        o += TARGET_SLOTS * 9 * 8
        self.state = np.ndarray((STATE_SIZE,), np.float64, buf, o)
        o += STATE_SIZE * 8 + 8
        self.ticks = np.ndarray((TICK_RING,), np.float32, buf, o)
        o += TICK_RING * 4
        self.loops = np.ndarray((TICK_RING,), np.float32, buf, o)
        if create:
            self.header[:] = 0
        self._read_count = 0

    @property
    def name(self) -> str:
        return self.shm.name

    # -- client side
    def push_target(self, t: float, pos, quat, gripper: float) -> None:
        n = int(self.header[H_TARGET_COUNT])
        slot = self.targets[n % TARGET_SLOTS]
        slot[0] = t
        slot[1:4] = pos
        slot[4:8] = quat
        slot[8] = gripper
        self.header[H_TARGET_COUNT] = n + 1    # publish after the payload

    def read_state(self, timeout: float = 1.0) -> LoopSnapshot:
        """A consistent snapshot. Retries while the writer is mid-copy, yielding the CPU between tries
        (on a 2-core host a spinning reader would starve the very writer it waits for)."""
        h = self.header
        deadline = time.monotonic() + timeout
        while True:
            s1 = int(h[H_STATE_SEQ])
            if not s1 & 1:
                v = self.state.copy()
                if int(h[H_STATE_SEQ]) == s1:
                    return LoopSnapshot(v, int(h[H_TICKS]), int(h[H_DEADLINE_MISSES]))
            if time.monotonic() > deadline:
                raise TimeoutError(f"loop state: no consistent snapshot within {timeout} s (loop process stalled?)")
            time.sleep(0)

    def tick_times_us(self) -> np.ndarray:
        """Controller compute time of the most recent ticks (us), oldest first."""
        return self.ring_since(self.ticks, 0)[1]

    def ring_since(self, ring: np.ndarray, start: int) -> tuple[int, np.ndarray]:
        """(count now, the ring's entries from tick `start` on, oldest first; at most the last TICK_RING).
        `ring` is `ticks` or `loops`; poll more often than every TICK_RING ticks to miss none."""
        n = int(self.header[H_TICK_COUNT])
        start = max(start, n - TICK_RING, 0)
        i, j = start % TICK_RING, n % TICK_RING
        if n - start == 0:
            return n, np.zeros(0, np.float32)
        if i < j:
            return n, ring[i:j].copy()
        return n, np.concatenate([ring[i:], ring[:j]])

    # -- loop side
    def new_targets(self):
        """Yield target rows written since the last call; drops the oldest if the client lapped the ring."""
        n = int(self.header[H_TARGET_COUNT])
        if n - self._read_count > TARGET_SLOTS:
            self.header[H_TARGETS_DROPPED] += n - self._read_count - TARGET_SLOTS
            self._read_count = n - TARGET_SLOTS
        while self._read_count < n:
            yield self.targets[self._read_count % TARGET_SLOTS]
            self._read_count += 1

    def drain_targets(self) -> None:
        """Discard every target written so far (e.g. at an episode reset)."""
        self._read_count = int(self.header[H_TARGET_COUNT])

    def begin_state(self) -> np.ndarray:
        self.header[H_STATE_SEQ] += 1   # odd: write in progress
        return self.state

    def end_state(self) -> None:
        self.header[H_STATE_SEQ] += 1   # even: consistent

    def close(self) -> None:
        # drop numpy views before closing the mapping
        self.header = self.targets = self.state = self.ticks = self.loops = None
        self.shm.close()
        if self.owner:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass
