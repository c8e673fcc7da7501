"""Deadline misses of the 1 kHz loop: a bounded policy (hold the last torque for one tick, then brake),
counted in shared memory; and the loop process's real-time set-up with clear warnings when refused.
Misses are injected (a hook that delays one iteration), never waited for: no timing asserts."""

from __future__ import annotations

import ctypes
import errno
import logging
import os

import numpy as np
import pytest

from robot_rl.control import loop as loop_module
from robot_rl.control.controller import Controller, ControllerMode
from robot_rl.control.loop import MISS_BRAKE, MISS_HOLD, MISS_ON_TIME, ControlLoopProcess, MissPolicy
from robot_rl.control.rig import load_rig
from robot_rl.control.arm_interface import ArmState
from robot_rl.core.clock import now


def test_one_late_tick_holds_then_a_second_or_a_whole_missed_slot_brakes():
    p = MissPolicy(period=0.001)
    assert p.decide(0.0) == MISS_ON_TIME
    assert p.decide(0.0004) == MISS_HOLD          # the arm kept the last torque for part of one tick
    assert p.decide(0.0) == MISS_ON_TIME          # back on time: the law resumes
    assert p.decide(0.0002) == MISS_HOLD
    assert p.decide(0.0002) == MISS_BRAKE         # late again right after a hold: brake, never a second hold
    assert p.decide(0.0003) == MISS_BRAKE
    assert p.decide(0.0) == MISS_ON_TIME
    assert p.decide(0.0025) == MISS_BRAKE         # a whole slot passed without a command
    assert (p.held, p.braked) == (2, 3)


def _moving_state(t: float) -> ArmState:
    J = np.zeros((6, 7))
    J[:3, :3] = np.eye(3)
    J[3:, 3:6] = np.eye(3)
    return ArmState(t, np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]), np.full(7, 0.5),
                    np.array([0.45, 0.0, 0.4]), np.array([0.0, 1.0, 0.0, 0.0]), J, np.eye(7), np.full(7, 0.1),
                    np.zeros(7), np.zeros(7), np.zeros(6))


@pytest.mark.parametrize("law", ["python", "compiled"])
def test_a_brake_tick_commands_joint_damping_through_the_limits_and_does_not_latch(law):
    from robot_rl.control import compiled

    if law == "compiled" and compiled.load() is None:
        pytest.skip(f"compiled law not built: {compiled.BUILD_COMMAND}")
    c = Controller(law=law)
    for k in range(5):
        c.tick(_moving_state(k * 1e-3), k * 1e-3)
    c.tau[:] = 0.0
    tau = c.tick(_moving_state(5e-3), 5e-3, brake=True).copy()
    L = c.limits
    # -dq D + coriolis, rate-limited from the last command (0)
    want = np.clip(-L.stop_damping * 0.5 + 0.1, -L.max_torque_rate, L.max_torque_rate)
    np.testing.assert_allclose(tau, np.full(7, want), atol=1e-12)
    assert c.mode == ControllerMode.HOLD                                  # not latched: the law resumes
    law_tau = c.tick(_moving_state(6e-3), 6e-3)
    assert not np.allclose(law_tau, np.full(7, want))


@pytest.fixture(scope="module")
def loop():
    raw = load_rig("panda_twin").raw
    raw["control"]["safety"]["state_timeout"] = 0.5         # about the policy, not about a stall
    with ControlLoopProcess(load_rig(raw)) as lp:
        yield lp


def _wait_for(cond, timeout=20.0):
    deadline = now() + timeout
    while not cond():
        assert now() < deadline, "condition not reached within the deadline"
        loop_module.time.sleep(0.002)


def test_injected_misses_are_counted_held_once_then_braked_and_the_loop_keeps_control(loop):
    loop.wait_ticks(20)
    c0 = loop.miss_counters()
    loop.inject_delay(1500)                       # overruns into the next slot by ~0.5 ms: one hold
    _wait_for(lambda: loop.miss_counters()["miss_held"] > c0["miss_held"])
    c1 = loop.miss_counters()
    assert c1["deadline_misses"] > c0["deadline_misses"]
    loop.inject_delay(4000)                       # three whole slots without a command: brake
    _wait_for(lambda: loop.miss_counters()["miss_braked"] > c1["miss_braked"])
    c2 = loop.miss_counters()
    assert c2["deadline_misses"] > c1["deadline_misses"]
    # every miss was answered by exactly one policy decision
    assert c2["miss_held"] + c2["miss_braked"] >= c2["deadline_misses"] > 0
    # the injected overruns are the loop's own work, never blamed on a late wake-up
    assert c2["miss_late_wakeup"] - c0["miss_late_wakeup"] <= c2["deadline_misses"] - c0["deadline_misses"] - 2
    s = loop.wait_ticks(50)
    assert int(s.mode) == ControllerMode.HOLD     # braking for a tick does not stop the arm


def test_loop_process_reports_its_real_time_setup_and_every_iteration_time(loop):
    setup = loop.realtime_setup
    assert setup["gc_frozen"] is True
    assert setup["sched_fifo"] in ("granted", "refused", "off")
    assert setup["cpu"] is None or setup["cpu"] in os.sched_getaffinity(0)
    start = int(loop.ch.header[loop_module.H_TICK_COUNT])
    loop.wait_ticks(200)
    n, loops = loop.ch.ring_since(loop.ch.loops, start)
    assert n - start == loops.size >= 200 and np.all(loops > 0)


def test_refused_mlockall_is_warned_with_what_to_configure(monkeypatch, caplog):
    class RefusingLibc:
        def mlockall(self, flags):
            assert flags == 3                     # MCL_CURRENT | MCL_FUTURE
            ctypes.set_errno(errno.ENOMEM)
            return -1

    monkeypatch.setattr(loop_module.ctypes, "CDLL", lambda *a, **k: RefusingLibc())
    with caplog.at_level(logging.WARNING, logger="robot_rl.control.loop"):
        assert loop_module._lock_memory() is False
    assert "mlockall refused" in caplog.text and "memlock" in caplog.text and "ulimit -l" in caplog.text
    assert "control.lock_memory: false" in caplog.text


def test_cpu_pinning_refusals_and_choices(monkeypatch, caplog):
    allowed = sorted(os.sched_getaffinity(0))
    assert loop_module._pin_cpu(None) == 0 and loop_module._pin_cpu([]) == 0
    calls = []
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: calls.append(list(cpus)))
    assert loop_module._pin_cpu("auto") == (allowed[-1] + 1 if len(allowed) > 1 else 0)
    assert loop_module._pin_cpu([0]) == 1 and calls[-1] == [0]

    def refuse(pid, cpus):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    with caplog.at_level(logging.WARNING, logger="robot_rl.control.loop"):
        assert loop_module._pin_cpu([63]) == 0
        assert loop_module._pin_cpu("fast") == 0
    assert "pinning to CPUs [63] refused" in caplog.text and "control.cpu_affinity" in caplog.text
    assert "'fast' is not a list of CPU ids" in caplog.text
