"""What a train, eval, distill or finetune run resolves from its config before any learning: the task
(named, the checkpoint's run's, or the store's), the prior episode store, and the environment factory
matching a policy's observation spec."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from robot_rl.core.config import to_plain
from robot_rl.core.errors import ConfigError
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.learning.spec_builder import privileged_streams
from robot_rl.sim.cameras import camera_name
from robot_rl.sim.env import TwinEnv
from robot_rl.sim.gym_tasks import gym_env_factory, is_gym_task, task_overrides
from robot_rl.sim.tasks import TASKS


def twin_env_factory(task_cfg, spec, seed: int = 0, randomization: dict | None = None, also=(), **env_kwargs):
    """An env factory for a task config matching the spec: a TwinEnv for {name, params} with the cameras the
    spec reads, rendered once per policy step (policy rollouts read nothing in between; `collect` records at
    camera rate), and the privileged task_state only when the spec reads it (a pixel policy's env has none,
    as on the real robot); a GymTaskEnv for {name: gym, id, ...} (robot_rl.sim.gym_tasks). randomization: the
    twin's domain randomization (RandomizationParams fields; twin tasks only); also: more specs whose streams
    the env must give (e.g. a reward classifier's); env_kwargs: more TwinEnv arguments."""
    specs = (spec, *also)
    if is_gym_task(task_cfg):
        if randomization:
            raise ConfigError(f"task=gym ({task_cfg.get('id')}): domain randomization is the twin's; a Gymnasium task "
                              "has no randomization hooks (drop randomize=true)")
        return gym_env_factory(task_cfg, cameras=any(s.images for s in specs), seed=seed)
    cams = list(dict.fromkeys(camera_name(f.stream) for s in specs for f in s.images))
    privileged = any(privileged_streams(s) for s in specs)
    return partial(TwinEnv, task=str(task_cfg["name"]), task_params=dict(task_cfg.get("params") or {}),
                   cameras=cams or False, privileged=privileged, seed=seed, camera_rate="policy",
                   randomization=randomization, **env_kwargs)


def resolve_task(task_cfg, store) -> dict | None:
    """The chosen task config, else the store's task when all its episodes come from one twin task (a Gymnasium
    task is never taken from a store: building it imports code, so it is chosen on the command line)."""
    if task_cfg:
        return to_plain(task_cfg)
    tasks = {m.get("task") for m in store.meta_list()}
    name = tasks.pop() if len(tasks) == 1 else None
    return {"name": name, "params": {}} if name in TASKS else None


def default_store(cfg, teacher_run: dict) -> str | None:
    """store=..., else the teacher's training store when it still exists."""
    if cfg.store:
        return str(cfg.store)
    store = teacher_run.get("store")
    if store and Path(store).exists():
        return str(store)
    return None


def run_task(cfg, teacher_run: dict, store: str | None) -> dict | None:
    """task=..., else the teacher's run task, else the store's single twin task. A Gymnasium task (task=gym) is
    only built when named on the command line: building it imports code, and a checkpoint never does."""
    if cfg.get("task"):
        return to_plain(cfg.task)
    task = teacher_run.get("task")
    if isinstance(task, dict) and task.get("name") and not is_gym_task(task):
        return task
    if is_gym_task(task if isinstance(task, dict) else None):
        print(f"the run's task is a Gymnasium task; to evaluate on it, name it: {' '.join(task_overrides(task))}")
        return None
    if store:
        return resolve_task(None, EpisodeStore.open(store))
    return None
