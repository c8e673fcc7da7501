"""TargetTrajectory: interpolation between timestamped targets."""

from __future__ import annotations

import math

from robot_rl.control.trajectory import TargetTrajectory, slerp

Q0 = (1.0, 0.0, 0.0, 0.0)
QZ90 = (math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4))


def test_position_is_linear_and_orientation_is_slerped_between_waypoints():
    tr = TargetTrajectory()
    tr.reset((0.0, 0.0, 0.0, 0.0) + Q0 + (0.0,))
    tr.add((1.0, 1.0, 0.0, 0.0) + QZ90 + (1.0,), now=0.0)
    s = tr.sample(0.5)
    assert math.isclose(s[1], 0.5)
    q = s[4:8]
    assert math.isclose(2 * math.atan2(q[3], q[0]), math.pi / 4, abs_tol=1e-9)


def test_the_last_waypoint_is_held_after_its_time():
    tr = TargetTrajectory()
    tr.reset((0.0, 0.0, 0.0, 0.0) + Q0 + (0.0,))
    tr.add((1.0, 0.2, 0.0, 0.0) + Q0 + (1.0,), now=0.0)
    assert tr.sample(5.0)[1:4] == (0.2, 0.0, 0.0)
    assert tr.sample(5.0)[8] == 1.0


def test_a_new_target_supersedes_later_waypoints_and_keeps_the_reference_continuous():
    tr = TargetTrajectory()
    tr.reset((0.0, 0.0, 0.0, 0.0) + Q0 + (0.0,))
    tr.add((1.0, 1.0, 0.0, 0.0) + Q0 + (0.0,), now=0.0)
    tr.add((2.0, 2.0, 0.0, 0.0) + Q0 + (0.0,), now=0.0)
    before = tr.sample(0.5)[1]
    tr.add((0.8, -1.0, 0.0, 0.0) + Q0 + (0.0,), now=0.5)     # replaces both later waypoints
    assert math.isclose(tr.sample(0.5)[1], before)
    assert tr.end_time == 0.8
    assert tr.sample(0.8)[1] == -1.0


def test_slerp_takes_the_short_way_round():
    q = slerp(Q0, tuple(-x for x in QZ90), 0.5)             # -q is the same 90 deg rotation
    assert math.isclose(abs(2 * math.atan2(q[3], q[0])), math.pi / 4, abs_tol=1e-9)
