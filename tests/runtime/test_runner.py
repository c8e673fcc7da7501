"""Policy runner timing rules: stale observations hold, past actions drop, chunks blend smoothly."""

import numpy as np
import pytest

from robot_rl.core.errors import StaleDataError
from robot_rl.core.types import ActionChunk
from robot_rl.runtime.observation_assembly import ObservationAssembler, SensorSpec
from robot_rl.runtime.runner import PolicyRunner
from robot_rl.runtime.scheduler import ActionScheduler


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


class LinearPolicy:
    """Plans a ramp a(t) = t from the observation time; optionally takes `latency` of clock time."""

    def __init__(self, clock, latency=0.0, horizon=8, rate=10.0, offset=0.0):
        self.clock, self.latency, self.horizon, self.rate, self.offset = clock, latency, horizon, rate, offset
        self.calls = 0

    def reset(self):
        pass

    def act(self, obs):
        self.calls += 1
        self.clock.t += self.latency
        t = obs["t"] + np.arange(1, self.horizon + 1) / self.rate
        return ActionChunk(actions=(t[:, None] + self.offset), t=t)


def make_runner(clock, policy, staleness=0.05, latency=0.0, mode="crossfade"):
    sent = []
    asm = ObservationAssembler([SensorSpec("state", latency_s=latency, max_staleness_s=staleness)], 2, 10.0)
    runner = PolicyRunner(policy, asm, ActionScheduler(mode=mode), sent.append, clock=clock)
    return runner, asm, sent


def test_stale_observation_holds_without_calling_the_policy():
    clock = FakeClock()
    policy = LinearPolicy(clock)
    runner, asm, sent = make_runner(clock, policy)
    asm.push("state", np.zeros(3), clock.t - 0.2)
    log = runner.cycle()
    assert log.held and "200.0 ms old" in log.reason
    assert policy.calls == 0 and sent[-1] == []


def test_no_sample_yet_is_stale():
    clock = FakeClock()
    runner, _, _ = make_runner(clock, LinearPolicy(clock))
    assert runner.cycle().held


def test_latency_compensation_anchors_actions_at_capture_time():
    clock = FakeClock()
    runner, asm, sent = make_runner(clock, LinearPolicy(clock), latency=0.03)
    asm.push("state", np.zeros(3), clock.t)
    runner.cycle()
    assert sent[-1][0].t == pytest.approx(clock.t - 0.03 + 0.1)


def test_actions_already_past_when_inference_returns_are_dropped():
    clock = FakeClock()
    runner, asm, sent = make_runner(clock, LinearPolicy(clock, latency=0.25), staleness=1.0)
    asm.push("state", np.zeros(3), clock.t)
    log = runner.cycle()
    assert log.dropped == 2  # actions at +0.1 and +0.2 s were in the past after 0.25 s of inference
    assert all(a.t >= clock.t for a in sent[-1])
    assert log.inference_s == pytest.approx(0.25)


def test_crossfade_makes_chunk_boundary_continuous():
    clock = FakeClock()
    policy = LinearPolicy(clock, offset=0.0)
    runner, asm, sent = make_runner(clock, policy, staleness=1.0)
    asm.push("state", np.zeros(3), clock.t)
    runner.cycle()
    first = {round(a.t, 6): a.action[0] for a in sent[-1]}
    clock.t += 0.2
    asm.push("state", np.zeros(3), clock.t)
    policy.offset = 1.0  # the new chunk disagrees by 1.0
    runner.cycle()
    second = sent[-1]
    old_first = first[round(second[0].t, 6)]
    assert abs(second[0].action[0] - old_first) < 0.5  # no full jump at the boundary
    assert second[-1].action[0] == pytest.approx(second[-1].t + 1.0)  # converges to the new plan
    jumps = np.abs(np.diff([a.action[0] - a.t for a in second]))
    assert jumps.max() <= 0.26


def test_ensemble_averages_overlapping_predictions():
    sched = ActionScheduler(mode="ensemble", ensemble_k=0.0)
    t = np.array([1.0, 1.1, 1.2])
    sched.add(ActionChunk(np.zeros((3, 1)), t), 0.9)
    sched.add(ActionChunk(np.ones((3, 1)), t), 0.9)
    np.testing.assert_allclose([a.action[0] for a in sched.pending(0.9)], [0.5, 0.5, 0.5])


