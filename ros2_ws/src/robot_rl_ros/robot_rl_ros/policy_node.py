"""policy_node: a policy checkpoint driving the arm through timestamped targets (the deploy runtime on ROS).

Parameters (configs/ros/policy.yaml): checkpoint (a checkpoint directory, or "scripted" for the
reference reach policy), mode (deploy | actor), device, torch_threads, rig (workspace box),
frame, status_period_s, runtime.* (robot_rl.runtime.policy_deployment.DeployConfig: rate_hz (0: the policy's
action rate), replan_steps (0: from the measured inference time), poll_hz (action dispatch),
lookahead_steps, max_staleness_s, scheduler, blend_steps, ensemble_k, min_lead_s, max_target_lead,
action_frame), latency_s.<stream> (per-stream latency compensation), observations.<stream>
(the topic-to-stream mapping, as the recorder's: topic, kind, field, names, optional shape), and for
mode=actor (configs/ros/finetune.yaml) learner_host, learner_port, token, algo, algo_overrides (Hydra
overrides of configs/finetune.yaml, the same as the learner's: the actor's network must match the
weights it receives), actor_id, spool_dir, episode_time_s, reset_service, success_topic, fresh_timeout_s.

Configure loads the checkpoint (robot_rl.policies.io.load_policy; safetensors, nothing executed).
Activate subscribes to the streams the policy reads (each sample keeps its header stamp; short
KEEP_LAST queues, `observations.<stream>.qos` overrides; the callbacks only store the newest samples),
to /arm/ee_pose and /arm/diagnostics, and runs robot_rl.runtime.runner.PolicyRunner on its own thread
as the deploy runtime does: a policy call every replan period on the newest observations (camera
frames resized to the checkpoint's size), refused and logged when a stream's newest sample is older
than its max age (`runtime.max_staleness_s`, `observations.<stream>.max_age_s`: nothing is sent, the
arm's target watchdog holds the pose); each action becomes one absolute EE target when it is due
(robot_rl.runtime.loop_link: TwinEnv's delta-action semantics), published once on /gripper/command and
/arm/target_pose with the time it is to be reached as its stamp (docs/ros2.md, "Policy node timing").
The node is spun by a single-threaded executor (robot_rl_ros.shell.main_for). ~/reset (Trigger)
starts over (new episode); ~/status (latched JSON) reports cycles, holds, input lag, target lead.

mode=actor (online RL, robot_rl.runtime.actor/learner): configure also builds the algorithm's actor
side from the checkpoint (robot_rl.learning.rl.<algo>.make_agent, as the learner builds its own);
activate runs robot_rl.runtime.actor.Actor on a worker thread over robot_rl_ros.graph_env.GraphEnv
(episodes started by the reset service, one target per action, sparse success from the success topic),
sending each episode to the learner and swapping in its weights between episodes. A failed episode
(stale observations, a reset that does not answer) is logged, reported in ~/status and abandoned; the
next one starts after a pause. Deactivate abandons the running episode and closes the link (episodes
not yet acknowledged stay spooled and are resent by the next actor with the same spool_dir).
"""

from __future__ import annotations

import threading
from pathlib import Path

from robot_rl.core.clock import now
from robot_rl.core.errors import ConfigError
from robot_rl.runtime.transport import STATUS, Reply, Topic
from robot_rl_ros.policy_link import (ArmView, ObservationOptions, TargetPublisher, TopicObservations,
                                      observation_routes)
from robot_rl_ros.shell import ShellNode, main_for

MODES = ("deploy", "actor")
RETRY_S = 1.0   # actor mode: pause after a failed episode


