"""Record episodes in the MuJoCo twin into an episode store: scripted teleop or a teleop device.

    robot-rl collect task=<reach|push|lift|insert> episodes=<n> store=<path> noise=<0..1> obs=state|image
    robot-rl collect task=gym task.id=<Gymnasium id> source=expert expert=<module>:<attr> noise=<0..1> episodes=<n>
    robot-rl collect source=<spacemouse|keyboard|gamepad|plug-in> options.<arg>=<value> session_keys=<kbd event device>
                     session.reset_s=<s> live_view=off|http|window

source=scripted (default): every episode is labelled with the task's success check; injected operator
failures (hesitation, wrong approach, slip) are listed in the episode metadata. A successful episode keeps
recording `hold_after_success_s` after the check succeeds, the operator holding still (as an operator holds
the success state before marking it), so the store's `success` stream has frames of success to learn from.
A device: an operator session at the twin's policy rate (robot_rl.runtime.teleop_session): the session keys
start, stop-and-save, discard and mark success/failure (the label is the operator's), the deadman gates
motion, the gripper toggles; after each episode the twin draws the next scene and `session.reset_s` passes
before the next start. keyboard and gamepad are read from their Linux event device (options.path=); a
2-button SpaceMouse has no session keys: add session_keys=<keyboard event device> or session.auto_start=true.
obs=image records the cameras (cameras=true) for image policies; the twin's task_state is recorded either way,
so state and image policies train on the same demos (an obs=image policy does not read it).
Prints a summary and writes results.json in the run directory.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from robot_rl.core.config import to_plain
from robot_rl.core.errors import ConfigError
from robot_rl.data.writer import EpisodeWriter
from robot_rl.core.fields import (boolean, choice, directory_target, integer, key_of, number, optional,
                                  text)

# a session needs a backend that reads the input itself: keyboard and gamepad logic read through evdev
BACKENDS = {"keyboard": "evdev_keyboard", "gamepad": "evdev_gamepad"}
EVENT_DEVICES = {"keyboard": "kbd", "gamepad": "joystick"}

FIELDS = {
    "episodes": integer(1),
    "noise": number(0.0, 1.0),
    "hold_after_success_s": number(0.0),
    "store": optional(directory_target),
    "source": text,
    "obs": choice("state", "image"),
    "cameras": optional(boolean),
    "policy_hz": optional(number(1.0, 100.0)),   # as the rig's control.policy_hz
    "profile": optional(key_of("robot.control.profiles")),
    "session.reset_s": number(0.0),
    "session.max_episode_s": number(0.0),
    "session_keys": optional(text),
    "teleop.max_linear_mps": optional(number(0.0, min_open=True)),
    "teleop.max_angular_radps": optional(number(0.0, min_open=True)),
    "teleop.deadband": optional(number(0.0, 1.0)),
    "teleop.require_deadman": optional(boolean),
    "teleop.frame": optional(choice("base", "ee")),
    "live_view": choice("off", "http", "window"),
    "live_view_port": integer(0, 65535),
    "live_view_fps": number(0.0, min_open=True),
}


def cameras_on(cfg) -> bool:
    """cameras=, else whether obs=image (an image policy's demos need the frames)."""
    if cfg.cameras is None:
        return cfg.obs == "image"
    if cfg.obs == "image" and not cfg.cameras:
        raise ConfigError("cameras=false: obs=image records the cameras; drop cameras=false or use obs=state")
    return bool(cfg.cameras)


def run(cfg, args) -> int:
    from robot_rl.runtime.live_view import LiveView, view_mode
    from robot_rl.sim.gym_tasks import is_gym_task

    if args:
        raise ConfigError(f"collect: unexpected positional arguments {args}; use key=value")
    episodes, noise, source = cfg.episodes, float(cfg.noise), str(cfg.source)   # checked by FIELDS
    if source == "expert" or is_gym_task(to_plain(cfg.task)):
        return record_expert(cfg, source, episodes, noise)
    if source == "scripted":
        return record(cfg, source, episodes, noise)
    if noise:
        raise ConfigError(f"collect: noise={noise} applies to source=scripted, not source={source}")
    mode = view_mode(cfg.live_view)
    device, keys = make_devices(cfg, source)
    with ExitStack() as opened:   # a wrong option, a missing device or display fails before the twin is built
        for d in (device, keys):
            if d is not None:
                d.connect()
                opened.callback(d.disconnect)
        view = None
        if mode != "off":
            view = opened.enter_context(LiveView(mode, str(cfg.live_view_host), int(cfg.live_view_port),
                                                 float(cfg.live_view_fps), title=f"robot-rl collect {cfg.task.name}"))
            if view.url:
                print(f"collect: live view at {view.url}")
        return record(cfg, source, episodes, noise, device, keys, view)


def record(cfg, source: str, episodes: int, noise: float, device=None, keys=None, view=None) -> int:
    """Build the twin of `robot=` and open the store, then record from the scripted teleop or the device."""
    from robot_rl.control.rig import load_rig
    from robot_rl.core.rundir import make_run_dir
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.hardware.teleop.actions import env_action_frame
    from robot_rl.sim.env import TwinEnv
    from robot_rl.sim.randomization import RandomizationParams
    from robot_rl.sim.episode_recorder import twin_stream_specs

    out = make_run_dir(cfg, "collect")
    store_path = Path(cfg.store) if cfg.store else out / "episodes.zarr"
    rig = load_rig(cfg.robot)
    teleop_config = getattr(getattr(device, "state", None), "config", None)   # BoundInputs devices
    env = TwinEnv(task=str(cfg.task.name), rig=rig, policy_hz=cfg.policy_hz, cameras=cameras_on(cfg),
                  privileged=True, task_params=dict(cfg.task.get("params") or {}), profile=cfg.profile,
                  seed=int(cfg.seed), randomization=RandomizationParams.default_on() if cfg.randomize else None,
                  action_frame=env_action_frame(teleop_config.frame) if teleop_config is not None else "base")
    specs = twin_stream_specs(env)
    if store_path.exists():
        store = EpisodeStore.open(store_path, mode="a")
        missing = sorted({s.name for s in specs} - set(store.streams))
        if missing:
            raise ConfigError(f"collect: store {store_path} lacks streams {missing} (recorded with other options); "
                              f"use a new store=")
    else:
        store = EpisodeStore.create(store_path, specs)
    try:
        if source == "scripted":
            return collect_scripted(cfg, env, store, store_path, out, rig, episodes, noise)
        return collect_with_device(cfg, env, store, store_path, out, rig, episodes, source, device, keys, view)
    finally:
        env.close()


def collect_scripted(cfg, env, store, store_path, out, rig, episodes: int, noise: float) -> int:
    from robot_rl.core.progress import progress_bar

    from robot_rl.core.results import write_results
    from robot_rl.data.schema import EpisodeMeta
    from robot_rl.sim.experts import make_teleop, run_episode
    from robot_rl.sim.episode_recorder import EpisodeRecorder

    task = env.task.name
    teleop = make_teleop(env, noise, seed=int(cfg.seed))
    results = []
    with EpisodeWriter(store) as w:
        rec = EpisodeRecorder(env, w)
        bar = progress_bar(range(episodes), desc=f"collect {task} noise={noise}", unit="ep")
        for i in bar:
            rec.begin(EpisodeMeta(task=task, source="scripted", rig=rig.name, calibration_id=env.twin.calibration_id,
                                  notes=f"noise={noise}"))
            r = run_episode(env, teleop, seed=int(cfg.seed) * 100003 + i, on_step=rec.on_step,
                            hold_after_success_s=float(cfg.hold_after_success_s))
            rec.end(r["success"], noise=noise, failures=r["failures"], policy_hz=env.policy_hz,
                    randomization=env.twin.randomization_drawn)
            results.append(r)
            bar.set_postfix(success=f"{sum(x['success'] for x in results)}/{len(results)}")
    rate = sum(r["success"] for r in results) / len(results)
    write_results(out / "results.json", stage="collect", task=task, source="scripted", noise=noise,
                  episodes=len(results), success_rate=rate, env_steps=sum(r["steps"] for r in results),
                  store=str(store_path), failures_injected=sum(bool(r["failures"]) for r in results))
    print(f"collect: {len(results)} {task} episodes (noise {noise}) -> {store_path}; scripted success "
          f"{rate:.0%}; results in {out / 'results.json'}")
    return 0


def record_expert(cfg, source: str, episodes: int, noise: float) -> int:
    """task=gym source=expert: a third-party expert (expert=<module>:<attr>) on a Gymnasium task; its success
    rate at this noise level goes to results.json (robot_rl.sim.gym_tasks)."""
    from robot_rl.core.progress import progress_bar

    from robot_rl.core.results import write_results
    from robot_rl.core.rundir import make_run_dir
    from robot_rl.data.schema import EpisodeMeta
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.sim.gym_tasks import (ExpertDriver, GymRecorder, gym_stream_specs, is_gym_task, make_gym_env,
                                        run_expert_episode)

    task_cfg = to_plain(cfg.task)
    if not is_gym_task(task_cfg):
        raise ConfigError(f"collect: source=expert runs a Gymnasium task's expert (task=gym task.id=<id> "
                          f"expert=<module>:<attr>); task={task_cfg['name']} records with source=scripted or a device")
    if source != "expert":
        raise ConfigError(f"collect: task=gym records a third-party expert: source=expert expert=<module>:<attr> "
                          f"(source={source} drives the twin)")
    twin_only = {k: cfg.get(k) for k in ("policy_hz", "profile", "randomize") if cfg.get(k)}
    if twin_only:
        raise ConfigError(f"collect: {twin_only} set the twin's rate, gains and randomization; a Gymnasium task takes "
                          "its rate from task.rate_hz (default: the env's) and its options from +task.kwargs.<name>=")
    env = make_gym_env(task_cfg, cameras=cameras_on(cfg), seed=int(cfg.seed))
    try:
        driver = ExpertDriver(str(cfg.expert or ""), env, noise, seed=int(cfg.seed))
        env.reset(seed=int(cfg.seed))
        driver(env.raw_obs)   # an expert with a wrong action fails here, before the store is touched
        specs = gym_stream_specs(env)
        out = make_run_dir(cfg, "collect")
        store_path = Path(cfg.store) if cfg.store else out / "episodes.zarr"
        if store_path.exists():
            store = EpisodeStore.open(store_path, mode="a")
            if {s.name: s.shape for s in specs} != {n: store.streams[n].shape for n in store.streams}:
                raise ConfigError(f"collect: store {store_path} has streams {sorted(store.streams)} of other shapes "
                                  f"or names than {env.task_id}'s; use a new store=")
        else:
            store = EpisodeStore.create(store_path, specs)
        results = []
        with EpisodeWriter(store) as w:
            rec = GymRecorder(env, w)
            bar = progress_bar(range(episodes), desc=f"collect {env.task_id} noise={noise}", unit="ep")
            for i in bar:
                rec.begin(EpisodeMeta(task=env.task_id, source="scripted", rig="gym", notes=f"expert={cfg.expert} "
                                      f"noise={noise}"))
                r = run_expert_episode(env, driver, seed=int(cfg.seed) * 100003 + i, on_step=rec.on_step)
                rec.end(r["success"], noise=noise, expert=str(cfg.expert), policy_hz=env.policy_hz)
                results.append(r)
                bar.set_postfix(success=f"{sum(x['success'] for x in results)}/{len(results)}")
    finally:
        env.close()
    rate = sum(r["success"] for r in results) / len(results)
    write_results(out / "results.json", stage="collect", task=env.task_id, source="expert", expert=str(cfg.expert),
                  noise=noise, episodes=len(results), success_rate=rate, env_steps=sum(r["steps"] for r in results),
                  store=str(store_path))
    print(f"collect: {len(results)} {env.task_id} episodes (expert {cfg.expert}, noise {noise}) -> {store_path}; "
          f"expert success {rate:.0%}; results in {out / 'results.json'}")
    return 0


def make_devices(cfg, source: str):
    """The teleop device named by `source` (registry name or plug-in) and the optional session-keys keyboard."""
    from robot_rl.core.config import dataclass_from_dict
    from robot_rl.hardware.device_errors import HardwareError
    from robot_rl.hardware.registry import create
    from robot_rl.hardware.teleop.evdev import EvdevKeyboard
    from robot_rl.hardware.teleop.events import Action
    from robot_rl.hardware.teleop.teleop_state import TeleopConfig

    options = dict(to_plain(cfg.options) or {})
    if source in EVENT_DEVICES and not options.get("path"):
        raise ConfigError(f"collect: source={source} reads a Linux input device: give options.path="
                          f"/dev/input/by-id/<...>-event-{EVENT_DEVICES[source]} (docs/hardware.md, Teleoperation)")
    teleop = {k: v for k, v in (to_plain(cfg.teleop) or {}).items() if v is not None}
    if source == "spacemouse" and "require_deadman" not in teleop:   # as SpaceMouse's own default
        teleop["require_deadman"] = options.get("deadman_button") is not None
    if teleop:
        try:
            options["config"] = dataclass_from_dict(TeleopConfig, teleop, "collect: teleop")
        except ValueError as e:
            raise ConfigError(f"collect: teleop: {e}") from None
    device = create("teleop", BACKENDS.get(source, source), **options)
    if not callable(getattr(device, "read", None)):
        raise HardwareError(f"collect: source={source}: {type(device).__name__} has no read(t) -> TeleopCommand")
    keys = EvdevKeyboard(str(cfg.session_keys)) if cfg.session_keys else None
    bindings = getattr(device, "bindings", None)
    if (keys is None and bindings is not None and Action.START not in bindings.values()
            and not cfg.session.auto_start):
        raise ConfigError(f"collect: source={source} has no session keys (start, stop-and-save, ...): add session_keys="
                          f"/dev/input/by-id/<...>-event-kbd, or session.auto_start=true with session.max_episode_s")
    return device, keys


def collect_with_device(cfg, env, store, store_path, out, rig, episodes: int, source: str, device, keys,
                        view) -> int:
    from robot_rl.core.progress import progress_bar

    from robot_rl.core.results import write_results
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.runtime.recording_session import RecordingSession, SessionConfig
    from robot_rl.runtime.teleop_session import DeviceSession, SessionSink
    from robot_rl.sim.episode_recorder import EpisodeRecorder

    s = to_plain(cfg.session)
    try:
        config = SessionConfig(task=env.task.name, rig=rig.name, source="teleop",
                               calibration_id=env.twin.calibration_id, max_episode_s=float(s["max_episode_s"]),
                               reset_s=float(s["reset_s"]), auto_start=bool(s["auto_start"]),
                               extra={"device": source, "policy_hz": env.policy_hz})
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"collect: session: {e}") from None
    session = RecordingSession(EpisodeWriter(store), [], config)
    bar = progress_bar(total=episodes, desc=f"collect {env.task.name} source={source}", unit="ep")
    teleop = DeviceSession(device, env, session, EpisodeRecorder(env, SessionSink(session)), keys=keys, view=view,
                           on_reply=bar.write)

    def show(signals: dict) -> None:
        bar.set_postfix_str(f"{signals['state']} {signals['elapsed_s']:.1f} s", refresh=False)
        bar.update(signals["saved"] - bar.n)

    rate = None
    try:
        teleop.open()
        rate = teleop.run(episodes, env.policy_hz if cfg.realtime else None, on_tick=show)
    except KeyboardInterrupt:   # the operator ends the session early: what was saved stays, results are written
        bar.write("collect: stopped by Ctrl-C; an open episode is saved with its mark, if any")
    finally:
        teleop.close()
        bar.close()
    status = session.status()
    saved = EpisodeStore.open(store_path)
    labels = [saved.episode_meta(i).get("success") for i in range(len(saved) - status["episodes_saved"], len(saved))]
    write_results(out / "results.json", stage="collect", task=env.task.name, source=source,
                  episodes=status["episodes_saved"], discarded=status["episodes_discarded"],
                  marked_success=sum(x is True for x in labels), marked_failure=sum(x is False for x in labels),
                  env_steps=teleop.ticks, store=str(store_path), overruns=rate.overruns if rate is not None else 0,
                  last_error=status["last_error"])
    print(f"collect: {status['episodes_saved']} {env.task.name} episodes from {source} -> {store_path} "
          f"({status['episodes_discarded']} discarded); results in {out / 'results.json'}")
    return 0 if not status["last_error"].startswith("saving failed") else 1
