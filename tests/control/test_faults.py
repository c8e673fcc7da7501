"""Fault injection in the twin: each fault ends in a safe, reported outcome.

Common safe-outcome checks: joints stay inside their limits, the commanded torque never changes by
more than max_torque_rate per tick, and the fault is counted and reported.
"""

from __future__ import annotations

import numpy as np

from robot_rl.control.controller import ControllerMode, Fault
from robot_rl.core.types import EETarget

from .twin_harness import Recorder, target_at


def _assert_safe(rec: Recorder) -> None:
    L = rec.twin.controller.limits
    assert rec.joint_limits_respected()
    assert rec.max_torque_step() <= L.max_torque_rate + 1e-9


def test_target_stream_stopping_mid_motion_holds_the_pose_within_timeout_plus_ramp(make_twin):
    tw = make_twin()
    rec = Recorder(tw)
    start = tw.arm.state.ee_pos.copy()
    v = np.array([0.0, 0.15, 0.0])                 # a 15 cm/s motion, streamed at 20 Hz ...
    t0 = tw.now
    stream = lambda now: target_at(tw, start + v * (now - t0 + 0.05)) if round((now - t0) * 1000) % 50 == 0 else None
    rec.ticks(600, stream)
    assert tw.controller.mode == ControllerMode.TRACKING
    # ... then the stream stops
    L = tw.controller.limits
    n_settle = int((L.target_timeout + L.hold_ramp_time) / tw.dt) + 200
    rec.ticks(n_settle)
    assert tw.controller.mode == ControllerMode.HOLD
    assert tw.controller.counts[Fault.TARGET_TIMEOUT] == 1
    assert np.linalg.norm(tw.arm.state.dq) < 0.02                       # at rest
    ee = np.array(rec.ee)
    assert np.linalg.norm(ee[-1] - ee[-100]) < 5e-4                     # holding still
    assert ee[-1][1] - start[1] < 0.15 * (0.6 + 0.05) + L.max_ee_speed * (L.target_timeout + L.hold_ramp_time)
    _assert_safe(rec)


def test_nan_target_is_rejected_counted_and_never_moves_the_arm(make_twin):
    tw = make_twin()
    rec = Recorder(tw)
    start = tw.arm.state.ee_pos.copy()
    bad = EETarget(tw.now + 0.05, np.array([np.nan, 0.0, 0.3]), np.array([1.0, 0, 0, 0]))
    assert tw.controller.push_target(bad, tw.now) is False
    inf_quat = EETarget(tw.now + 0.05, start, np.array([np.inf, 0, 0, 0]))
    assert tw.controller.push_target(inf_quat, tw.now) is False
    rec.ticks(300)
    assert tw.controller.counts[Fault.TARGET_NONFINITE] == 2
    assert tw.controller.last_fault.fault == Fault.TARGET_NONFINITE
    assert np.linalg.norm(tw.arm.state.ee_pos - start) < 2e-3
    _assert_safe(rec)


