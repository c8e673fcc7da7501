"""Record scripted-teleop episodes in the MuJoCo twin into an episode store.

    robot-rl collect task=<reach|push|lift|insert> episodes=<n> store=<path> noise=<0..1> cameras=true|false

Every episode is labelled with the task's success check; injected operator failures (hesitation,
wrong approach, slip) are listed in the episode metadata. Prints the success rate and writes
results.json in the run directory.
"""

from __future__ import annotations

from pathlib import Path

from robot_rl.core.errors import ConfigError


def run(cfg, args) -> int:
    from tqdm import tqdm

    from robot_rl.control.rig import load_rig
    from robot_rl.core.results import write_results
    from robot_rl.core.rundir import make_run_dir
    from robot_rl.data.schema import EpisodeMeta
    from robot_rl.data.store import EpisodeStore
    from robot_rl.sim.env import TwinEnv
    from robot_rl.sim.experts import make_teleop, run_episode
    from robot_rl.sim.randomization import RandomizationParams
    from robot_rl.sim.recording import EpisodeRecorder, twin_stream_specs

    if args:
        raise ConfigError(f"collect: unexpected positional arguments {args}; use key=value")
    episodes = int(cfg.episodes)
    noise = float(cfg.noise)
    if episodes < 1:
        raise ConfigError(f"collect: episodes={episodes} must be >= 1")
    if not 0.0 <= noise <= 1.0:
        raise ConfigError(f"collect: noise={noise} must be in [0, 1]")
    out = make_run_dir(cfg, "collect")
    store_path = Path(cfg.store) if cfg.store else out / "episodes.zarr"
    rig = load_rig(cfg.robot)
    task = str(cfg.task.name)
    env = TwinEnv(task=task, rig=rig, policy_hz=cfg.policy_hz, cameras=bool(cfg.cameras), privileged=True,
                  task_params=dict(cfg.task.get("params") or {}), profile=cfg.profile, seed=int(cfg.seed),
                  randomization=RandomizationParams.default_on() if cfg.randomize else None)
    specs = twin_stream_specs(env)
    if store_path.exists():
        store = EpisodeStore.open(store_path, mode="a")
        missing = sorted({s.name for s in specs} - set(store.streams))
        if missing:
            raise ConfigError(f"collect: store {store_path} lacks streams {missing} (recorded with other options); "
                              f"use a new store=")
    else:
        store = EpisodeStore.create(store_path, specs)
    teleop = make_teleop(env, noise, seed=int(cfg.seed))
    results = []
    with store.writer() as w:
        rec = EpisodeRecorder(env, w)
        bar = tqdm(range(episodes), desc=f"collect {task} noise={noise}", unit="ep", disable=not cfg.progress)
        for i in bar:
            rec.begin(EpisodeMeta(task=task, source="scripted", rig=rig.name, calibration_id=env.twin.calibration_id,
                                  notes=f"noise={noise}"))
            r = run_episode(env, teleop, seed=int(cfg.seed) * 100003 + i, on_step=rec.on_step)
            rec.end(r["success"], noise=noise, failures=r["failures"], policy_hz=env.policy_hz,
                    randomization=env.twin.randomization_drawn)
            results.append(r)
            bar.set_postfix(success=f"{sum(x['success'] for x in results)}/{len(results)}")
    env.close()
    rate = sum(r["success"] for r in results) / len(results)
    write_results(out / "results.json", task=task, noise=noise, episodes=len(results), success_rate=rate,
                  env_steps=sum(r["steps"] for r in results), store=str(store_path),
                  failures_injected=sum(bool(r["failures"]) for r in results))
    print(f"collect: {len(results)} {task} episodes (noise {noise}) -> {store_path}; scripted success "
          f"{rate:.0%}; results in {out / 'results.json'}")
    return 0
