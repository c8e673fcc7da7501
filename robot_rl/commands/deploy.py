"""Run a policy through the runtime and the 1 kHz impedance loop process, episode by episode.

    robot-rl deploy policy=<checkpoint dir> twin=true task=<reach|push|lift|insert> episodes=<n> \
        [calibration=<dir with latency.yaml>]

Policy runner (observations from the loop's state snapshots, staleness -> hold, per-stream latency
compensation from calibration, a new chunk every runtime.replan_steps actions, past actions dropped,
chunks blended) -> absolute timestamped EE targets -> the ControlLoopProcess (twin physics at
wall-clock rate) -> success from the task check. Reports success rate, time to success, runner timing
(achieved rate, inference p50/p99, observation age, dropped actions, held cycles) and loop timing
(tick p50/p99, deadline misses) in results.json, and the per-cycle log in cycles.csv.
A camera policy's frames are rendered in this process by the twin camera source (robot_rl.sim.twin_cameras)
from the scene the loop publishes, at each camera's fps: the loop process never renders.
`policy=scripted` runs the reference reach policy (no checkpoint) to check the runtime alone.
twin=false needs a real arm backend (robot=<rig>, configs/robot/<rig>.yaml `backend:`).
"""

from __future__ import annotations

from robot_rl.core.config import to_plain
from robot_rl.core.errors import ConfigError
from robot_rl.core.fields import (Invalid, Rule, Unusable, choice, existing_path, integer, key_of, number,
                                  optional)
from robot_rl.learning.spec_builder import OBS_KINDS, check_obs


def _policy_source(v):
    if v == "scripted":
        return v
    try:
        return existing_path.check(v)
    except Invalid as e:
        raise Unusable(f"{e} (policy= takes a checkpoint directory or scripted)") from None


FIELDS = {
    "policy": optional(Rule(_policy_source)),
    "obs": optional(choice(*OBS_KINDS)),
    "calibration": optional(existing_path),
    "episodes": integer(1),
    "profile": optional(key_of("robot.control.profiles")),
    "runtime.replan_steps": optional(integer(1)),
    "runtime.rate_hz": optional(number(0.0, min_open=True)),
    "runtime.poll_hz": number(0.0, min_open=True),
    "runtime.lookahead_steps": integer(0),
    "runtime.max_staleness_s": number(0.0, min_open=True),
    "runtime.max_frame_age_s": optional(number(0.0, min_open=True)),
    "runtime.scheduler": choice("replace", "crossfade", "ensemble"),
    "runtime.blend_steps": integer(0),
    "runtime.ensemble_k": number(0.0),
    "runtime.min_lead_s": number(0.0),
    "runtime.settle_s": number(0.0),
    "runtime.time_limit_s": optional(number(0.0, min_open=True)),
    "runtime.max_target_lead": number(0.0, min_open=True),
    "runtime.action_frame": choice("base", "tool"),
    "runtime.latency_s.*": number(0.0),
}


def _real_rig_error(rig) -> ConfigError:
    from robot_rl.hardware.registry import available

    if rig.backend == "twin":
        what = (f"the selected rig robot={rig.name} has `backend: twin` (configs/robot/{rig.name}.yaml), the "
                f"simulator")
    else:
        what = f"the selected rig robot={rig.name} names backend {rig.backend!r}"
    return ConfigError(
        f"deploy twin=false: a real rig backend is required, and {what}. Select a real rig with robot=<rig> "
        f"(configs/robot/<rig>.yaml with `backend:` set to an arm backend registered in "
        f"the robot_rl.arms device group (known: {sorted(available('arms'))}) or a 'module:function' factory), "
        f"and an episode success signal for it; this version of robot_rl ships only the MuJoCo twin backend, "
        f"so nothing was run. Use twin=true to deploy in the twin.")


def _twin_cameras(policy_dir, spec, rig, task: dict):
    """The twin camera source for a policy's camera streams (None when it reads none): rendered in this
    process from the scene the loop publishes, at each camera's fps (configs/robot/<rig>.yaml)."""
    if not spec.images:
        return None
    from robot_rl.sim.cameras import camera_stream
    from robot_rl.sim.twin_cameras import TwinCameraSource

    known = {camera_stream(n): n for n in rig.cameras}
    bad = [f"{f.key} (stream {f.stream}, kind {f.kind})" for f in spec.images
           if f.kind != "rgb" or f.stream not in known]
    if bad:
        raise ConfigError(f"deploy {policy_dir}: the policy's image feature(s) {bad} are not twin camera streams; "
                          f"the twin renders rgb streams {sorted(known)} (configs/robot/{rig.name}.yaml cameras)")
    return TwinCameraSource(rig, task, [known[f.stream] for f in spec.images])