class PolicyNode(ShellNode):
    DEFAULTS = {"checkpoint": "", "mode": "deploy", "device": "cpu", "torch_threads": 1, "rig": "panda_twin",
                "frame": "base", "status_period_s": 1.0, "learner_host": "127.0.0.1", "learner_port": 0, "token": "",
                "algo": "residual", "algo_overrides": "", "actor_id": "", "spool_dir": "", "episode_time_s": 10.0,
                "reset_service": "/twin/reset_episode", "success_topic": "/twin/status", "fresh_timeout_s": 2.0}

    def __init__(self, name: str = "policy", **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.policy = self.runner = self.obs = self.agent = self.actor = None
        self._lock = threading.Lock()
        self.last_error = ""

    # -- configure ------------------------------------------------------------------------------
    def setup(self) -> None:
        from robot_rl.control.rig import load_rig
        from robot_rl.runtime.policy_deployment import DeployConfig, GoalReachPolicy, StreamPolicy

        mode = str(self.param("mode"))
        if mode not in MODES:
            raise ConfigError(f"{self.where('mode')}: {mode!r} is not one of {MODES}")
        self.mode = mode
        if mode == "actor":
            self._check_actor()
        rig = load_rig(str(self.param("rig")))
        runtime = self.params("runtime", required=False)
        for key in ("rate_hz", "replan_steps"):   # 0 in the parameter file: automatic
            if key in runtime and float(runtime[key] or 0) <= 0:
                runtime[key] = None
        runtime["latency_s"] = self.params("latency_s", required=False)
        self.cfg = DeployConfig.from_dict(runtime)
        ckpt = str(self.param("checkpoint"))
        if not ckpt:
            raise ConfigError(f"{self.where('checkpoint')}: empty; a checkpoint directory or 'scripted'")
        if ckpt == "scripted":
            self.policy = GoalReachPolicy(rig.policy_hz)
        else:
            import torch

            from robot_rl.policies.io import load_policy

            torch.set_num_threads(int(self.param("torch_threads")))
            loaded = load_policy(ckpt, device=str(self.param("device")))
            if tuple(loaded.spec.action.shape) != (7,):
                raise ConfigError(f"{ckpt}: spec.action.shape={list(loaded.spec.action.shape)}, expected [7] "
                                  "(end-effector delta action dx dy dz drx dry drz gripper, as TwinEnv)")
            self.policy = StreamPolicy(loaded)
            if mode == "actor":
                self.agent = self._actor_agent(loaded)
        self.options = ObservationOptions()
        self.routes, self.unchecked = observation_routes(self.params("observations"), self.policy.streams,
                                                         self.where("observations"), self.options)
        self._check_image_shapes()
        L = rig.safety
        self.workspace = (L.workspace_min, L.workspace_max)
        self.get_logger().info(f"policy {ckpt}: streams {self.policy.streams}, {self.policy.action_hz:g} Hz actions")

    def _check_image_shapes(self) -> None:
        """The frame size each camera stream is resized to is the checkpoint's (spec.obs rgb features);
        an `observations.<stream>.shape` that says otherwise is a configuration error."""
        spec = getattr(self.policy, "spec", None)
        for f in (spec.obs if spec is not None else ()):
            if len(f.streams) != 1 or len(f.shape) != 3 or f.kind == "low_dim":
                continue
            C, H, W = (int(n) for n in f.shape)
            stream, want = f.streams[0], ((H, W, C) if f.kind == "rgb" else (H, W))
            given = self.options.image_shapes.get(stream)
            if given is not None and tuple(given) != want:
                raise ConfigError(f"{self.where(f'observations.{stream}.shape')}: {list(given)}, but the checkpoint's "
                                  f"{f.key} reads {list(want)} frames; set it to {list(want)} or leave it out "
                                  "(frames of any size are resized to the checkpoint's)")
            self.options.image_shapes[stream] = want

    def _check_actor(self) -> None:
        """The actor link's parameters, checked before anything is loaded."""
        if int(self.param("learner_port")) <= 0:
            raise ConfigError(f"{self.where('learner_port')}: actor mode needs the learner's port, got "
                              f"{self.param('learner_port')} (the port robot_rl.runtime.learner.Learner listens on)")
        if str(self.param("checkpoint")) == "scripted":
            raise ConfigError(f"{self.where('checkpoint')}: actor mode fine-tunes a trained checkpoint, not 'scripted'")
        if not str(self.param("spool_dir")):
            raise ConfigError(f"{self.where('spool_dir')}: empty; actor mode spools episodes there until the "
                              "learner acknowledges them")
        if not float(self.param("episode_time_s")) > 0:
            raise ConfigError(f"{self.where('episode_time_s')}: {self.param('episode_time_s')!r}, must be > 0")

    def _actor_agent(self, base):
        """The algorithm's actor side, built from the base as the learner builds its own (same config)."""
        import robot_rl.commands.finetune  # noqa: F401  (registers the finetune config's schema)
        from robot_rl.core.config import compose, to_plain
        from robot_rl.learning.rl.algorithms import ALGORITHMS
        from robot_rl.learning.rl.context import FinetuneContext
        from robot_rl.learning.rl.online import OnlineConfig

        algo = str(self.param("algo"))
        if algo not in ALGORITHMS:
            raise ConfigError(f"{self.where('algo')}: {algo!r} is not one of {list(ALGORITHMS)}")
        make_agent = ALGORITHMS[algo].make_agent
        if make_agent is None:
            raise ConfigError(f"{self.where('algo')}: {algo} has no actor side (make_agent); actor mode runs the "
                              "off-policy algorithms (residual, rlpd)")
        overrides = str(self.param("algo_overrides")).split()
        cfg = compose("finetune", [f"algo={algo}", *overrides])
        self.online = OnlineConfig(**to_plain(cfg.online) | {"seed": int(cfg.seed)})   # the run's seed, as finetune
        ctx = FinetuneContext(base=base, store=None, make_env=None, evaluate=None, config=to_plain(cfg.get(algo) or {}),
                              online=self.online, out=Path(str(self.param("spool_dir"))), seed=int(cfg.seed),
                              device=str(self.param("device")), progress=False)
        agent, _ = make_agent(ctx)
        return agent

    # -- activate -------------------------------------------------------------------------------
    def _fresh_runtime(self) -> None:
        from robot_rl.runtime.policy_deployment import make_converter, make_scheduler
        from robot_rl.runtime.loop_link import LoopActionSink, make_assembler
        from robot_rl.runtime.runner import PolicyRunner

        p, c = self.policy, self.cfg
        o = self.options
        asm = make_assembler(list(p.streams), int(p.n_obs_steps), float(p.action_hz), c.max_staleness_s, c.latency_s,
                             interp=o.interp, image_shapes=o.image_shapes, max_age_s=o.max_age_s)
        if self.obs is None:
            self.obs = TopicObservations(self.routes, self.unchecked, asm, o.qos)
        else:
            self.obs.replace(asm)
        converter = make_converter(p, c, *self.workspace)
        self.sink = LoopActionSink(self.targets, converter, self.arm, lookahead_steps=c.lookahead_steps)
        self.runner = PolicyRunner(p, self.obs, make_scheduler(c, converter), self.sink, replan_s=self._replan_s())
        self.runner.reset()
        self._auto_replan = not (c.rate_hz or c.replan_steps)

    def _replan_s(self, inference_s: float | None = None) -> float:
        """Seconds between policy calls: runtime.rate_hz, else replan_steps actions, else as many actions as
        the chunk holds minus those that pass during inference (robot_rl.runtime.policy_deployment.auto_replan_steps)."""
        from robot_rl.runtime.policy_deployment import auto_replan_steps

        c, hz = self.cfg, float(self.policy.action_hz)
        if c.rate_hz:
            return 1.0 / float(c.rate_hz)
        if c.replan_steps:
            return int(c.replan_steps) / hz
        steps = int(getattr(self.policy, "n_action_steps", 1))
        return auto_replan_steps(steps, inference_s or 0.0, hz) / hz

    def attach(self, transport) -> None:
        if self.mode == "actor":
            self._attach_actor(transport)
            return
        self.arm = ArmView()
        self.targets = TargetPublisher(transport, str(self.param("frame")))
        self.obs = None
        self._fresh_runtime()
        self.obs.attach(transport)
        self.arm.attach(transport, self.obs)
        self.status_pub = transport.publisher(Topic("~/status", "status", STATUS))
        transport.serve("~/reset", "trigger", lambda _: self.reset())
        self.start_worker(self._run, "policy-runner")

    def reset(self) -> Reply:
        with self._lock:
            self._fresh_runtime()
        return Reply(True, "policy, action schedule and observation history reset")

    def _run(self) -> None:
        """As robot_rl.runtime.policy_deployment.run_episode, off the executor thread (inference may take tens of ms;
        the executor only stores samples): a policy cycle every replan period on the newest observations,
        refused (held, logged) when a stream's newest sample is older than its max age; in between, each
        action is converted (with the newest measured pose) and published when it becomes due. The
        thread sleeps until the next of these events (waking at least poll_hz times a second)."""
        poll_s = 1.0 / float(self.cfg.poll_hz)
        period = float(self.param("status_period_s"))
        next_status = now()
        last, held = None, False
        while not self.stopping:
            try:
                with self._lock:
                    log = self.runner.step()
                    if log is not None and not log.held and self._auto_replan:   # from the first inference
                        self.runner.replan_s = self._replan_s(log.inference_s)
                        self._auto_replan = False
                    last = log or last
                    next_cycle = self.runner.next_cycle
                if log is not None and log.held != held:
                    held = log.held
                    if held:
                        self.get_logger().warning(f"holding (no targets sent): {log.reason}",
                                                  throttle_duration_sec=1.0)
                    else:
                        self.get_logger().info("acting again on fresh observations", throttle_duration_sec=1.0)
                if last is not None and now() >= next_status:
                    next_status = now() + period
                    self.status_pub.publish(self.status(last))
            except Exception as e:   # never leave the arm with a dead runner silently: logged and reported
                self.last_error = f"{type(e).__name__}: {e}"
                self.get_logger().error(self.last_error, throttle_duration_sec=2.0)
                self._stop.wait(poll_s)
                continue
            # sleep until the next cycle, action due or status, not a fixed poll (at most 1 / poll_hz)
            due = [t for t in (next_cycle, self.sink.next_due(), next_status if last else None) if t is not None]
            self._stop.wait(min(poll_s, max(0.0, min(due) - now())) if due else poll_s)

    def status(self, last) -> dict:
        s = self.runner.stats.summary()
        return {**s, "held": last.held, "hold_reason": last.reason, "targets_sent": self.targets.sent,
                "target_lead_ms": self.targets.lead_ms(), "plan_stops": self.sink.stops, "replan_s": self.runner.replan_s,
                "received": dict(self.obs.received), "last_error": self.last_error}

    # -- actor mode -------------------------------------------------------------------------------
    def _attach_actor(self, transport) -> None:
        from robot_rl.runtime.actor import Actor
        from robot_rl.runtime.policy_deployment import make_converter
        from robot_rl_ros.graph_env import GraphEnv, GraphEnvConfig

        cfg = GraphEnvConfig(float(self.policy.action_hz), float(self.param("episode_time_s")),
                             str(self.param("reset_service")), str(self.param("success_topic")),
                             float(self.cfg.max_staleness_s), float(self.param("fresh_timeout_s")))
        env = GraphEnv(transport, self.routes, self.unchecked, make_converter(self.policy, self.cfg, *self.workspace),
                       cfg, str(self.param("frame")), self.cfg.latency_s, stop=self._stop, options=self.options)
        self.status_pub = transport.publisher(Topic("~/status", "status", STATUS))
        self.episodes, self.last_episode = 0, {}
        self.actor = Actor(self.agent, lambda: env, (str(self.param("learner_host")), int(self.param("learner_port"))),
                           str(self.param("actor_id")) or self.get_name(), str(self.param("spool_dir")),
                           str(self.param("token")), self.online.gamma, self.online.reward, seed=self.online.seed)
        self.start_worker(self._run_actor, "rl-actor")

    def _run_actor(self) -> None:
        """Episodes until deactivated; a failed one is reported and abandoned (the arm's watchdog holds)."""
        from robot_rl_ros.graph_env import EnvStopped

        while not self.stopping:
            try:
                record = self.actor.run_episode()
                self.episodes += 1
                self.last_episode = {"steps": record.env_steps, "success": bool(record.success),
                                     "seq": record.meta["seq"], "weights_version": record.meta["weights_version"]}
            except EnvStopped:
                return
            except Exception as e:   # the episode is lost, the actor goes on with the next one
                self.last_error = f"{type(e).__name__}: {e}"
                self.get_logger().error(f"episode abandoned: {self.last_error}", throttle_duration_sec=2.0)
                self._stop.wait(RETRY_S)
            self.status_pub.publish(self.actor_status())

    def actor_status(self) -> dict:
        a = self.actor
        return {"mode": "actor", "episodes": self.episodes, "last_episode": self.last_episode,
                "weights_version": a.weights_version, "acked": a.acked, "pending": a.pending(),
                "last_error": self.last_error}

    def detach(self) -> None:
        self.stop_workers()
        if self.actor is not None:
            self.actor.close()
            self.actor = None

    def release(self) -> None:
        self.policy = self.runner = self.obs = self.agent = None


main = main_for(PolicyNode)

if __name__ == "__main__":
    main()
