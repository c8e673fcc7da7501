"""Any registered Gymnasium env as a robot_rl task (`task=gym task.id=<id>`), and third-party experts as plug-ins.

A task config {name: gym, id, module, kwargs, max_episode_steps, rate_hz} (configs/task/gym.yaml) builds a
`GymTaskEnv`: the env behind `GymAdapter` (actions normalized to [-1, 1], success from info["is_success"] or
info["success"]) with its observation flattened into episode-store streams, so every stage that reads
stream-keyed observations (train, eval, finetune, distill) runs on it unchanged:
- a flat observation is the stream `state`; a dict observation gives one stream per leaf, nested keys joined
  with `_` (`{"robot": {"qpos": ...}}` -> `robot_qpos`); characters outside [A-Za-z0-9_] become `_`; a name
  that starts with a digit or is one of the recorder's own streams (action, reward, success, intervention)
  is prefixed with `obs_`;
- with cameras, `env.render()` (render_mode rgb_array) is the image stream `cam_render_rgb`, one frame per step.
Stream times are steps / rate_hz; rate_hz is task.rate_hz, else the env's metadata["render_fps"], else 1 / dt.

`expert=<module>:<attr>` (collect source=expert) is a class built with no arguments or a no-argument factory
whose object has get_action(obs), or a plain callable obs -> action; it sees the env's own observation and
returns an action in the env's own action space.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from robot_rl.core.errors import ConfigError
from robot_rl.data.schema import StreamSpec
from robot_rl.sim.adapter import GymAdapter

CAMERA_STREAM = "cam_render_rgb"
RECORDER_STREAMS = ("action", "reward", "success", "intervention")


def is_gym_task(task_cfg: Mapping[str, Any] | None) -> bool:
    return bool(task_cfg) and task_cfg.get("name") == "gym"


def task_label(task_cfg: Mapping[str, Any]) -> str:
    """The name a task goes by in messages and episode metadata: the twin task's name or the Gymnasium id."""
    return str(task_cfg.get("id")) if is_gym_task(task_cfg) else str(task_cfg["name"])


def task_overrides(task_cfg: Mapping[str, Any]) -> list[str]:
    """The command-line overrides that select this task in another robot-rl command."""
    if not is_gym_task(task_cfg):
        params = task_cfg.get("params") or {}
        return [f"task={task_cfg['name']}"] + [f"task.params.{k}={v}" for k, v in params.items()]
    args = ["task=gym", f"task.id={task_cfg['id']}"]
    args += [f"task.{k}={task_cfg[k]}" for k in ("module", "max_episode_steps", "rate_hz")
             if task_cfg.get(k) is not None]
    return args + [f"+task.kwargs.{k}={v}" for k, v in (task_cfg.get("kwargs") or {}).items()]


