"""policy_node: a policy checkpoint driving the arm through timestamped targets (the deploy runtime on ROS).

Parameters (configs/ros/policy.yaml): checkpoint (a checkpoint directory, or "scripted" for the
reference reach policy), mode (deploy | actor), device, torch_threads, rig (workspace box),
frame, status_period_s, runtime.* (robot_rl.runtime.deploy.DeployConfig: rate_hz (0: the policy's
action rate), replan_steps (0: from the measured inference time), poll_hz (action dispatch),
lookahead_steps, max_staleness_s, scheduler, blend_steps, ensemble_k, min_lead_s, max_target_lead,
action_frame), latency_s.<stream> (per-stream latency compensation), observations.<stream>
(the topic-to-stream mapping, as the recorder's: topic, kind, field, names, optional shape), and for
mode=actor learner_host, learner_port, token.

Configure loads the checkpoint (robot_rl.policies.io.load_policy; safetensors, nothing executed).
Activate subscribes to the streams the policy reads (each sample keeps its header stamp), to
/arm/ee_pose and /arm/diagnostics, and runs robot_rl.runtime.runner.PolicyRunner on its own thread
as the deploy runtime does (a policy call every replan period, due actions dispatched at poll_hz): stale observations hold (nothing is sent, the arm's target watchdog holds the
pose); each chunk becomes absolute EE targets (robot_rl.runtime.loop_link: TwinEnv's delta-action
semantics) published on /gripper/command and /arm/target_pose. ~/reset (Trigger) starts over (new
episode); ~/status (latched JSON) reports cycles, holds and latency.
"""

from __future__ import annotations

import importlib.util
import threading
import time

from robot_rl.core.clock import now
from robot_rl.core.errors import ConfigError
from robot_rl.runtime.transport import STATUS, Reply, Topic
from robot_rl_ros.policy_link import ArmView, TargetPublisher, TopicObservations, observation_routes
from robot_rl_ros.shell import ShellNode, main_for

ACTOR_MODULE = "robot_rl.runtime.actor"   # the online-RL actor/learner link
MODES = ("deploy", "actor")