def test_runner_stats_summarise_rate_and_latency():
    clock = FakeClock()
    runner, asm, _ = make_runner(clock, LinearPolicy(clock, latency=0.01), staleness=1.0)
    for _ in range(5):
        asm.push("state", np.zeros(3), clock.t)
        runner.cycle()
        clock.t += 0.09
    s = runner.stats.summary()
    assert s["cycles"] == 5 and s["held_cycles"] == 0
    assert s["achieved_hz"] == pytest.approx(10.0)
    assert s["inference_ms_p50"] == pytest.approx(10.0)


def test_observation_history_is_spaced_at_the_policy_period():
    asm = ObservationAssembler([SensorSpec("x", max_staleness_s=1.0)], n_obs_steps=3, rate_hz=10.0)
    for k in range(30):
        asm.push("x", np.array([k]), k * 0.02)
    obs = asm.assemble(0.6)
    np.testing.assert_allclose(obs["x"][:, 0], [19, 24, 29])
    with pytest.raises(KeyError, match="not configured"):
        asm.push("y", 1, 0.0)
    with pytest.raises(StaleDataError):
        asm.assemble(5.0)


def test_history_frames_are_read_at_exact_times_between_jittered_samples():
    """Samples arrive at irregular times (a polled source); a linear sensor's history frame is its value at
    exactly t_obs - k * period, as in the training windows, not the nearest older sample."""
    asm = ObservationAssembler([SensorSpec("x", max_staleness_s=1.0, interp="linear")], n_obs_steps=3, rate_hz=10.0)
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.005, 0.06, size=40))
    for t in times:
        asm.push("x", np.array([2.0 * t]), t)   # value = 2 x its time
    obs = asm.assemble(times[-1])
    np.testing.assert_allclose(obs["x"][:, 0], 2.0 * (times[-1] - np.array([0.2, 0.1, 0.0])), atol=1e-9)
    with pytest.raises(ValueError, match="interp 'cubic'"):
        SensorSpec("x", interp="cubic")


