"""Twin test harness: step a twin tick by tick and record what safety assertions need."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from robot_rl.core.types import EETarget
from robot_rl.sim.mujoco_twin import Twin


@pytest.fixture
def make_twin():
    """make_twin(profile=None, **safety_limits) -> a twin cell without task objects (closed after the test)."""
    made = []

    def _make(profile: str | None = None, **limits) -> Twin:
        tw = Twin(task=None, seed=0, profile=profile)
        if limits:
            tw.rig.safety = replace(tw.rig.safety, **limits)
        tw.reset(seed=0)
        made.append(tw)
        return tw

    yield _make
    for tw in made:
        tw.close()


def tick(twin: Twin, backend, targets=None) -> np.ndarray:
    """One controller tick as Twin.run_ticks does it: push `targets(now)` if it returns an EETarget, read the
    state from `backend`, and send the torque, or the brake when the controller asks for it. Returns the torque."""
    ctrl, now = twin.controller, twin.now
    if targets is not None:
        tgt = targets(now)
        if tgt is not None:
            ctrl.push_target(tgt, now)
    tau = ctrl.tick(backend.read_state(), now)
    twin.arm.command(ctrl.gripper)
    if ctrl.brake_requested:
        backend.brake()
    else:
        backend.write_torque(tau)
    return tau


class Recorder:
    """Steps a twin tick by tick and records what every safety assertion needs."""

    def __init__(self, twin: Twin, backend=None) -> None:
        self.twin = twin
        self.backend = backend or twin.arm
        self.tau, self.q, self.ee, self.dq, self.mode, self.f = [], [], [], [], [], []

    def ticks(self, n: int, targets=None) -> None:
        """Run n ticks; `targets(now)` may return an EETarget (or None) to push before a tick."""
        tw, ctrl = self.twin, self.twin.controller
        for _ in range(n):
            self.tau.append(tick(tw, self.backend, targets).copy())
            st = tw.arm.state
            self.q.append(st.q.copy())
            self.dq.append(st.dq.copy())
            self.ee.append(st.ee_pos.copy())
            self.f.append(st.f_ext[:3].copy())
            self.mode.append(int(ctrl.mode))

    def max_torque_step(self) -> float:
        t = np.array(self.tau)
        return float(np.abs(np.diff(t, axis=0)).max()) if len(t) > 1 else 0.0

    def joint_limits_respected(self) -> bool:
        q = np.array(self.q)
        L = self.twin.controller.limits
        return bool(np.all(q >= np.array(L.q_min) - 1e-3) and np.all(q <= np.array(L.q_max) + 1e-3))


def target_at(twin: Twin, pos, t_ahead: float = 0.05, gripper: float = 0.0) -> EETarget:
    return EETarget(twin.now + t_ahead, np.asarray(pos, dtype=np.float64), twin.arm.state.ee_quat.copy(), gripper)
