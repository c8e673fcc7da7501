"""Deploy through the full runtime path: runner -> timestamped EE targets -> 1 kHz loop process -> task.

One loop process (reach task) is shared by the module; every test starts its own episode.
"""

from __future__ import annotations

import json
import os
import signal
import time
from types import SimpleNamespace

import numpy as np
import pytest

from robot_rl.cli import main
from robot_rl.control.controller import ControllerMode, Fault
from robot_rl.control.loop import ControlLoopProcess
from robot_rl.control.rig import load_rig
from robot_rl.core.clock import now
from robot_rl.core.errors import ConfigError
from robot_rl.runtime.policy_deployment import (
    DeployConfig, GoalReachPolicy, auto_replan_steps, episode_runtime, load_latency_calibration, make_converter,
    run_deploy, stream_latencies,
)
from robot_rl.runtime.loop_link import DeltaActionParams, DeltaTargetConverter, LoopActionSink
from robot_rl.runtime.scheduler import ScheduledAction
from robot_rl.sim.env import integrate_delta_action

# a generous state timeout: these tests are about the runtime path, and a loaded CI host may not give
# the loop real-time priority (the deploy CLI test sets the same through an override)
STATE_TIMEOUT = 0.5


@pytest.fixture(scope="module")
def loop():
    raw = load_rig("panda_twin").raw
    raw["control"]["safety"]["state_timeout"] = STATE_TIMEOUT
    with ControlLoopProcess(load_rig(raw), task={"name": "reach", "params": {}}) as lp:
        yield lp


def _limits(loop):
    L = loop.rig.safety
    return L.workspace_min, L.workspace_max


# ----------------------------------------------------------------------------- pure conversion
def _snap(mode, ref_pos, ee_pos=None, t=10.0):
    q = np.array([0.0, 1.0, 0.0, 0.0])
    return SimpleNamespace(mode=mode, ref_pos=np.asarray(ref_pos, float), ref_quat=q,
                           ee_pos=np.asarray(ee_pos if ee_pos is not None else ref_pos, float), t=t)


def test_chunk_integrates_twin_env_deltas_from_the_commanded_target():
    conv = DeltaTargetConverter(DeltaActionParams(20.0), [0.15, -0.45, 0.005], [0.8, 0.45, 0.75])
    start = np.array([0.4, 0.0, 0.3])
    acts = [np.array([1, 0, 0, 0, 0, 0.5, -1.0]), np.array([0, 1, 0, 0, 0, 0, 1.0]), np.array([0, 0, -1, 0, 0, 0, 0])]
    pending = [ScheduledAction(10.05 + k * 0.05, a) for k, a in enumerate(acts)]
    # holding (episode start): the chunk starts at the controller's reference pose
    targets = conv.convert(pending, _snap(ControllerMode.HOLD, start))
    pos, quat = start, np.array([0.0, 1.0, 0.0, 0.0])
    for tg, sa in zip(targets, pending):   # TwinEnv's function, step by step, gives the same targets
        pos, quat, grip = integrate_delta_action(sa.action, pos, quat, start, 0.02, 0.075, 0.04,
                                                 [0.15, -0.45, 0.005], [0.8, 0.45, 0.75])
        assert np.allclose(tg.position, pos) and np.allclose(tg.quat, quat) and tg.gripper == grip
        assert tg.t == pytest.approx(sa.t + 0.05)       # reached one action period after the action
    assert np.allclose(targets[1].position, start + [0.02, 0.02, 0.0])
    # tracking: a replanned chunk starts from the commanded trajectory at its first action time
    # (between the first two targets here), not from the measured TCP
    again = conv.convert([ScheduledAction(10.125, np.zeros(7))], _snap(ControllerMode.TRACKING, start))
    assert np.allclose(again[0].position, 0.5 * (targets[0].position + targets[1].position))
    # a held cycle stops the plan: one target on the commanded trajectory, nothing sent beyond it
    expected = 0.6 * targets[1].position + 0.4 * again[0].position      # 10.15 .. 10.175
    stop = conv.freeze(10.16)
    assert stop.t == 10.16 and np.allclose(stop.position, expected) and stop.gripper == again[0].gripper
    assert np.allclose(conv.commanded(11.0)[0], expected) and conv.freeze(10.2) is None


def test_target_lead_over_the_measured_tcp_is_clipped_as_in_twin_env():
    conv = DeltaTargetConverter(DeltaActionParams(20.0), [0.15, -0.45, 0.005], [0.8, 0.45, 0.75])
    start = np.array([0.4, 0.0, 0.3])
    pending = [ScheduledAction(10.05 + k * 0.05, np.array([1.0, 0, 0, 0, 0, 0, 0])) for k in range(5)]
    targets = conv.convert(pending, _snap(ControllerMode.HOLD, start))
    assert targets[-1].position[0] == pytest.approx(start[0] + 0.04)   # 5 x 2 cm, lead capped at 4 cm


