"""Motion faults injected into the synchronous twin (real MuJoCo physics, the shared Controller).

Each test drives the arm with a hostile target stream or a frozen state stream and checks the bound
the safety limits promise (docs/twin.md, "Safety limits and faults"); a few parameters of each fault
are drawn from a seeded generator. Run with `-s` to print the measured figures.
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from robot_rl.control.controller import ControllerMode, Fault
from robot_rl.core.types import EETarget
from robot_rl.sim.mujoco_twin import Twin
from tests.control.twin_harness import make_twin, tick  # noqa: F401  (make_twin: the fixture)


def drawn(seed: int) -> np.random.Generator:
    """The generator of one fuzzed case (fixed seeds: a failure reproduces)."""
    return np.random.default_rng(1700 + seed)


# ------------------------------------------------------------------------------------------ harness
class FrozenState:
    """Backend wrapper: after freeze() read_state returns the same sample (same t), a lost state stream;
    torques and brake requests still reach the arm (the robot's own side keeps working)."""

    def __init__(self, arm) -> None:
        self.arm, self.frozen = arm, None

    def freeze(self) -> None:
        self.frozen = self.arm.state.copy()

    def read_state(self):
        s = self.arm.read_state()
        return self.frozen if self.frozen is not None else s

    def write_torque(self, tau) -> None:
        self.arm.write_torque(tau)

    def brake(self) -> None:
        self.arm.brake()


class TableContact:
    """|force the table exerts on the robot| (N) from MuJoCo's contacts: an independent check of the
    controller's estimate. After a tick the twin's data holds the next tick's contacts but the last
    tick's constraint forces, so they are solved again on a scratch copy."""

    def __init__(self, tw: Twin) -> None:
        m = tw.model
        self.m, self.src, self.d = m, tw.data, mujoco.MjData(m)
        self.table = m.geom("table").id
        self.robot = m.body_rootid[m.body("link0").id]
        self.f6 = np.zeros(6)

    def __call__(self) -> float:
        m, d, s = self.m, self.d, self.src
        d.time = s.time
        d.qpos[:], d.qvel[:], d.act[:], d.ctrl[:] = s.qpos, s.qvel, s.act, s.ctrl
        d.qacc_warmstart[:] = s.qacc_warmstart
        mujoco.mj_forward(m, d)
        total = np.zeros(3)
        for i in range(d.ncon):
            c = d.contact[i]
            if self.table not in (c.geom1, c.geom2):
                continue
            other = c.geom2 if c.geom1 == self.table else c.geom1
            if m.body_rootid[m.geom_bodyid[other]] != self.robot:
                continue
            mujoco.mj_contactForce(m, d, i, self.f6)
            f = c.frame.reshape(3, 3).T @ self.f6[:3]       # contact frame -> world, on geom2
            total += f if other == c.geom2 else -f
        return float(np.linalg.norm(total))


class Run:
    """Steps the twin tick by tick exactly like Twin.run_ticks and records the bounded quantities."""

    def __init__(self, tw: Twin, backend=None, contact: bool = False) -> None:
        self.tw, self.backend = tw, backend or tw.arm
        self.contact = TableContact(tw) if contact else None
        self.f_est, self.f_contact, self.ee, self.v, self.w, self.ref_v, self.ref_w = [], [], [], [], [], [], []

    def ticks(self, n: int, targets=None) -> None:
        tw, ctrl, arm = self.tw, self.tw.controller, self.tw.arm
        for _ in range(n):
            tick(tw, self.backend, targets)
            st = arm.state                                   # the true state, not the backend's copy
            self.f_est.append(float(np.linalg.norm(st.f_ext[:3])))
            if self.contact is not None:
                self.f_contact.append(self.contact())
            self.ee.append(st.ee_pos.copy())
            v = st.J @ st.dq
            self.v.append(float(np.linalg.norm(v[:3])))
            self.w.append(float(np.linalg.norm(v[3:])))
            self.ref_v.append(float(np.linalg.norm(ctrl.ref_vel[:3])))
            self.ref_w.append(float(np.linalg.norm(ctrl.ref_vel[3:])))


def stream(tw: Twin, fn, period: float = 0.05, lead: float = 0.05):
    """Target callback: fn(k) -> (position, quat) pushed every `period` s for `lead` s ahead."""
    t0, every = tw.now, int(round(period / tw.dt))

    def targets(now):
        k = int(round((now - t0) / tw.dt))
        if k % every:
            return None
        pos, quat = fn(k // every)
        return EETarget(now + lead, np.asarray(pos, float), np.asarray(quat, float), 0.0)

    return targets


def move_to(tw: Twin, goal, seconds: float = 1.5) -> None:
    """Walk the arm to `goal` at 0.3 m/s (well inside every limit)."""
    q = tw.arm.state.ee_quat.copy()
    start = tw.arm.state.ee_pos.copy()
    goal = np.asarray(goal, float)
    n = max(np.linalg.norm(goal - start), 1e-9)
    Run(tw).ticks(int(seconds / tw.dt), stream(tw, lambda k: (start + (goal - start) * min(1.0, 0.015 * (k + 1) / n), q)))


def longest_ms_above(x, level: float, dt: float) -> float:
    best = cur = 0
    for v in x:
        cur = cur + 1 if v > level else 0
        best = max(best, cur)
    return best * dt * 1e3


# ------------------------------------------------------------------------------------------ 1. force
def _press(tw: Twin, xy, depth: float, speed: float, seconds: float) -> Run:
    """From 12 cm above the table, targets descending at `speed` to `depth` below the table top."""
    move_to(tw, [xy[0], xy[1], 0.12])
    q = tw.arm.state.ee_quat.copy()
    run = Run(tw, contact=True)
    run.ticks(int(seconds / tw.dt), stream(tw, lambda k: ([xy[0], xy[1], max(-depth, 0.12 - speed * 0.05 * (k + 1))], q)))
    return run


def _check_force(tw: Twin, run: Run, label: str) -> None:
    L = tw.controller.limits
    lim = 1.25 * L.max_external_force
    ms_est = longest_ms_above(run.f_est, lim, tw.dt)
    ms_con = longest_ms_above(run.f_contact, lim, tw.dt)
    print(f"\n{label}: peak estimated {max(run.f_est):.1f} N, peak MuJoCo contact {max(run.f_contact):.1f} N, "
          f"longest above {lim:.0f} N: {ms_est:.0f} / {ms_con:.0f} ms; final {np.mean(run.f_est[-100:]):.1f} / "
          f"{np.mean(run.f_contact[-100:]):.1f} N")
    assert ms_est <= 5.0 and ms_con <= 5.0
    # the controller's estimate is the contact force MuJoCo computes (one tick apart)
    np.testing.assert_allclose(np.mean(run.f_est[-100:]), np.mean(run.f_contact[-100:]), atol=1.0)
    assert np.array(run.ee)[:, 2].min() > -0.005                          # never through the table


@pytest.mark.parametrize("case", range(3))
def test_targets_below_the_table_never_press_beyond_the_force_limit(make_twin, case):
    # a reported stream (8 cm below the table, clipped into the workspace) and drawn variants of it
    RNG = drawn(case)
    xy = (0.5, 0.0) if case == 0 else (RNG.uniform(0.35, 0.6), RNG.uniform(-0.2, 0.2))
    depth = 0.08 if case == 0 else RNG.uniform(0.01, 0.2)
    speed = 0.5 if case == 0 else RNG.uniform(0.1, 0.5)
    tw = make_twin("precise" if case < 2 else "compliant")
    run = _press(tw, xy, depth, speed, seconds=0.12 / speed + 0.5)
    _check_force(tw, run, f"press xy={np.round(xy, 2)} depth={depth:.3f} m speed={speed:.2f} m/s")
    L = tw.controller.limits
    assert np.array(run.ee)[-100:, 2].min() > L.workspace_min[2] - 0.01   # held at the workspace floor


@pytest.mark.parametrize("speed", [0.05, 0.08])
def test_pressing_into_a_surface_inside_the_workspace_is_bounded_by_max_contact_force(make_twin, speed):
    # a workspace that reaches below the table top: the arm really presses on it and keeps being told to
    tw = make_twin(workspace_min=(0.15, -0.45, -0.10))
    run = _press(tw, (0.45, drawn(int(speed * 100)).uniform(-0.1, 0.1)), 0.08, speed, seconds=0.12 / speed + 0.6)
    _check_force(tw, run, f"press inside the workspace at {speed} m/s")
    L = tw.controller.limits
    assert max(run.f_contact[-300:]) > 0.5 * L.max_contact_force          # it is really pressing ...
    assert np.mean(run.f_est[-100:]) <= L.max_contact_force + 1.0        # ... at most max_contact_force


# ------------------------------------------------------------------------------------------ 2. frozen state
@pytest.mark.parametrize("speed,direction", [(0.3, (0, 1, 0)), (0.3, None), (0.5, (1, 0, 0)), (0.5, None),
                                             (0.8, (0, 0, -1)), (0.8, (0, 1, 0))])
def test_a_frozen_arm_state_brakes_the_arm_within_the_stop_distance(make_twin, speed, direction):
    direction = drawn(int(speed * 10)).normal(size=3) if direction is None else direction
    u = np.asarray(direction, float) / np.linalg.norm(direction)
    tw = make_twin(max_ee_speed=max(0.5, speed))          # 0.8 m/s: a rig configured faster than the twin
    L = tw.controller.limits
    centre = np.array([0.45, 0.0, 0.3])
    start = centre - 0.15 * u
    move_to(tw, start)
    backend = FrozenState(tw.arm)
    q = tw.arm.state.ee_quat.copy()
    go = stream(tw, lambda k: (start + u * speed * 0.05 * (k + 2), q))
    run = Run(tw, backend)
    run.ticks(int(0.2 / speed / tw.dt) + 100, go)                           # cruising through the centre
    assert run.v[-1] > 0.85 * min(speed, L.ee_speed_guard * L.max_ee_speed)
    p0 = tw.arm.state.ee_pos.copy()
    backend.freeze()
    after = Run(tw, backend)
    after.ticks(1500, go)                                                  # targets keep coming
    ee = np.array(after.ee)
    dist = np.linalg.norm(ee - p0, axis=1)
    print(f"\nfrozen at {run.v[-1]:.3f} m/s along {np.round(u, 2)}: {dist[99] * 1e3:.1f} / {dist[599] * 1e3:.1f} / "
          f"{dist[-1] * 1e3:.1f} mm after 0.1 / 0.6 / 1.5 s")
    assert tw.controller.mode == ControllerMode.STOPPED and tw.controller.counts[Fault.STATE_STALE] == 1
    assert dist.max() <= L.max_stop_distance
    assert dist[-1] - dist[599] < 1e-3 and after.v[-1] < 1e-3              # stopped, and stays stopped
    assert np.all(ee >= np.array(L.workspace_min)) and np.all(ee <= np.array(L.workspace_max))


@pytest.mark.parametrize("height", [0.03, 0.06])
def test_a_state_frozen_while_diving_at_the_floor_stops_inside_the_workspace(make_twin, height):
    tw = make_twin()
    L = tw.controller.limits
    floor = L.workspace_min[2]
    move_to(tw, [0.5, 0.0, 0.25])
    backend = FrozenState(tw.arm)
    q = tw.arm.state.ee_quat.copy()
    run = Run(tw, backend)
    # targets under the table at full speed; the state freezes as the TCP passes `height` above the floor
    dive = stream(tw, lambda k: ([0.5, 0.0, max(-0.1, 0.25 - 0.5 * 0.05 * (k + 1))], q))
    while tw.arm.state.ee_pos[2] > floor + height:
        run.ticks(1, dive)
        assert len(run.v) < 3000
    v0 = run.v[-1]
    backend.freeze()
    after = Run(tw, backend)
    after.ticks(800, dive)
    ee = np.array(after.ee)
    print(f"\nfrozen {height * 100:.0f} cm above the floor at {v0:.3f} m/s: lowest TCP {ee[:, 2].min() - floor:+.4f} m "
          f"from the floor, table contact {max(after.f_est):.1f} N")
    assert ee[:, 2].min() >= floor and after.v[-1] < 1e-3 and max(after.f_est) == 0.0


def test_the_twin_brake_releases_when_the_controller_is_reset(make_twin):
    tw = make_twin()
    backend = FrozenState(tw.arm)
    run = Run(tw, backend)
    run.ticks(50)
    backend.freeze()
    run.ticks(100)
    assert tw.arm.braking
    backend.frozen = None                                                  # the stream is back
    tw.controller.reset()
    start = tw.arm.state.ee_pos.copy()
    q = tw.arm.state.ee_quat.copy()
    run.ticks(800, stream(tw, lambda k: (start + [0.0, 0.05, 0.0], q)))
    assert not tw.arm.braking
    assert np.linalg.norm(tw.arm.state.ee_pos - (start + [0.0, 0.05, 0.0])) < 0.005   # moves freely again


# ------------------------------------------------------------------------------------------ 3. speed
@pytest.mark.parametrize("step,every,n", [(0.075, 0.05, 4), (0.09, 0.001, 40), (None, None, None)])
def test_waypoint_streams_cannot_exceed_the_speed_limit(make_twin, step, every, n):
    RNG = drawn(n or 0)
    if step is None:                                   # a drawn stream of waypoints within max_target_jump
        step, every, n = RNG.uniform(0.03, 0.099), RNG.choice([0.002, 0.01, 0.02, 0.05]), int(RNG.integers(4, 12))
    u = RNG.normal(size=3)
    u[2] = abs(u[2])
    u /= np.linalg.norm(u)
    tw = make_twin()
    L = tw.controller.limits
    start = np.array([0.45, 0.0, 0.3]) - u * 0.5 * min(step * n, 0.3)
    move_to(tw, start)
    q = tw.arm.state.ee_quat.copy()
    run = Run(tw)
    accepted = []
    t0, k_every = tw.now, int(round(every / tw.dt))

    def targets(now):
        k = int(round((now - t0) / tw.dt))
        if k % k_every == 0:                  # then the last one again: the stream goes on
            i = k // k_every + 1
            ok = tw.controller.push_target(EETarget(now + every, start + u * step * min(i, n), q, 0.0), now)
            if i <= n:
                accepted.append(ok)

    run.ticks(int((n * every + 0.75) / tw.dt), targets)
    travel = np.linalg.norm(run.ee[-1] - run.ee[0])
    print(f"\n{sum(accepted)}/{n} waypoints {step * 100:.1f} cm apart every {every * 1e3:.0f} ms: peak reference "
          f"{max(run.ref_v):.3f} m/s, peak measured {max(run.v):.3f} m/s (limit {L.max_ee_speed}), travel {travel:.3f} m")
    assert sum(accepted) >= 3 and travel > 0.8 * min(step * n, 0.3)        # the stream is really followed
    assert max(run.ref_v) <= L.max_ee_speed * (1 + 1e-6)
    assert max(run.v) <= L.max_ee_speed


# ------------------------------------------------------------------------------------------ 4. rotation
def _rotated(q0, axis, angle: float) -> np.ndarray:
    ax = np.asarray(axis, float) / np.linalg.norm(axis)
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * ax]), q0)
    return out


