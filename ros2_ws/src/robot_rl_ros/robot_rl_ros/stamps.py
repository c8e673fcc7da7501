"""Header stamps (ROS time) <-> robot_rl timestamps (seconds on the host monotonic clock).

ROS nodes stamp headers with ROS time: the system (wall) clock, or simulation time when the node
runs with `use_sim_time`. robot_rl stores seconds on the host monotonic clock (or simulation time
in the twin). The mapping is one constant per process,

    t_robot_rl = stamp_seconds - offset_s,   offset_s = time.time() - time.monotonic() at start-up,

so differences between stamps are kept exactly (to float64 precision, ~0.2 us at today's epoch) and
every stream recorded by one node shares the same offset. With `use_sim_time` the offset is 0: sim
time is already robot_rl's twin clock. The offset is saved in each episode's metadata
(`extra.ros_stamp_offset_s`) so stored times can be mapped back to ROS time (e.g. to align with a bag).
Caveat: two processes measure the offset at different moments; if NTP slews the wall clock in
between, their offsets differ by the slew (at most 0.5 ms per second of separation).
"""

from __future__ import annotations

import time

from builtin_interfaces.msg import Time

NS = 1_000_000_000


class StampMapping:
    def __init__(self, offset_s: float) -> None:
        self.offset_s = float(offset_s)

    @classmethod
    def for_node(cls, node) -> "StampMapping":
        """Offset 0 under simulation time, else wall - monotonic measured now."""
        sim = node.has_parameter("use_sim_time") and node.get_parameter("use_sim_time").value
        return cls(0.0 if sim else time.time() - time.monotonic())

    def to_seconds(self, stamp: Time) -> float:
        return stamp.sec + stamp.nanosec * 1e-9 - self.offset_s

    def to_stamp(self, t: float) -> Time:
        ns = int(round((float(t) + self.offset_s) * NS))
        return Time(sec=ns // NS, nanosec=ns % NS)
