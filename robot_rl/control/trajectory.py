"""Interpolation between timestamped policy-rate end-effector targets.

Waypoints carry absolute times (seconds on the controller clock). Sampling at time `now` lerps the
position and slerps the orientation inside the segment that contains `now`, and holds the last
waypoint after it. A new waypoint replaces every waypoint scheduled at or after its time (a new
action chunk supersedes the rest of the old one), so the reference stays continuous.
Waypoints are plain tuples of floats: sampling runs every 1 ms tick and pure-float math on 7 numbers
is cheaper in CPython than numpy on tiny arrays.
"""

from __future__ import annotations

import math

Waypoint = tuple  # (t, px, py, pz, qw, qx, qy, qz, gripper)


def slerp(q0: tuple, q1: tuple, a: float) -> tuple:
    """Shortest-arc spherical interpolation of (w, x, y, z) tuples, a in [0, 1]."""
    w0, x0, y0, z0 = q0
    w1, x1, y1, z1 = q1
    dot = w0 * w1 + x0 * x1 + y0 * y1 + z0 * z1
    if dot < 0.0:
        w1, x1, y1, z1, dot = -w1, -x1, -y1, -z1, -dot
    if dot > 0.9995:  # nearly parallel: normalized lerp is exact to 1e-7 and avoids 0/0
        s0, s1 = 1.0 - a, a
    else:
        th = math.acos(min(dot, 1.0))
        st = math.sin(th)
        s0, s1 = math.sin((1.0 - a) * th) / st, math.sin(a * th) / st
    w, x, y, z = s0 * w0 + s1 * w1, s0 * x0 + s1 * x1, s0 * y0 + s1 * y1, s0 * z0 + s1 * z1
    n = math.sqrt(w * w + x * x + y * y + z * z)
    return (w / n, x / n, y / n, z / n)


class TargetTrajectory:
    """Piecewise-linear (position) / slerp (orientation) reference through timestamped waypoints."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self.points: list[Waypoint] = []

    def reset(self, wp: Waypoint) -> None:
        self.points = [wp]

    def __len__(self) -> int:
        return len(self.points)

    @property
    def last(self) -> Waypoint:
        return self.points[-1]

    @property
    def end_time(self) -> float:
        return self.points[-1][0]

    def add(self, wp: Waypoint, now: float) -> None:
        """Insert `wp` (its time must be > now); waypoints at or after wp's time are superseded."""
        if not self.points:
            self.points = [wp]
            return
        # anchor the segment that starts now at the current reference, so nothing jumps
        head = self.sample(now)
        pts = [p for p in self.points if now < p[0] < wp[0]]
        self.points = [head] + pts[-(self.capacity - 2):] + [wp]

    def sample(self, now: float) -> Waypoint:
        """The reference at time `now` as a waypoint tuple (its gripper is the segment's goal value)."""
        pts = self.points
        if now <= pts[0][0] or len(pts) == 1:
            p = pts[0]
            return (now,) + p[1:]
        if now >= pts[-1][0]:
            return (now,) + pts[-1][1:]
        i = 1
        while pts[i][0] < now:
            i += 1
        a_, b_ = pts[i - 1], pts[i]
        a = (now - a_[0]) / (b_[0] - a_[0])
        q = slerp(a_[4:8], b_[4:8], a)
        return (now, a_[1] + a * (b_[1] - a_[1]), a_[2] + a * (b_[2] - a_[2]), a_[3] + a * (b_[3] - a_[3]),
                q[0], q[1], q[2], q[3], b_[8])

    def drop_after(self, now: float) -> None:
        """Forget everything scheduled after `now`: the reference freezes where it is at `now`."""
        self.points = [self.sample(now)]