def test_camera_frames_are_resized_to_the_policys_shape_and_a_held_stream_does_not_hold_back_the_state():
    """A 640x480 camera for a policy trained on 128x128 frames: each frame the observation uses is resized
    (cv2 INTER_AREA, as in the twin and on ROS: this assembler serves both). A 30 Hz camera (hold) does not
    drag the observation time of a 200 Hz state stream back to its last frame; its staleness still counts."""
    import cv2

    asm = ObservationAssembler([SensorSpec("state", max_staleness_s=0.1, interp="linear"),
                                SensorSpec("cam", max_staleness_s=0.1, interp="hold", shape=(128, 128, 3))],
                               n_obs_steps=2, rate_hz=20.0)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(4)]
    for k, f in enumerate(frames):
        asm.push("cam", f, 1.0 + k / 30)                      # frames at 1.000 .. 1.100
    for k in range(30):
        asm.push("state", np.array([k], np.float32), 1.0 + k * 0.005)   # state up to 1.145
    obs = asm.assemble(1.15)
    assert obs["t"] == pytest.approx(1.145)                   # the state's newest sample, not the frame's
    assert obs["cam"].shape == (2, 128, 128, 3) and obs["cam"].dtype == np.uint8
    np.testing.assert_array_equal(obs["cam"][1], cv2.resize(frames[3], (128, 128), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(obs["cam"][0], cv2.resize(frames[2], (128, 128), interpolation=cv2.INTER_AREA))
    asm.push("state", np.array([30], np.float32), 1.24)
    with pytest.raises(StaleDataError, match=r"observation cam: newest sample is 1\d\d.\d ms old"):
        asm.assemble(1.25)                                    # the camera stopped: 150 ms > 100 ms
    asm.push("cam", rng.integers(0, 256, (480, 640), dtype=np.uint8), 1.2)
    with pytest.raises(ValueError, match=r"\(480, 640\) cannot be resized to \(128, 128, 3\)"):
        asm.assemble(1.24)                                     # a mono frame for an RGB policy


def test_crossfade_over_a_one_action_overlap_takes_half_of_each():
    sched = ActionScheduler(mode="crossfade", blend_steps=3)
    sched.add(ActionChunk(np.zeros((3, 1)), np.array([1.0, 1.1, 1.2])), 0.95)
    sched.add(ActionChunk(np.ones((3, 1)), np.array([1.2, 1.3, 1.4])), 1.15)
    np.testing.assert_allclose([a.action[0] for a in sched.pending(1.15)], [0.5, 1.0, 1.0])


def test_an_action_less_than_late_s_late_is_kept_and_a_replan_keeps_the_action_grid():
    """Inference returns 8 ms after the observation: with late_s of one 50 ms period the action at the
    observation time is kept (its target is still ahead), one a full period late is dropped. A replanned
    chunk observed 1.5 ms off the old grid is moved onto it, so the action it replaces keeps its time."""
    late = ActionScheduler(mode="replace", late_s=0.05)
    t = 1.0 + 0.05 * np.arange(8)
    assert late.add(ActionChunk(np.zeros((8, 1)), t), 1.008) == 0
    assert [round(a.t, 3) for a in late.pending(1.008)][:2] == [1.0, 1.05]
    assert ActionScheduler(mode="replace").add(ActionChunk(np.zeros((8, 1)), t), 1.008) == 1   # late_s 0
    assert late.add(ActionChunk(np.ones((8, 1)), 1.3015 + 0.05 * np.arange(8)), 1.35) == 0     # 48.5 ms: kept
    pending = late.pending(1.35)
    np.testing.assert_allclose([a.t for a in pending], 1.3 + 0.05 * np.arange(8))
    assert late.add(ActionChunk(np.ones((8, 1)), 1.5 + 0.05 * np.arange(8)), 1.551) == 1       # 51 ms: dropped
    assert all(a.action[0] == 1.0 for a in pending)                                       # replace: the new chunk
    cross = ActionScheduler(mode="crossfade", blend_steps=3, late_s=0.05)
    cross.add(ActionChunk(np.zeros((8, 1)), t), 1.008)
    cross.add(ActionChunk(np.ones((8, 1)), 1.3015 + 0.05 * np.arange(8)), 1.308)
    np.testing.assert_allclose([a.t for a in cross.pending(1.308)], 1.3 + 0.05 * np.arange(8))
    np.testing.assert_allclose([a.action[0] for a in cross.pending(1.308)][:3], [1 / 3, 2 / 3, 1.0])


def test_an_empty_scheduler_has_nothing_pending():
    sched = ActionScheduler()
    assert sched.pending(0.0) == [] and sched.pop_due(1.0) == [] and len(sched) == 0


class DispatchingSink(list):
    """Records what each cycle hands over and counts dispatch() calls between cycles."""

    dispatches = 0

    def __call__(self, pending):
        self.append(pending)

    def dispatch(self):
        self.dispatches += 1


def test_step_plans_every_replan_period_and_dispatches_at_every_call():
    clock = FakeClock()
    policy = LinearPolicy(clock, latency=0.02)
    sink = DispatchingSink()
    asm = ObservationAssembler([SensorSpec("state", max_staleness_s=1.0)], 2, 10.0)
    runner = PolicyRunner(policy, asm, ActionScheduler(), sink, clock=clock, replan_s=0.3)
    cycled = []
    for _ in range(40):                          # polled at 100 Hz for 0.4 s
        asm.push("state", np.zeros(3), clock.t)
        cycled.append(runner.step() is not None)
        clock.t += 0.01
    assert policy.calls == 2 and sum(cycled) == 2 and sink.dispatches == 40   # before a cycle too: the stand-in
    starts = [c.t for c in runner.stats.cycles]
    assert starts[1] - starts[0] == pytest.approx(0.3)   # anchored at the schedule, not at the last return
    policy.latency = 0.5                          # an overrun: the next cycle starts at once, no burst
    asm.push("state", np.zeros(3), clock.t)
    while runner.step() is None:
        clock.t += 0.01
    policy.latency = 0.02
    t_late = clock.t
    assert runner.step() is not None and runner.stats.cycles[-1].t == pytest.approx(t_late)
    assert runner.step() is None                  # the one after it waits a full replan period again