def run(cfg, args: list[str]) -> int:
    from robot_rl.control.loop import ControlLoopProcess
    from robot_rl.control.rig import load_rig
    from robot_rl.core.results import write_results
    from robot_rl.core.rundir import make_run_dir
    from robot_rl.runtime.policy_deployment import (DeployConfig, GoalReachPolicy, StreamPolicy, load_latency_calibration,
                                         run_deploy, stream_latencies, write_cycle_log)
    from robot_rl.sim.gym_tasks import is_gym_task, task_overrides
    from robot_rl.sim.tasks import make_task

    if args or not cfg.policy:
        raise ConfigError("usage: robot-rl deploy policy=<checkpoint dir|scripted> twin=true task=<twin task> "
                          "episodes=<n>")
    raw = to_plain(cfg.robot)
    rig = load_rig(raw)
    if not bool(cfg.twin):
        raise _real_rig_error(rig)
    episodes = cfg.episodes   # checked by FIELDS
    task_cfg = to_plain(cfg.task)
    if is_gym_task(task_cfg):   # the runner's targets feed the impedance loop, which a Gymnasium env does not have
        raise ConfigError(f"deploy: task=gym ({task_cfg.get('id')}) has no 1 kHz impedance loop to deploy to (that "
                          "loop is the twin's and the real arm's); run the policy at the env's own rate with "
                          f"`robot-rl eval policy={cfg.policy} {' '.join(task_overrides(task_cfg))} episodes={episodes}`")
    task = str(task_cfg["name"])
    task_params = dict(task_cfg.get("params") or {})
    time_limit = make_task(task, task_params).p.time_limit
    dcfg = DeployConfig.from_dict(to_plain(cfg.runtime) | {"episodes": episodes,
                                                             "seed_offset": int(cfg.seed_offset)})
    calibrated = load_latency_calibration(cfg.calibration) if cfg.get("calibration") else {}
    if str(cfg.policy) == "scripted":
        if task != "reach":
            raise ConfigError(f"deploy policy=scripted: the scripted reference policy does reach only, got task={task}")
        policy = GoalReachPolicy(rig.policy_hz)
        policy_name = "scripted"
        cameras = None
    else:
        import torch

        from robot_rl.policies.io import load_policy

        if cfg.torch_threads:
            torch.set_num_threads(int(cfg.torch_threads))
        loaded = load_policy(cfg.policy, device=cfg.device)
        spec = loaded.spec
        check_obs(cfg.obs, spec, cfg.policy)
        cameras = _twin_cameras(cfg.policy, spec, rig, {"name": task, "params": task_params})
        if spec.action.shape != (7,):
            raise ConfigError(f"deploy {cfg.policy}: spec.action.shape={list(spec.action.shape)}, expected [7] "
                              "(end-effector delta action dx dy dz drx dry drz gripper, as TwinEnv)")
        policy = StreamPolicy(loaded)
        policy_name = str(cfg.policy)
    # checked before the loop process starts
    dcfg.latency_s = stream_latencies(policy.streams, dcfg.latency_s, calibrated)
    out = make_run_dir(cfg, "deploy")
    raw["backend"] = "twin"
    loop = ControlLoopProcess(load_rig(raw), task={"name": task, "params": task_params})
    with loop:
        if cfg.profile:
            loop.set_profile(str(cfg.profile))
        L = loop.rig.safety
        print(f"deploy {policy_name} on twin task {task}: {episodes} episodes, actions at {policy.action_hz:g} Hz, "
              f"latency compensation {dcfg.latency_s or 'none'}, 1 kHz loop process (SCHED_FIFO: {loop.realtime})")
        try:
            result = run_deploy(policy, loop, dcfg, L.workspace_min, L.workspace_max, time_limit, cameras=cameras)
        finally:
            if cameras is not None:
                cameras.close()
        torch_in_loop = loop.torch_loaded
    data = result.to_dict()
    data["loop"]["torch_loaded"] = torch_in_loop
    write_cycle_log(out / "cycles.csv", result.cycles)
    write_results(out / "results.json", stage="deploy", policy=policy_name, task=task, twin=True,
                  calibration=str(cfg.calibration) if cfg.get("calibration") else None, **data)
    r, lp = result.runner, result.loop
    tts = f"{result.mean_time_to_success_s:.2f} s" if result.mean_time_to_success_s is not None else "n/a"
    fmt = (lambda v, f=".2f": "n/a" if v is None else format(v, f))
    print(f"{task}: success {result.success_rate:.0%} over {result.episodes} episodes, mean time to success {tts}\n"
          f"runner: a chunk every {r['replan_steps']:g} actions, {fmt(r['achieved_hz'], '.1f')} Hz achieved "
          f"({r['target_hz']:.2f} Hz target), inference p50 "
          f"{fmt(r['inference_ms_p50'])} ms p99 {fmt(r['inference_ms_p99'])} ms, obs age p50 "
          f"{fmt(r['obs_age_ms_p50'])} ms, dropped actions {r['dropped_actions']}, held cycles {r['held_cycles']}\n"
          f"loop: tick p50 {fmt(lp['tick_us_p50'], '.0f')} us p99 {fmt(lp['tick_us_p99'], '.0f')} us, deadline misses "
          f"{lp['deadline_misses']} of {lp['ticks']} ticks -> {out / 'results.json'}")
    return 0
