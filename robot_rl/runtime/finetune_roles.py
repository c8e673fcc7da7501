"""`robot-rl finetune actors=N | role=learner | role=actor`: the off-policy algorithms (residual, rlpd)
across the actor/learner split (robot_rl.runtime.actor / learner).

    actors=N            a learner in this process and N twin actor processes on this machine
    role=learner        a learner only, for actors started elsewhere (learner.host/port/token)
    role=actor          one twin actor against learner.host:learner.port (another machine, or a restart)

The learner takes episodes in as they arrive, updates within the UTD budget, publishes weights, evaluates
its exported policy every online.eval_every env steps and stops at online.env_steps. Actors never wait on
it. Everything is durable: the learner's store (<out>/online.zarr) and checkpoint (<out>/learner), each
actor's spool (<out>/spool/<actor_id>); re-running the same command resumes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from robot_rl.core.errors import ConfigError, RobotRLError
from robot_rl.learning.rl.algorithms import ALGORITHMS

SPLIT_ALGORITHMS = tuple(name for name, a in ALGORITHMS.items() if a.make_agent is not None)


def _agent(cfg, ctx):
    if cfg.algo not in SPLIT_ALGORITHMS:
        raise ConfigError(f"finetune algo={cfg.algo}: actors/role need an off-policy algorithm, one of "
                          f"{list(SPLIT_ALGORITHMS)}")
    return ALGORITHMS[cfg.algo].make_agent(ctx)


def run_actor(cfg, ctx) -> int:
    """One twin actor until killed (or `actor_episodes` episodes, then until the learner took them in).
    Raises LearnerRefused (a RobotRLError: exit status 1 with the learner's reason) when the learner
    refuses it, and RobotRLError when episodes stay unacknowledged; either way they stay spooled."""
    from robot_rl.runtime.actor import Actor

    if ctx.make_env is None:
        raise ConfigError("finetune role=actor needs a twin task (task=...)")
    agent, _ = _agent(cfg, ctx)
    actor_id = str(cfg.actor_id or f"actor{cfg.seed}")
    link = cfg.learner
    actor = Actor(agent, ctx.make_env, (str(link.host), int(link.port)), actor_id, Path(ctx.out) / "spool" / actor_id,
                  token=str(link.token or ""), gamma=ctx.online.gamma, reward=ctx.online.reward, seed=int(cfg.seed),
                  make_corrector=ctx.make_corrector, make_success_fn=ctx.make_success_fn)
    print(f"actor {actor_id} -> learner {link.host}:{link.port}")
    try:
        actor.run(episodes=int(cfg.actor_episodes) or None)
        if not actor.drain():
            raise RobotRLError(f"actor {actor_id}: {actor.pending()} episode(s) not acknowledged by the learner at "
                               f"{link.host}:{link.port} within 30 s; they stay in {actor.spool} for the next run")
    finally:
        actor.close()
    return 0


def _spawn_actors(cfg, out: Path, port: int) -> list[subprocess.Popen]:
    from robot_rl.core.config import save_yaml, to_plain

    plain = to_plain(cfg)
    plain.update(role="actor", actors=0, device="cpu", out=str(out))
    plain["learner"] = dict(plain["learner"], host="127.0.0.1", port=port)
    procs = []
    for i in range(int(cfg.actors)):
        path = out / "actors" / f"twin{i}.yaml"
        save_yaml(dict(plain, actor_id=f"twin{i}", seed=int(cfg.seed) + 1 + i), path)
        log = open(out / "actors" / f"twin{i}.log", "ab")
        procs.append(subprocess.Popen([sys.executable, "-m", "robot_rl.runtime.finetune_roles", str(path)],
                                      stdout=log, stderr=subprocess.STDOUT))
    return procs


def learner_config(link):
    """LearnerConfig of the `learner:` config group; its limits can be set too (e.g. +learner.max_connections=128)."""
    from dataclasses import fields

    from robot_rl.core.config import to_plain
    from robot_rl.runtime.learner import LearnerConfig

    given = dict(to_plain(link))
    unknown = sorted(set(given) - {f.name for f in fields(LearnerConfig)})
    if unknown:
        raise ConfigError(f"learner.{unknown[0]}: unknown setting; known: {[f.name for f in fields(LearnerConfig)]}")
    return LearnerConfig(**given | {"token": str(given.get("token") or "")})


def run_learner(cfg, ctx):
    """Serve actors until online.env_steps; returns the FinetuneResult of the exported policy."""
    from robot_rl.core.progress import progress_bar

    from robot_rl.learning.rl.offpolicy import export_result
    from robot_rl.learning.rl.online import CurvePoint
    from robot_rl.runtime.learner import Learner

    out, online = Path(ctx.out), ctx.online
    agent, agent_cfg = _agent(cfg, ctx)
    n_prior = agent.load_prior(ctx.store, progress=ctx.progress) if ctx.store is not None else 0
    link = cfg.learner
    learner = Learner(agent, agent.spec, out / "online.zarr", learner_config(link), gamma=online.gamma,
                      checkpoint_dir=out / "learner")
    print(f"learner on {learner.address[0]}:{learner.address[1]} ({cfg.actors} local actors); "
          f"resumed at {learner.env_steps} env steps")
    curve: list[CurvePoint] = []
    t0 = time.monotonic()

    def evaluate() -> None:
        curve.append(CurvePoint.measure(agent, ctx.evaluate, learner.env_steps, learner.updates, learner.episodes,
                                        learner.successes, lambda: time.monotonic() - t0,
                                        detector=learner.detector))

    procs = _spawn_actors(cfg, out, learner.address[1]) if int(cfg.actors) > 0 else []
    try:
        evaluate()
        bar = progress_bar(total=online.env_steps, initial=learner.env_steps, desc=f"learner {cfg.algo}",
                           enabled=ctx.progress)
        next_eval = (learner.env_steps // online.eval_every + 1) * online.eval_every if online.eval_every else None
        while learner.env_steps < online.env_steps:
            before = learner.env_steps
            learner.step(max_env_steps=online.env_steps)   # the rest stays spooled for a resumed run
            bar.update(learner.env_steps - before)
            bar.set_postfix(updates=learner.updates, episodes=learner.episodes, version=learner.version)
            if next_eval is not None and learner.env_steps >= next_eval and learner.env_steps < online.env_steps:
                evaluate()
                next_eval += online.eval_every
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    log = out / "actors" / f"twin{i}.log"
                    last = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
                    raise RobotRLError(f"actor twin{i} exited with status {p.returncode}"
                                       f"{': ' + last[0] if last else ''} (log: {log})")
        bar.close()
        learner.checkpoint()
        evaluate()
    finally:
        for p in procs:
            p.terminate()                     # spooled episodes stay on disk and are resent on the next run
        for p in procs:
            p.wait(timeout=30)
        learner.close()
    return export_result(agent, ctx, agent_cfg, cfg.algo, curve, prior_transitions=n_prior, actors=int(cfg.actors),
                         episodes=learner.episodes, online_transitions=learner.n_transitions, updates=learner.updates)


def main(argv: list[str]) -> int:
    """Actor processes spawned by run_learner: python -m robot_rl.runtime.finetune_roles <actor config>."""
    from omegaconf import OmegaConf

    from robot_rl.learning.rl.context import build_context
    from robot_rl.core.config import load_yaml

    cfg = OmegaConf.create(load_yaml(argv[0]))
    try:
        ctx, _ = build_context(cfg, Path(cfg.out))
        ctx.progress = False
        return run_actor(cfg, ctx)
    except RobotRLError as e:           # the learner's log shows this line (see run_learner)
        print(f"robot-rl finetune actor {cfg.get('actor_id')}: error: {e}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