def test_each_action_is_converted_when_due_with_the_tcp_measured_then_and_sent_once():
    """The sink sends an action's target once, when the action becomes due, with that moment's snapshot:
    the lead clip sees the TCP TwinEnv.step would, however old the chunk is. A replan takes over from its
    action due now (its target supersedes the old plan's, same stamp) and sends none before it; a
    lookahead sends targets earlier, still once each."""
    clock = SimpleNamespace(t=10.0)
    pushed = []
    fake_loop = SimpleNamespace(push_target=pushed.append)
    start = np.array([0.4, 0.0, 0.3])
    source = SimpleNamespace(last=_snap(ControllerMode.HOLD, start))
    conv = DeltaTargetConverter(DeltaActionParams(20.0), [0.15, -0.45, 0.005], [0.8, 0.45, 0.75])
    sink = LoopActionSink(fake_loop, conv, source, clock=lambda: clock.t)
    plan = [ScheduledAction(10.05 + k * 0.05, np.array([1.0, 0, 0, 0, 0, 0, 0])) for k in range(6)]
    sink(plan)                                   # nothing due yet: the first action, once
    assert [round(t.t, 3) for t in pushed] == [10.1] and sink.dispatch() == 0
    ee = start.copy()
    for k in range(1, 6):                        # the arm lags 3 cm behind its target
        clock.t = plan[k].t + 0.002
        pos_due = conv.commanded(plan[k].t)[0]
        ee = pos_due - [0.03, 0, 0]
        source.last = _snap(ControllerMode.TRACKING, start, ee_pos=ee)
        pushed.clear()
        assert sink.dispatch() == 1 and sink.dispatch() == 0     # once
        assert pushed[0].t == pytest.approx(plan[k].t + 0.05)
        # TwinEnv: commanded target + 2 cm, at most 4 cm ahead of the TCP measured now
        assert pushed[0].position[0] == pytest.approx(min(pos_due[0] + 0.02, ee[0] + 0.04))
        if k == 2:                               # a replan over the actions sent: the due one supersedes
            sink(plan[1:])
            assert [round(t.t, 3) for t in pushed] == [round(plan[2].t + 0.05, 3)] * 2
    clock.t = plan[-1].t + 0.06                  # the plan ran out: nothing more is sent
    assert sink.dispatch() == 0 and sink.pushed == 7

    pushed.clear()                               # one action of lookahead: each target a period early, once
    clock.t = 10.0
    ahead = LoopActionSink(fake_loop, DeltaTargetConverter(DeltaActionParams(20.0), [0.15, -0.45, 0.005],
                                                           [0.8, 0.45, 0.75]), source, lookahead_steps=1,
                           clock=lambda: clock.t)
    ahead(plan)
    for k in range(6):
        clock.t = plan[k].t + 0.002
        ahead.dispatch()
    stamps = [round(t.t, 3) for t in pushed]
    assert stamps == [round(a.t + 0.05, 3) for a in plan]


def test_replan_steps_leave_time_for_the_next_inference():
    assert auto_replan_steps(8, 0.001, 20.0) == 6     # the action at t_obs is always past, one overlap
    assert auto_replan_steps(8, 0.12, 20.0) == 4      # 3 actions pass during a 120 ms inference
    assert auto_replan_steps(4, 1.0, 20.0) == 1       # slower than the chunk: replan as soon as possible