@pytest.mark.parametrize("axis,angle", [((1, 0, 0), np.pi), ((0, 0, 1), np.pi), (None, None)])
def test_an_orientation_flip_at_the_same_position_is_rejected(make_twin, axis, angle):
    tw = make_twin()
    L = tw.controller.limits
    if axis is None:
        axis, angle = drawn(4).normal(size=3), drawn(4).uniform(L.max_target_rotation_jump + 0.05, np.pi)
    p, q0 = tw.arm.state.ee_pos.copy(), tw.arm.state.ee_quat.copy()
    ok = tw.controller.push_target(EETarget(tw.now + 0.05, p, _rotated(q0, axis, angle), 0.0), tw.now)
    run = Run(tw)
    run.ticks(300)
    err = np.zeros(3)
    mujoco.mju_subQuat(err, tw.arm.state.ee_quat, q0)
    print(f"\nflip by {angle:.2f} rad: accepted={ok}, peak angular speed {max(run.w):.3f} rad/s")
    assert ok is False and tw.controller.counts[Fault.TARGET_JUMP] == 1
    assert "max_target_rotation_jump" in tw.controller.last_fault.detail
    assert np.linalg.norm(err) < 0.01 and max(run.w) < 0.05


@pytest.mark.parametrize("axis,every", [((0, 0, 1), 0.05), (None, None)])
def test_stepwise_rotation_is_held_to_the_angular_speed_limit(make_twin, axis, every):
    axis = drawn(5).normal(size=3) if axis is None else axis
    every = float(drawn(6).choice([0.005, 0.02, 0.05])) if every is None else every
    tw = make_twin()
    L = tw.controller.limits
    p, q0 = tw.arm.state.ee_pos.copy(), tw.arm.state.ee_quat.copy()
    step = 0.9 * L.max_target_rotation_jump                 # each step accepted, the sum is a fast 1.2 rad turn
    n = int(np.ceil(1.2 / step))
    t0, k_every = tw.now, int(round(every / tw.dt))
    accepted = []

    def targets(now):
        k = int(round((now - t0) / tw.dt))
        if k % k_every == 0:                  # then the last one again: the stream goes on
            i = k // k_every + 1
            ok = tw.controller.push_target(EETarget(now + every, p, _rotated(q0, axis, step * min(i, n)), 0.0), now)
            if i <= n:
                accepted.append(ok)

    run = Run(tw)
    run.ticks(int((n * every + 1.5) / tw.dt), targets)
    err = np.zeros(3)
    mujoco.mju_subQuat(err, tw.arm.state.ee_quat, q0)
    print(f"\n{sum(accepted)}/{n} rotation steps of {step:.2f} rad every {every * 1e3:.0f} ms: peak reference "
          f"{max(run.ref_w):.3f} rad/s, peak measured {max(run.w):.3f} rad/s (limit {L.max_ee_angular_speed}), "
          f"turned {np.linalg.norm(err):.2f} rad")
    assert all(accepted) and np.linalg.norm(err) > 1.0                     # the turn really happens
    assert max(run.ref_w) <= L.max_ee_angular_speed * (1 + 1e-6)
    assert max(run.w) <= L.max_ee_angular_speed