class PolicyNode(ShellNode):
    DEFAULTS = {"checkpoint": "", "mode": "deploy", "device": "cpu", "torch_threads": 1, "rig": "panda_twin",
                "frame": "base", "status_period_s": 1.0, "learner_host": "127.0.0.1", "learner_port": 0, "token": ""}

    def __init__(self, name: str = "policy", **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.policy = self.runner = self.obs = None
        self._lock = threading.Lock()
        self.last_error = ""

    # -- configure ------------------------------------------------------------------------------
    def setup(self) -> None:
        from robot_rl.control.rig import load_rig
        from robot_rl.runtime.deploy import DeployConfig, GoalReachPolicy, StreamPolicy

        mode = str(self.param("mode"))
        if mode not in MODES:
            raise ConfigError(f"{self.where('mode')}: {mode!r} is not one of {MODES}")
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
        self.routes, self.unchecked = observation_routes(self.params("observations"), self.policy.streams,
                                                         self.where("observations"))
        L = rig.safety
        self.workspace = (L.workspace_min, L.workspace_max)
        self.get_logger().info(f"policy {ckpt}: streams {self.policy.streams}, {self.policy.action_hz:g} Hz actions")

    def _check_actor(self) -> None:
        """Actor mode is declared (finetune.launch.py) but not wired: robot_rl.runtime.actor.Actor steps a
        Gymnasium env, and there is no env over the graph's topics for it yet (docs/ros2.md)."""
        learner = f"{self.param('learner_host')}:{self.param('learner_port')}"
        if importlib.util.find_spec(ACTOR_MODULE) is None:   # looked up, not imported (it pulls in torch)
            raise ConfigError(f"{self.where('mode')}: actor mode needs {ACTOR_MODULE} (the online-RL actor/learner "
                              f"link to learner {learner}), which this robot_rl does not have; use mode:=deploy")
        raise ConfigError(f"{self.where('mode')}: actor mode is not wired yet: {ACTOR_MODULE}.Actor steps a "
                          f"Gymnasium env and policy_node has no env over the graph's topics for it (learner "
                          f"{learner}); use mode:=deploy, or robot-rl finetune on the twin")

    # -- activate -------------------------------------------------------------------------------
    def _fresh_runtime(self) -> None:
        from robot_rl.runtime.deploy import make_converter
        from robot_rl.runtime.loop_link import LoopActionSink, make_assembler
        from robot_rl.runtime.runner import PolicyRunner
        from robot_rl.runtime.scheduler import ActionScheduler

        p, c = self.policy, self.cfg
        asm = make_assembler(list(p.streams), int(p.n_obs_steps), float(p.action_hz), c.max_staleness_s, c.latency_s)
        if self.obs is None:
            self.obs = TopicObservations(self.routes, self.unchecked, asm)
        else:
            self.obs.replace(asm)
        self.sink = LoopActionSink(self.targets, make_converter(p, c, *self.workspace), self.arm,
                                   lookahead_steps=c.lookahead_steps)
        self.runner = PolicyRunner(p, self.obs, ActionScheduler(c.scheduler, c.blend_steps, c.ensemble_k,
                                                                 c.min_lead_s), self.sink, replan_s=self._replan_s())
        self.runner.reset()
        self._auto_replan = not (c.rate_hz or c.replan_steps)

    def _replan_s(self, inference_s: float | None = None) -> float:
        """Seconds between policy calls: runtime.rate_hz, else replan_steps actions, else as many actions as
        the chunk holds minus those that pass during inference (robot_rl.runtime.deploy.auto_replan_steps)."""
        from robot_rl.runtime.deploy import auto_replan_steps

        c, hz = self.cfg, float(self.policy.action_hz)
        if c.rate_hz:
            return 1.0 / float(c.rate_hz)
        if c.replan_steps:
            return int(c.replan_steps) / hz
        steps = int(getattr(self.policy, "n_action_steps", 1))
        return auto_replan_steps(steps, inference_s or 0.0, hz) / hz

    def attach(self, transport) -> None:
        self.arm = ArmView()
        self.targets = TargetPublisher(transport, str(self.param("frame")))
        self.obs = None
        self._fresh_runtime()
        self.obs.attach(transport)
        self.arm.attach(transport)
        self.status_pub = transport.publisher(Topic("~/status", "status", STATUS))
        transport.serve("~/reset", "trigger", lambda _: self.reset())
        self.start_worker(self._run, "policy-runner")

    def reset(self) -> Reply:
        with self._lock:
            self._fresh_runtime()
        return Reply(True, "policy, action schedule and observation history reset")

    def _run(self) -> None:
        """As robot_rl.runtime.deploy.run_episode: at poll_hz the sink dispatches the actions that became
        due (each converted with the newest measured pose); a policy cycle runs every replan period."""
        poll_s = 1.0 / float(self.cfg.poll_hz)
        period = float(self.param("status_period_s"))
        next_status = now()
        last = None
        while not self.stopping:
            try:
                with self._lock:
                    log = self.runner.step()
                    if log is not None and not log.held and self._auto_replan:   # from the first inference
                        self.runner.replan_s = self._replan_s(log.inference_s)
                        self._auto_replan = False
                    last = log or last
                    next_cycle = self.runner.next_cycle
                if last is not None and now() >= next_status:
                    next_status = now() + period
                    self.status_pub.publish(self.status(last))
            except Exception as e:   # never leave the arm with a dead runner silently: logged and reported
                self.last_error = f"{type(e).__name__}: {e}"
                self.get_logger().error(self.last_error, throttle_duration_sec=2.0)
                next_cycle = None
            time.sleep(max(0.0, min(poll_s, (next_cycle or 0.0) - now())) if next_cycle else poll_s)

    def status(self, last) -> dict:
        s = self.runner.stats.summary()
        return {**s, "held": last.held, "hold_reason": last.reason, "targets_sent": self.targets.sent,
                "replan_s": self.runner.replan_s, "received": dict(self.obs.received), "last_error": self.last_error}

    def release(self) -> None:
        self.policy = self.runner = self.obs = None


main = main_for(PolicyNode)

if __name__ == "__main__":
    main()