def test_latency_compensation_from_a_calibration_directory(tmp_path):
    (tmp_path / "latency.yaml").write_text("calibration_id: x\nlatency_s: {ee_pos: 0.004, cam_front_rgb: 0.05}\n")
    cal = load_latency_calibration(tmp_path)
    assert cal == {"ee_pos": 0.004, "cam_front_rgb": 0.05}
    # streams the policy does not read are ignored; explicit runtime.latency_s wins
    assert stream_latencies(["ee_pos", "task_state"], {}, cal) == {"ee_pos": 0.004}
    assert stream_latencies(["ee_pos"], {"ee_pos": 0.001}, cal) == {"ee_pos": 0.001}
    with pytest.raises(ConfigError, match=r"unknown stream\(s\) \['nope'\]"):
        stream_latencies(["ee_pos"], {"nope": 0.1}, cal)
    (tmp_path / "latency.yaml").write_text("latency_s: {ee_pos: fast}\n")
    with pytest.raises(ConfigError, match=r"latency.yaml: latency_s.ee_pos='fast'"):
        load_latency_calibration(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_latency_calibration(tmp_path / "none")


# ----------------------------------------------------------------------------- through the loop process
def test_episode_reset_draws_the_same_goal_as_the_synchronous_twin(loop):
    from robot_rl.sim.mujoco_twin import Twin

    s = loop.reset_episode(100003)
    tw = Twin(task="reach")
    tw.reset(100003)
    assert np.allclose(s.task_obs, tw.task.goal, atol=1e-6)
    assert np.linalg.norm(s.ee_pos - tw.arm.read_state().ee_pos) < 1e-3
    tw.close()


def test_scripted_policy_reaches_the_goal_through_the_loop_process(loop):
    cfg = DeployConfig(episodes=2, progress=False)
    paused = []

    def pause_loop(episode):   # the loop process descheduled for 30 ms once, between the episodes
        if not paused:
            os.kill(loop.proc.pid, signal.SIGSTOP)
            time.sleep(0.03)
            os.kill(loop.proc.pid, signal.SIGCONT)
            paused.append(episode)

    res = run_deploy(GoalReachPolicy(20.0), loop, cfg, *_limits(loop), time_limit_s=4.0, on_episode=pause_loop)
    assert res.success_rate == 1.0 and res.episodes == 2
    assert all(0.2 < e["time_to_success_s"] < 4.0 for e in res.per_episode)
    r = res.runner
    assert r["held_cycles"] == 0 and r["cycles"] == res.env_steps > 0
    assert r["replan_steps"] == 6 and r["target_hz"] == pytest.approx(20.0 / 6)   # a chunk every 6 actions
    assert 0.7 * r["target_hz"] < r["achieved_hz"] < 1.1 * r["target_hz"]         # on a shared, loaded host
    assert r["inference_ms_p50"] > 0 and r["obs_age_ms_p50"] < 50
    lp = res.loop
    assert lp["ticks"] > 1000 and lp["tick_us_p50"] > 0
    assert 1 <= lp["deadline_misses"] <= lp["ticks"]                 # the pause cost at least one tick its slot
    assert lp["deadline_miss_rate"] == pytest.approx(lp["deadline_misses"] / lp["ticks"])
    # what the loop's miss policy did with each miss (the last torque held once, or a braking tick)
    assert lp["miss_held"] + lp["miss_braked"] == lp["deadline_misses"] and lp["law"] in ("compiled", "python")
    assert lp["safety_counts"]["target_jump"] == 0 and lp["safety_counts"]["state_stale"] == 0
    assert not loop.torch_loaded


def _start_moving(loop, policy, cfg, cycles=8):
    """Run `cycles` runner cycles at 20 Hz towards a far goal; returns (runner, source, sink)."""
    loop.reset_episode(100001)
    runner, source, sink = episode_runtime(policy, loop, cfg, make_converter(policy, cfg, *_limits(loop)))
    runner.reset()
    for _ in range(3):
        source.poll()
        time.sleep(0.02)
    for _ in range(cycles):
        source.poll()
        runner.cycle()
        _poll(source, sink, 0.05)
    return runner, source, sink


def _poll(source, sink, seconds):
    """What deploy does between runner cycles: poll the state and dispatch the actions that became due."""
    end = now() + seconds
    while now() < end:
        source.poll()
        sink.dispatch()
        time.sleep(0.005)


def _watch(loop, seconds):
    out = []
    end = now() + seconds
    while now() < end:
        out.append(loop.state())
        time.sleep(0.01)
    return out


def test_a_stalled_policy_makes_the_arm_hold(loop):
    """No new targets (the policy process died or hangs): the controller's target watchdog holds."""
    cfg = DeployConfig(progress=False)
    _start_moving(loop, GoalReachPolicy(20.0, gain=0.1, speed=0.5), cfg)
    moving = loop.state()
    assert int(moving.mode) == ControllerMode.TRACKING
    snaps = _watch(loop, loop.rig.safety.target_timeout + HOLD_SETTLE)   # the runner no longer cycles
    assert int(snaps[-1].episode) == int(moving.episode)
    _assert_holding(snaps)


# after the watchdog fires the reference stops within hold_ramp_time; the arm (0.2 m/s when the
# targets stopped) overshoots a few mm and settles on the impedance law's time scale
HOLD_SETTLE = 1.0


def _assert_holding(snaps):
    last = snaps[-1]
    assert int(last.mode) == ControllerMode.HOLD and last.counts[Fault.TARGET_TIMEOUT] >= 1
    recent = [s for s in snaps if s.t > last.t - 0.3]
    assert max(np.linalg.norm(s.ref_pos - last.ref_pos) for s in recent) < 5e-4   # the reference is frozen
    assert np.linalg.norm(last.ee_pos - last.ref_pos) < 0.003                     # the arm holds it
    assert np.abs(last.dq).max() < 0.05


def test_stale_observations_hold_the_runner_and_the_arm(loop):
    """The state stream freezes: the runner holds (the policy is not called) and the arm holds."""
    policy = GoalReachPolicy(20.0, gain=0.1, speed=0.5)
    cfg = DeployConfig(max_staleness_s=0.05, progress=False)
    runner, source, sink = _start_moving(loop, policy, cfg)
    calls = policy.calls
    end = now() + loop.rig.safety.target_timeout + HOLD_SETTLE
    snaps, sent_at_hold = [], None
    while now() < end:          # the runner keeps cycling, but no new samples reach the assembler
        log = runner.cycle()
        if log.held and sent_at_hold is None:
            sent_at_hold = sink.pushed + sink.stops
        sink.dispatch()
        snaps.append(loop.state())
        time.sleep(0.05)
    assert log.held and "ms old" in log.reason
    assert policy.calls <= calls + 1      # at most one cycle still inside the staleness bound
    assert runner.stats.summary()["held_cycles"] >= len(snaps) - 1
    # the plan made from the old data was stopped (at most one target: only when it still reached beyond
    # the stop time), then nothing was sent
    assert sink.stops <= 1 and sink.pushed + sink.stops == sent_at_hold
    _assert_holding(snaps)


# ----------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained, tiny state-observation diffusion policy over the twin's streams (plumbing only)."""
    import torch

    from robot_rl.core.spec import FeatureSpec, PolicySpec
    from robot_rl.policies import PolicyConfig
    from robot_rl.policies.diffusion_policy import DiffusionPolicy
    from robot_rl.policies.io import save_policy

    torch.manual_seed(0)
    spec = PolicySpec(obs=(FeatureSpec("state", (11,), stream="ee_pos+ee_quat+gripper_pos+task_state"),),
                      action=FeatureSpec("action", (7,)), n_obs_steps=2, horizon=8, n_action_steps=4, rate_hz=20.0)
    cfg = PolicyConfig(denoiser="mlp", mlp_hidden_dim=32, mlp_num_blocks=1, step_embed_dim=16, state_dims=(32,),
                       num_inference_steps=4)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_policy(DiffusionPolicy(spec, cfg), path)
    return path


def test_deploy_cli_runs_a_checkpoint_and_writes_results(tiny_checkpoint, tmp_path):
    out = tmp_path / "deploy"
    cal = tmp_path / "cal"
    cal.mkdir()
    (cal / "latency.yaml").write_text("latency_s: {ee_pos: 0.002, cam_front_rgb: 0.03}\n")
    assert main(["deploy", f"policy={tiny_checkpoint}", "twin=true", "task=reach", "episodes=1", f"out={out}",
                 "progress=false", "runtime.time_limit_s=1.0", "runtime.settle_s=0.1", f"calibration={cal}",
                 f"robot.control.safety.state_timeout={STATE_TIMEOUT}"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["calibration"] == str(cal) and res["runner"]["latency_s"] == {"ee_pos": 0.002}
    log = (out / "cycles.csv").read_text().splitlines()
    assert log[0] == "episode,t_s,period_ms,held,obs_age_ms,inference_ms,dropped,reason"
    assert len(log) - 1 == res["runner"]["cycles"] > 0
    for key in ("success_rate", "episodes", "env_steps", "latency_ms_p50", "latency_ms_p99",
                "mean_time_to_success_s", "runner", "loop", "per_episode"):
        assert key in res, key
    assert res["stage"] == "deploy" and res["twin"] is True and res["episodes"] == 1 and res["env_steps"] > 0
    assert res["latency_ms_p50"] > 0 and res["latency_ms_p99"] >= res["latency_ms_p50"]
    for key in ("achieved_hz", "inference_ms_p50", "inference_ms_p99", "obs_age_ms_p50", "dropped_actions",
                "held_cycles"):
        assert key in res["runner"], key
    for key in ("tick_us_p50", "tick_us_p99", "deadline_misses"):
        assert key in res["loop"], key
    assert res["loop"]["torch_loaded"] is False


def test_deploy_without_the_twin_needs_a_real_rig(capsys):
    assert main(["deploy", "policy=scripted", "twin=false"]) == 1
    err = capsys.readouterr().err
    assert "real rig backend is required" in err and "robot=<rig>" in err and "backend: twin" in err
