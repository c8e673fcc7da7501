"""The compiled law + torque safety layer (robot_rl/control/_claw.c) against the Python reference.

States are recorded from twin runs that cover free motion at the speed guard, pressing into the table
(contact bound, force relief), an e-stop, a frozen (stale) and a NaN state, and joint-limit and
joint-speed hits (recorded states pushed past the limits); both laws replay the same ticks and must
command the same torques (1e-9 Nm) and report the same faults.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace

import numpy as np
import pytest

from robot_rl.control import compiled
from robot_rl.control.controller import Controller, Fault
from robot_rl.core.types import EETarget
from robot_rl.sim.mujoco_twin import Twin

claw = compiled.load()
needs_compiled = pytest.mark.skipif(claw is None, reason=f"compiled law not built: {compiled.BUILD_COMMAND}")


def _record_twin_run() -> tuple[object, list]:
    """Drive a twin (workspace floor below the table top, so contact is reachable) and record every
    input a controller sees: ('target', EETarget, now), ('tick', ArmState copy, now), ('estop',),
    ('reset',)."""
    tw = Twin(task=None, seed=0)
    tw.rig.safety = replace(tw.rig.safety, workspace_min=(0.15, -0.45, -0.10), max_external_force=30.0)
    tw.reset(seed=0)
    ctrl, arm = tw.controller, tw.arm
    events: list = []

    def run(n, target=None, state_fn=None):
        for k in range(n):
            now = tw.now
            if target is not None and k % 50 == 0:
                tgt = target(now)
                events.append(("target", tgt, now))
                ctrl.push_target(tgt, now)
            s = arm.read_state()
            if state_fn is not None:
                s = state_fn(s)
            events.append(("tick", s.copy(), now))
            tau = ctrl.tick(s, now)
            if ctrl.brake_requested:
                arm.brake()
            else:
                arm.write_torque(tau)

    quat = arm.read_state().ee_quat.copy()
    start = arm.state.ee_pos.copy()
    above = np.array([0.5, 0.0, 0.12])
    t0 = tw.now
    # fast free motion: 9 cm steps every 50 ms run into the speed guard and the torque-rate limit
    run(700, lambda now: EETarget(now + 0.05, start + (above - start) * min(1.0, (now - t0 + 0.05) / 0.5), quat, 0.0))
    t0 = tw.now
    # into the table: contact bound, then force relief (re-anchoring)
    run(900, lambda now: EETarget(now + 0.05, [0.5, 0.0, max(-0.1, 0.12 - 0.3 * (now - t0 + 0.05))], quat, 0.0))
    events.append(("estop",))
    ctrl.estop("test")
    run(60)                                                 # damping brake through the rate limit
    events.append(("reset",))
    ctrl.reset()
    run(100)
    frozen = [None]

    def freeze(s):
        frozen[0] = frozen[0] or s.copy()
        return frozen[0]

    run(60, state_fn=freeze)                                # stale: ramp to zero, brake requested
    events.append(("reset",))
    ctrl.reset()
    run(50)

    def nan(s):
        s = s.copy()
        s.dq[2] = float("nan")
        return s

    run(3, state_fn=nan)
    events.append(("reset",))
    ctrl.reset()
    run(50)
    L = tw.rig.safety

    def beyond_limits(s):                                   # joint 2 below q_min, joint 4 above q_max
        s = s.copy()
        s.q[1] = L.q_min[1] - 0.01
        s.q[3] = L.q_max[3] + 0.02
        s.q[5] = L.q_min[5] + 0.05                          # inside the margin: spring only
        s.dq[6] = 0.9 * L.dq_max[6]                         # above the speed guard, below dq_max
        return s

    run(20, state_fn=beyond_limits)

    def too_fast(s):                                        # joint 4 past its hard limit and joint 5 past dq_max
        s = beyond_limits(s)
        s.dq[4] = -1.05 * L.dq_max[4]
        return s

    run(20, state_fn=too_fast)
    events.append(("reset",))
    ctrl.reset()
    run(50)
    rig = tw.rig
    tw.close()
    return rig, events


@pytest.fixture(scope="module")
def recorded():
    return _record_twin_run()


def _replay(rig, events, law: str):
    ctrl = rig.make_controller()
    assert ctrl.law_name == law or law == "auto"
    taus, modes, errors = [], [], []
    for ev in events:
        if ev[0] == "target":
            ctrl.push_target(ev[1], ev[2])
        elif ev[0] == "estop":
            ctrl.estop("test")
        elif ev[0] == "reset":
            ctrl.reset()
        else:
            taus.append(ctrl.tick(ev[1], ev[2]).copy())
            modes.append(int(ctrl.mode))
            errors.append(ctrl.law.error.copy())
    return ctrl, np.array(taus), modes, np.array(errors)


def _python_controller(rig, law):
    c = Controller(rig.safety, rig.profile, rig.arm.get("nullspace_q"), 1.0 / rig.loop_hz, False, rig.profiles, law)
    return c


@needs_compiled
def test_compiled_and_python_law_command_the_same_torques_and_faults_on_recorded_twin_states(recorded, monkeypatch):
    rig, events = recorded
    runs = {}
    for law in ("python", "compiled"):
        monkeypatch.setattr(rig, "make_controller", lambda law=law: _python_controller(rig, law))
        runs[law] = _replay(rig, events, law)
    (cp, tp, mp, ep), (cc, tc, mc, ec) = runs["python"], runs["compiled"]
    assert cp.law_name == "python" and cc.law_name == "compiled"
    np.testing.assert_allclose(tc, tp, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ec, ep, rtol=0, atol=1e-12)
    assert mc == mp
    assert cc.counters() == cp.counters()
    assert [(f.t, f.fault, f.detail) for f in cc.faults] == [(f.t, f.fault, f.detail) for f in cp.faults]
    # the recording exercised every guard both paths must agree on
    seen = {f for f in Fault if cp.counts[f] > 0}
    assert {Fault.EXTERNAL_FORCE, Fault.ESTOP, Fault.STATE_STALE, Fault.STATE_NONFINITE, Fault.JOINT_LIMIT,
            Fault.JOINT_VELOCITY, Fault.TORQUE_RATE_LIMITED} <= seen
    details = [f.detail for f in cp.faults if f.fault == Fault.JOINT_LIMIT]
    assert any("joint2" in d and "below q_min" in d for d in details)
    # joints 2 and 4 past their limits for 20 ticks, then once more before joint 5's speed stops the scan
    assert cp.counts[Fault.JOINT_LIMIT] == 2 * 20 + 2
    assert any("joint5 |dq|=" in f.detail for f in cp.faults if f.fault == Fault.JOINT_VELOCITY)
    assert np.abs(tp).max() > 1.0                          # real torques, not an all-zero agreement


@needs_compiled
def test_profile_switch_and_plain_damping_reach_the_compiled_law(recorded, monkeypatch):
    rig, events = recorded
    ticks = [e for e in events if e[0] == "tick"][:400]
    out = {}
    for law in ("python", "compiled"):
        c = _python_controller(rig, law)
        c.set_profile("compliant")
        c.law.velocity_feedforward = False
        c.law.gravity_comp = True
        out[law] = np.array([c.tick(s, now).copy() for _, s, now in ticks])
    np.testing.assert_allclose(out["compiled"], out["python"], rtol=0, atol=1e-9)


@needs_compiled
def test_compiled_tick_allocates_nothing(recorded):
    rig, events = recorded
    s = next(e[1] for e in events if e[0] == "tick")
    c = _python_controller(rig, "compiled")
    c.tick(s, s.t)
    P, args = c.law.params, (s.q, s.dq, s.ee_pos, s.ee_quat, s.J, s.coriolis, s.gravity, s.f_ext, c.ref_pos,
                             c.ref_quat, c.ref_vel, c.tau, c._tau_raw, c.law.error, c._events)
    claw.tick(P, *args)
    before = sys.getallocatedblocks()
    for _ in range(2000):
        claw.tick(P, *args)
    assert sys.getallocatedblocks() - before < 5            # no block kept per call (2000 calls)


@needs_compiled
def test_compiled_law_names_a_wrong_array_and_the_controller_falls_back(recorded, caplog):
    rig, events = recorded
    s = next(e[1] for e in events if e[0] == "tick").copy()
    c = _python_controller(rig, "compiled")
    with pytest.raises(ValueError, match="J must be a C-contiguous float64 array of 42 values"):
        claw.tick(c.law.params, s.q, s.dq, s.ee_pos, s.ee_quat, s.J.astype(np.float32), s.coriolis, s.gravity,
                  s.f_ext, c.ref_pos, c.ref_quat, c.ref_vel, c.tau, c._tau_raw, c.law.error, c._events)
    s.J = np.asfortranarray(s.J)                            # a backend with a column-major Jacobian
    ref = _python_controller(rig, "python")
    with caplog.at_level(logging.ERROR):
        tau = c.tick(s, s.t).copy()
    assert c.law_name == "python" and "refused this backend's ArmState" in caplog.text
    np.testing.assert_allclose(tau, ref.tick(s, s.t), rtol=0, atol=1e-12)


def test_without_the_compiled_module_the_python_law_runs_with_one_log_line(monkeypatch, caplog):
    monkeypatch.setattr(compiled, "_loaded", None)
    monkeypatch.setattr(compiled, "_reported", False)
    monkeypatch.setitem(sys.modules, "robot_rl.control._claw", None)     # import fails as if never built
    with caplog.at_level(logging.WARNING):
        c1, c2 = Controller(), Controller()
    assert c1.law_name == c2.law_name == "python"
    lines = [r for r in caplog.records if "compiled law" in r.getMessage()]
    assert len(lines) == 1 and compiled.BUILD_COMMAND in lines[0].getMessage()
    with pytest.raises(ImportError, match="python -m robot_rl.control.compiled --build"):
        Controller(law="compiled")
    with pytest.raises(ValueError, match="law='numba'"):
        Controller(law="numba")