def import_module(name: str, what: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise ConfigError(f"{what}={name}: no module named {e.name!r} (is its package installed in this "
                          f"Python environment?)") from None


def stream_name(path: tuple[str, ...]) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", "_".join(map(str, path))) or "state"
    return f"obs_{name}" if name[0].isdigit() or name in RECORDER_STREAMS or name.startswith("cam_") else name


def observation_streams(space: spaces.Space, path: tuple[str, ...] = ()) -> dict[str, tuple[tuple[str, ...], Any]]:
    """{stream name: (key path, Box)} of an observation space (a Box, or Dicts of them)."""
    if isinstance(space, spaces.Dict):
        out = {}
        for k, sub in space.spaces.items():
            for name, leaf in observation_streams(sub, (*path, str(k))).items():
                if name in out:
                    raise ConfigError(f"task=gym: observations {'.'.join(out[name][0])} and {'.'.join(leaf[0])} "
                                      f"both map to the stream {name!r}")
                out[name] = leaf
        return out
    if isinstance(space, (spaces.Box, spaces.MultiBinary, spaces.MultiDiscrete, spaces.Discrete)):
        return {stream_name(path or ("state",)): (path, space)}
    raise ConfigError(f"task=gym: observation {'.'.join(path) or '(root)'} is a {type(space).__name__} space; "
                      "robot_rl records Box (or Dict of Box) observations")


def _leaf(obs, path: tuple[str, ...]) -> np.ndarray:
    for k in path:
        obs = obs[k]
    a = np.asarray(obs)
    a = a.astype(np.uint8) if a.dtype == bool else a
    return a.reshape(1) if a.ndim == 0 else a


class GymTaskEnv(gym.Wrapper):
    """A Gymnasium env as robot_rl stages expect it: normalized Box actions, stream-keyed dict observations,
    info["is_success"] every step (refused at construction when the env reports no success flag)."""

    def __init__(self, env: gym.Env, task_id: str, rate_hz: float | None = None, cameras: bool = False,
                 seed: int = 0) -> None:
        if not isinstance(env.action_space, spaces.Box):
            raise ConfigError(f"task.id={task_id}: the action space is {type(env.action_space).__name__} "
                              f"({env.action_space}); robot_rl's policies output continuous actions (a Box space)")
        try:
            adapted = GymAdapter(env)
        except ValueError as e:
            raise ConfigError(f"task.id={task_id}: {e}") from None
        super().__init__(adapted)
        self.task_id = task_id
        self.env_action_space = env.action_space   # the env's own units (a third-party expert's)
        self.raw_obs: Any = None   # the env's own last observation (what a third-party expert sees)
        self.streams = observation_streams(adapted.observation_space)   # a flat Box arrives as {"state": ...}
        self.policy_hz = float(rate_hz or env.metadata.get("render_fps") or
                               (1.0 / env.unwrapped.dt if getattr(env.unwrapped, "dt", None) else 0.0))
        if not self.policy_hz > 0:
            raise ConfigError(f"task.id={task_id}: the env declares no rate (metadata render_fps, dt); give "
                              "task.rate_hz=<steps per second>")
        self.cameras = bool(cameras)
        if self.cameras and env.render_mode != "rgb_array":
            raise ConfigError(f"task.id={task_id} cameras=true: the env renders {env.render_mode!r}, not 'rgb_array' "
                              f"(its render modes: {env.metadata.get('render_modes')})")
        if env.spec is None or env.spec.max_episode_steps is None:
            raise ConfigError(f"task.id={task_id}: the env has no episode limit; give task.max_episode_steps=<steps>")
        self.max_episode_steps = int(env.spec.max_episode_steps)
        obs = {k: spaces.Box(-np.inf, np.inf, b.shape or (1,), np.float32) for k, (_, b) in self.streams.items()}
        self.steps, self.time, self._seed, self._episodes = 0, 0.0, seed, 0
        self._check_success_flag()
        if self.cameras:   # the frame size, from a frame of the episode the check began
            obs[CAMERA_STREAM] = spaces.Box(0, 255, self._frame().shape, np.uint8)
        self.observation_space = spaces.Dict(obs)

    def _check_success_flag(self) -> None:
        """A success flag in reset's or a step's info, else ConfigError now (not silent zero success later)."""
        _, info = self.env.env.reset(seed=self._seed)
        if "is_success" in info or "success" in info:
            return
        _, _, _, _, info = self.env.env.step(self.env.to_env_action(np.zeros(self.action_space.shape)))
        if "is_success" not in info and "success" not in info:
            raise ConfigError(f"task.id={self.task_id}: the env reports no success flag (info has "
                              f"{sorted(info)}; robot_rl needs info['is_success'] or info['success'])")

    def flatten(self, obs) -> dict[str, np.ndarray]:
        return {k: _leaf(obs, path) for k, (path, _) in self.streams.items()}

    def _frame(self) -> np.ndarray:
        frame = np.asarray(self.env.render())
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ConfigError(f"task.id={self.task_id} cameras=true: render() returned {frame.dtype} {frame.shape}, "
                              "expected uint8 (H, W, 3)")
        return frame

    def _obs(self, raw) -> dict[str, np.ndarray]:
        self.raw_obs = raw["state"] if self.env._wrap_obs else raw   # the env's own observation
        o = self.flatten(raw)
        if self.cameras:
            o[CAMERA_STREAM] = self._frame()
        return o

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is None:
            seed = self._seed * 100003 + self._episodes
        self._episodes += 1
        raw, info = self.env.reset(seed=seed, options=options)
        self.steps, self.time = 0, 0.0
        return self._obs(raw), info

    def step(self, action):
        raw, r, term, trunc, info = self.env.step(action)
        if info.get("success_missing"):
            raise ConfigError(f"task.id={self.task_id}: a step's info lacks 'is_success'/'success' "
                              f"(has {sorted(info)})")
        self.steps += 1
        self.time = self.steps / self.policy_hz
        return self._obs(raw), r, term, trunc, info

    def normalize_action(self, env_action) -> np.ndarray:
        """An action in the env's own units, normalized to the policy's [-1, 1] (unclipped)."""
        return self.env.to_normalized(env_action)


def make_gym_env(task_cfg: Mapping[str, Any], cameras: bool = False, seed: int = 0) -> GymTaskEnv:
    """The GymTaskEnv of a task config {name: gym, id, module, kwargs, max_episode_steps, rate_hz}."""
    task_id = task_cfg.get("id")
    if not task_id:
        raise ConfigError("task=gym needs task.id=<Gymnasium id>, e.g. task=gym task.id=PandaReach-v3 "
                          "task.module=panda_gym")
    module = task_cfg.get("module")
    if module:
        import_module(str(module), "task.module")
    task_id = str(task_id)
    if ":" not in task_id and task_id not in gym.registry:
        near = difflib.get_close_matches(task_id, list(gym.registry), n=3)
        hint = f"; did you mean {near}?" if near else ""
        if not module:
            hint += " If its package registers it on import, add task.module=<python module>."
        raise ConfigError(f"task.id={task_id}: not a registered Gymnasium env{hint}")
    kwargs = dict(task_cfg.get("kwargs") or {})
    if task_cfg.get("max_episode_steps") is not None:
        kwargs["max_episode_steps"] = int(task_cfg["max_episode_steps"])
    if cameras:
        kwargs["render_mode"] = "rgb_array"
    try:
        env = gym.make(task_id, disable_env_checker=True, **kwargs)
    except gym.error.Error as e:
        raise ConfigError(f"task.id={task_id}: {e}") from None
    except TypeError as e:   # an unknown keyword: the env's constructor names it
        raise ConfigError(f"task.id={task_id} task.kwargs={task_cfg.get('kwargs')}: {e}") from None
    try:
        return GymTaskEnv(env, task_id, task_cfg.get("rate_hz"), cameras, seed)
    except BaseException:
        env.close()
        raise


def gym_state_streams(task_cfg: dict) -> list[str]:
    """The observation streams a Gymnasium task records (the env is built once to read its spaces)."""
    env = make_gym_env(task_cfg)
    try:
        return list(env.streams)
    finally:
        env.close()


def state_override(streams) -> str:
    """The `robot-rl train` override that makes a policy read these streams as its state."""
    return f"spec.obs.state.stream={'+'.join(sorted(streams))}"


def gym_env_factory(task_cfg: Mapping[str, Any], cameras: bool = False, seed: int = 0) -> Callable[[], GymTaskEnv]:
    """A GymTaskEnv factory; one env is built and closed now, so a wrong task.id, module or env fails before
    a run starts, not at its first evaluation."""
    make_gym_env(task_cfg, cameras, seed).close()

    def make() -> GymTaskEnv:
        return make_gym_env(task_cfg, cameras, seed)
    return make


# ---- recording ------------------------------------------------------------------------------------------

def gym_stream_specs(env: GymTaskEnv) -> list[StreamSpec]:
    hz = env.policy_hz
    specs = [StreamSpec("action", "float32", env.action_space.shape, hz, "normalized",
                        description=f"{env.task_id} action, normalized to [-1, 1] over its Box bounds"),
             StreamSpec("intervention", "uint8", (1,), hz, interp="hold",
                        description="1 when the action was taken over by a corrector, stamped like action"),
             StreamSpec("reward", "float32", (1,), hz, description=f"{env.task_id} reward"),
             StreamSpec("success", "uint8", (1,), hz, interp="hold")]
    for name, (path, box) in env.streams.items():
        dtype = "uint8" if box.dtype == bool else np.dtype(box.dtype or np.float32).name
        specs.append(StreamSpec(name, dtype, box.shape or (1,), hz,
                                description=f"observation {'.'.join(path) or '(flat)'} of {env.task_id}"))
    if env.cameras:
        h, w, _ = env.observation_space[CAMERA_STREAM].shape
        specs.append(StreamSpec(CAMERA_STREAM, "uint8", (h, w, 3), hz, codec="jpeg", interp="hold",
                                description=f"{env.task_id} env.render() (rgb_array)"))
    return specs


class GymRecorder:
    """Feeds a GymTaskEnv's steps into an EpisodeWriter (same interface as the twin's EpisodeRecorder)."""

    def __init__(self, env: GymTaskEnv, writer) -> None:
        self.env, self.w = env, writer
        self._t_prev = None
        self.active = False

    def begin(self, meta) -> None:
        self.w.begin_episode(meta)
        self._t_prev = None
        self.active = True

    def on_step(self, obs, action, reward, info) -> None:
        t = self.env.time
        if action is not None:
            self.w.append("action", np.asarray(action, np.float32), self._t_prev)
            self.w.append("intervention", np.array([bool(info.get("intervention", False))], np.uint8), self._t_prev)
        for k in self.env.streams:
            self.w.append(k, obs[k], t)
        if self.env.cameras:
            self.w.append(CAMERA_STREAM, obs[CAMERA_STREAM], t)
        self.w.append("reward", np.array([reward], np.float32), t)
        self.w.append("success", np.array([bool(info.get("is_success", False))], np.uint8), t)
        self._t_prev = t

    def end(self, success: bool, **meta) -> None:
        self.active = False
        self.w.commit(success=success, **meta)


def episode_recorder(env, writer):
    """The recorder for `env`: GymRecorder for a Gymnasium task, the twin's EpisodeRecorder otherwise."""
    if isinstance(env, GymTaskEnv):
        return GymRecorder(env, writer)
    from robot_rl.sim.episode_recorder import EpisodeRecorder

    return EpisodeRecorder(env, writer)


def stream_specs(env) -> list[StreamSpec]:
    if isinstance(env, GymTaskEnv):
        return gym_stream_specs(env)
    from robot_rl.sim.episode_recorder import twin_stream_specs

    return twin_stream_specs(env)


# ---- third-party experts --------------------------------------------------------------------------------

def load_expert(ref: str) -> Callable[[Any], Any]:
    """`<module>:<attr>` -> a function obs -> action (the env's own observation and action space)."""
    if not ref or ":" not in str(ref):
        raise ConfigError(f"expert={ref}: expected <python module>:<class, factory or function>, "
                          "e.g. expert=my_experts:ReachExpert")
    mod_name, attr = str(ref).split(":", 1)
    mod = import_module(mod_name, "expert")
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"expert={ref}: module {mod_name} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"expert={ref}: {attr} is a {type(obj).__name__}, not a class or function")
    if inspect.isclass(obj) or _takes_no_arguments(obj):
        try:
            built = obj()
        except Exception as e:   # the user's constructor: one line, not its traceback
            raise ConfigError(f"expert={ref}: building it with no arguments raised {type(e).__name__}: {e}") from None
        if callable(getattr(built, "get_action", None)):
            return built.get_action
        if inspect.isclass(obj) or not callable(built):
            raise ConfigError(f"expert={ref}: {type(built).__name__} has no get_action(obs) method")
        return built
    return obj


def _takes_no_arguments(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return not any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


class ExpertDriver:
    """Runs a third-party expert on a GymTaskEnv: its action (env units) checked, normalized, plus Gaussian noise
    of std `noise` in normalized units, clipped to [-1, 1]."""

    def __init__(self, ref: str, env: GymTaskEnv, noise: float, seed: int = 0) -> None:
        self.ref, self.env, self.noise = ref, env, float(noise)
        self.expert = load_expert(ref)
        self.rng = np.random.default_rng(seed)

    def __call__(self, raw_obs) -> np.ndarray:
        try:
            a = self.expert(raw_obs)
        except Exception as e:
            raise ConfigError(f"expert={self.ref}: get_action raised {type(e).__name__}: {e}") from None
        try:
            a = np.asarray(a, np.float64)
        except (TypeError, ValueError):
            a = np.array(None)
        shape = self.env.env_action_space.shape
        if a.dtype == object or a.shape != shape or not np.all(np.isfinite(a)):
            raise ConfigError(f"expert={self.ref}: returned {np.asarray(a, object).tolist()!r} (shape {a.shape}); "
                              f"{self.env.task_id} expects a finite action of shape {shape} in its own action space")
        a = self.env.normalize_action(a)
        if self.noise:
            a = a + self.rng.normal(0.0, self.noise, a.shape)
        return np.clip(a, -1.0, 1.0).astype(np.float32)


def run_expert_episode(env: GymTaskEnv, driver: ExpertDriver, seed: int, on_step=None) -> dict:
    obs, info = env.reset(seed=seed)
    if on_step is not None:
        on_step(obs, None, 0.0, info | {"is_success": False})
    success, done = False, False
    while not done:
        action = driver(env.raw_obs)
        obs, r, term, trunc, info = env.step(action)
        success |= bool(info["is_success"])
        if on_step is not None:
            on_step(obs, action, r, info)
        done = term or trunc
    return {"success": success, "steps": env.steps, "failures": []}