def test_target_outside_workspace_is_clipped_to_the_box(make_twin):
    tw = make_twin()
    rec = Recorder(tw)
    L = tw.controller.limits
    start = tw.arm.state.ee_pos.copy()
    outside = start + np.array([0.0, 0.0, 0.5])                      # 0.99 m: above workspace_max z
    # approach in steps shorter than max_target_jump so only the workspace check acts
    goal = lambda now: target_at(tw, start + np.array([0, 0, min(0.5, 0.08 * (1 + (now - t0) // 0.05))]))
    t0 = tw.now
    rec.ticks(3000, lambda now: goal(now) if round((now - t0) * 1000) % 50 == 0 else None)
    assert tw.controller.counts[Fault.TARGET_OUTSIDE_WORKSPACE] > 0
    ee = np.array(rec.ee)
    assert ee[:, 2].max() <= L.workspace_max[2] + 0.015                # transient overshoot from 0.5 m/s
    assert abs(tw.arm.state.ee_pos[2] - L.workspace_max[2]) < 0.01    # parked at the boundary
    assert outside[2] > L.workspace_max[2]
    _assert_safe(rec)


def test_a_30cm_target_jump_is_rejected_and_reported(make_twin):
    tw = make_twin()
    rec = Recorder(tw)
    start = tw.arm.state.ee_pos.copy()
    accepted = tw.controller.push_target(target_at(tw, start + np.array([0.3, 0.0, 0.0])), tw.now)
    rec.ticks(500)
    assert accepted is False
    assert tw.controller.counts[Fault.TARGET_JUMP] == 1
    assert "jumps 0.300 m" in tw.controller.last_fault.detail
    assert np.abs(np.array(rec.ee) - start).max() < 2e-3
    _assert_safe(rec)


def test_pressing_into_the_table_triggers_force_relief_and_bounds_the_contact_force(make_twin):
    # allow targets below the table top so the arm can actually be commanded into it
    tw = make_twin(workspace_min=(0.15, -0.45, -0.10), max_external_force=30.0)
    rec = Recorder(tw)
    above = np.array([0.5, 0.0, 0.12])
    t0 = tw.now
    start = tw.arm.state.ee_pos.copy()
    path = lambda now: target_at(tw, start + (above - start) * min(1.0, (now - t0 + 0.05) / 1.5))
    rec.ticks(2000, lambda now: path(now) if round((now - t0) * 1000) % 50 == 0 else None)
    t0 = tw.now
    down = lambda now: target_at(tw, [above[0], above[1], max(-0.1, above[2] - 0.2 * (now - t0 + 0.05))])
    rec.ticks(2000, lambda now: down(now) if round((now - t0) * 1000) % 50 == 0 else None)
    L = tw.controller.limits
    f = np.linalg.norm(np.array(rec.f), axis=1)
    assert tw.controller.counts[Fault.EXTERNAL_FORCE] > 0
    assert any(r.fault == Fault.EXTERNAL_FORCE for r in tw.controller.faults)
    # in contact the law pushes into the table by at most max_contact_force (the spring alone could: K * 3 cm = 60 N)
    assert np.median(f[-500:]) <= L.max_contact_force + 1.0
    assert np.array(rec.ee)[:, 2].min() > -0.005                     # never through the table
    _assert_safe(rec)


def test_estop_mid_motion_brakes_to_rest_and_stays_latched_until_reset(make_twin):
    tw = make_twin()
    rec = Recorder(tw)
    start = tw.arm.state.ee_pos.copy()
    t0 = tw.now
    rec.ticks(400, lambda now: target_at(tw, start + [0.0, 0.3 * (now - t0 + 0.05), 0.0])
              if round((now - t0) * 1000) % 50 == 0 else None)
    assert np.linalg.norm(tw.arm.state.dq) > 0.1                      # moving
    tw.controller.estop("test")
    rec.ticks(1)
    assert tw.controller.mode == ControllerMode.STOPPED
    rec.ticks(500, lambda now: target_at(tw, start + [0.0, 0.1, 0.0]))  # targets keep coming: ignored
    assert tw.controller.mode == ControllerMode.STOPPED
    assert tw.controller.counts[Fault.ESTOP] == 1
    assert np.linalg.norm(tw.arm.state.dq) < 0.05                     # braked to rest within 0.5 s
    _assert_safe(rec)
    tw.controller.reset()
    rec.ticks(200)
    assert tw.controller.mode == ControllerMode.HOLD


def test_state_that_stops_updating_stops_the_controller_within_the_timeout(make_twin):
    tw = make_twin()

    class FrozenAfter:
        """Backend whose state freezes (same sample, same timestamp) after n reads."""

        def __init__(self, arm, n):
            self.arm, self.n, self.frozen = arm, n, None

        def read_state(self):
            s = self.arm.read_state()
            self.n -= 1
            if self.n <= 0:
                self.frozen = self.frozen or s.copy()
                return self.frozen
            return s

        def write_torque(self, tau):
            self.arm.write_torque(tau)

        def brake(self):
            self.arm.brake()

    rec = Recorder(tw, FrozenAfter(tw.arm, 200))
    rec.ticks(200)
    L = tw.controller.limits
    rec.ticks(int(L.state_timeout / tw.dt) + 2)
    assert tw.controller.mode == ControllerMode.STOPPED
    assert tw.controller.counts[Fault.STATE_STALE] == 1
    assert tw.controller.last_fault.fault == Fault.STATE_STALE
    assert tw.controller.brake_requested                              # the arm is asked to brake itself
    rec.ticks(200)
    assert np.abs(rec.tau[-1]).max() == 0.0                           # torque ramped out ...
    _assert_safe(rec)                                                 # ... at the bounded rate


def test_torque_rate_stays_bounded_through_a_profile_switch(make_twin):
    tw = make_twin()
    rec = Recorder(tw)
    start = tw.arm.state.ee_pos.copy()
    tw.controller.set_profile("compliant")
    tw.controller.push_target(target_at(tw, start + [0.05, 0.0, 0.0], t_ahead=0.2), tw.now)
    rec.ticks(300)
    tw.controller.set_profile("precise")
    rec.ticks(700)
    assert np.linalg.norm(tw.arm.state.ee_pos - (start + [0.05, 0, 0])) < 0.005
    _assert_safe(rec)
