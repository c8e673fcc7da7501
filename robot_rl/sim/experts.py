"""Scripted teleoperation: per-task operators that drive the env's end-effector delta actions (the
interface a SpaceMouse uses), with a noise level and injected failures for mixed-quality demos.

noise in [0, 1]: Gaussian action noise std = 0.5 * noise (normalized units), and per episode
  hesitation (prob. noise): the operator freezes 0.3-1.2 s at a random moment;
  wrong approach (prob. 0.6 noise): the first approach is off target by a task-specific offset, then
      corrected with prob. 0.5 (otherwise the attempt is carried through);
  slip (prob. 0.4 noise): the gripper opens briefly while carrying (lift, insert) or the push veers.
Labels come from the task's success check, never from the script's intentions.
"""

from __future__ import annotations

import math

import numpy as np

from robot_rl.sim.env import TwinEnv, quat_yaw


def _wrap(a: float, period: float) -> float:
    return (a + period / 2) % period - period / 2


class ScriptedTeleop:
    """Base operator: phase machine per task; `act()` returns the (7,) action for the current step."""

    def __init__(self, env: TwinEnv, noise: float = 0.0, seed: int = 0) -> None:
        self.env, self.noise = env, float(noise)
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        r, n = self.rng, self.noise
        self.phase = 0
        self.phase_t0 = 0.0
        self.hesitate_at = r.uniform(0.3, 2.5) if r.random() < n else math.inf
        self.hesitate_for = r.uniform(0.3, 1.2)
        self.wrong = r.random() < 0.6 * n
        self.corrects = r.random() < 0.5
        ang = r.uniform(0, 2 * math.pi)
        self.wrong_dir = np.array([math.cos(ang), math.sin(ang), 0.0])
        self.slip = r.random() < 0.4 * n
        self.failures = [k for k, v in (("hesitation", self.hesitate_at < math.inf), ("wrong_approach", self.wrong),
                                         ("slip", self.slip)) if v]
        self.grip = -1.0

    # -- helpers
    @property
    def t(self) -> float:
        return self.env.twin.time

    def goto(self, pos: np.ndarray, speed: float = 1.0) -> np.ndarray:
        """Translation action moving the commanded target to `pos` (m, base frame)."""
        d = (pos - self.env.target_pos) / self.env.max_delta_pos
        n = np.abs(d).max()
        return d * (speed / n) if n > speed else d

    def near(self, pos: np.ndarray, tol: float) -> bool:
        return float(np.linalg.norm(self.env.twin.arm.state.ee_pos - pos)) < tol

    def next_phase(self) -> None:
        self.phase += 1
        self.phase_t0 = self.t

    def in_phase(self) -> float:
        return self.t - self.phase_t0

    def yaw_action(self, yaw_goal: float, period: float = math.pi / 2) -> float:
        err = _wrap(yaw_goal - quat_yaw(self.env.target_quat), period)
        return float(np.clip(err / self.env.max_delta_rot, -1, 1))

    def act(self) -> np.ndarray:
        a = np.zeros(7)
        if self.hesitate_at <= self.t < self.hesitate_at + self.hesitate_for:
            a[6] = self.grip
            return a
        a = self.policy()
        if self.noise > 0:
            a[:6] += self.rng.normal(0.0, 0.5 * self.noise, 6)
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    def policy(self) -> np.ndarray:
        raise NotImplementedError


class ReachTeleop(ScriptedTeleop):
    def policy(self):
        a = np.zeros(7)
        a[6] = self.grip
        goal = self.env.task.goal
        if self.phase == 0 and self.wrong:
            via = goal + 0.05 * self.wrong_dir
            a[:3] = self.goto(via, 0.8)
            if self.near(via, 0.02) or self.in_phase() > 2.0:
                self.next_phase()
                if not self.corrects:
                    self.phase = 99   # gives up at the wrong point
            return a
        if self.phase == 99:
            return a
        a[:3] = self.goto(goal, 0.8)
        return a


class LiftTeleop(ScriptedTeleop):
    def policy(self):
        env, a = self.env, np.zeros(7)
        cube, cq = env.task._body_pose("cube")
        offset = 0.03 * self.wrong_dir if (self.wrong and self.phase <= 3) else np.zeros(3)
        grasp = cube + offset + np.array([0, 0, 0.002])
        above = grasp + np.array([0, 0, 0.10])
        yaw = quat_yaw(cq)
        if self.phase == 0:                               # over the cube, open, aligned
            self.grip = -1.0
            a[:3] = self.goto(above)
            a[5] = self.yaw_action(yaw)
            if self.near(above, 0.015) and abs(_wrap(yaw - quat_yaw(env.twin.arm.state.ee_quat), math.pi / 2)) < 0.05:
                self.next_phase()
        elif self.phase == 1:                             # descend
            a[:3] = self.goto(grasp, 0.6)
            a[5] = self.yaw_action(yaw)
            if self.near(grasp, 0.008) or self.in_phase() > 2.5:
                self.next_phase()
        elif self.phase == 2:                             # close
            self.grip = 1.0
            a[:3] = self.goto(grasp, 0.3)
            if self.in_phase() > 0.5:
                self.next_phase()
        elif self.phase == 3:                             # lift (a wrong approach is noticed here)
            if self.wrong and self.corrects and self.in_phase() > 0.4:
                self.wrong = False
                self.grip = -1.0
                self.phase, self.phase_t0 = 0, self.t
            a[:3] = self.goto(grasp + np.array([0, 0, 0.2]), 0.6)
            if self.slip and 0.3 < self.in_phase() < 0.6:
                self.grip = -1.0                          # slip: the operator's grip loosens
            elif self.phase == 3:
                self.grip = 1.0
        a[6] = self.grip
        return a


class PushTeleop(ScriptedTeleop):
    def reset(self):
        super().reset()
        self.grip = 1.0

    def policy(self):
        env, a = self.env, np.zeros(7)
        a[6] = self.grip
        block, _ = env.task._body_pose("block")
        goal = env.task.goal
        d = goal[:2] - block[:2]
        dist = float(np.linalg.norm(d))
        u = np.array([d[0], d[1], 0.0]) / max(dist, 1e-6)
        lateral = np.array([-u[1], u[0], 0.0])
        off = 0.02 * lateral if (self.wrong and not (self.corrects and self.phase >= 3)) else np.zeros(3)
        if self.slip and self.phase == 2 and self.in_phase() > 0.8:
            off = off + 0.025 * lateral                   # the push veers off the block's centre line
        behind = np.array([block[0], block[1], 0.02]) - u * 0.055 + off
        if self.phase == 0:                               # above the point behind the block
            p = behind + np.array([0, 0, 0.08])
            a[:3] = self.goto(p)
            if self.near(p, 0.015):
                self.next_phase()
        elif self.phase == 1:                             # lower next to the table
            a[:3] = self.goto(behind, 0.6)
            if self.near(behind, 0.01) or self.in_phase() > 2.0:
                self.next_phase()
        elif self.phase == 2:                             # push along the block-goal line
            carrot = np.array([block[0], block[1], 0.02]) - u * 0.03 + off + u * min(dist, 0.03)
            a[:3] = self.goto(carrot, 0.35)
            ee = env.twin.arm.state.ee_pos
            rel = ee[:2] - block[:2]
            if abs(float(rel @ lateral[:2])) > 0.03 or float(rel @ u[:2]) > 0:   # lost the block: re-approach
                if self.wrong and self.corrects:
                    self.phase = 3
                else:
                    self.next_phase()
        elif self.phase >= 3:                             # back up and re-approach (correction)
            p = behind + np.array([0, 0, 0.08])
            a[:3] = self.goto(p)
            if self.near(p, 0.02):
                self.wrong = False
                self.phase, self.phase_t0 = 1, self.t
        return a


class InsertTeleop(ScriptedTeleop):
    def reset(self):
        super().reset()
        self.grip = 1.0

    def policy(self):
        env, a = self.env, np.zeros(7)
        task = env.task
        hole = task.hole
        ee = env.twin.arm.state.ee_pos
        bottom = task.peg_bottom()
        # steer the peg's bottom, not the TCP, onto the hole axis (the peg may sit off-centre in the grasp)
        grasp_off = ee - bottom
        off = 0.005 * self.wrong_dir if self.wrong else np.zeros(3)
        xy = np.array([hole[0], hole[1], 0.0]) + off
        above = xy + np.array([0, 0, hole[2] + 0.03]) + grasp_off
        inside = xy + np.array([0, 0, hole[2] - 0.03]) + grasp_off
        if self.phase == 0:
            a[:3] = self.goto(above)
            if self.near(above, 0.004) or (self.in_phase() > 3.0 and self.near(above, 0.01)):
                self.next_phase()
        elif self.phase == 1:                             # descend slowly; compliance absorbs contact
            a[:3] = self.goto(inside, 0.25)
            if self.slip and self.in_phase() > 0.2:
                self.grip = -1.0
            if self.wrong and self.corrects and self.in_phase() > 1.0:
                self.wrong = False
                self.phase, self.phase_t0 = 0, self.t
        a[6] = self.grip
        return a


TELEOPS = {"reach": ReachTeleop, "lift": LiftTeleop, "push": PushTeleop, "insert": InsertTeleop}


def make_teleop(env: TwinEnv, noise: float = 0.0, seed: int = 0) -> ScriptedTeleop:
    return TELEOPS[env.task.name](env, noise, seed)


def run_episode(env: TwinEnv, teleop: ScriptedTeleop, seed: int | None = None, on_step=None,
                hold_after_success_s: float = 0.0) -> dict:
    """Roll one scripted episode. on_step(obs, action, reward, info) is called after every step.
    hold_after_success_s: once the task's check succeeds, keep stepping (and recording) that long with the
    operator holding still (no motion, the gripper as it was), as an operator holds the success state before
    marking it: a learned success detector gets frames of success, not only the ones leading up to it."""
    obs, info = env.reset(seed=seed)
    teleop.reset()
    if on_step is not None:
        on_step(obs, None, 0.0, info)
    steps, ret, success = 0, 0.0, False
    while True:
        action = teleop.act()
        obs, r, term, trunc, info = env.step(action)
        steps += 1
        ret += r
        success = success or info["is_success"]
        if on_step is not None:
            on_step(obs, action, r, info)
        if term or trunc:
            break
    if success and hold_after_success_s > 0:
        hold = np.zeros(7, np.float32)
        hold[6] = action[6]
        for _ in range(int(round(hold_after_success_s * env.policy_hz))):
            obs, r, _, _, info = env.step(hold)
            steps += 1
            if on_step is not None:
                on_step(obs, hold, r, info)
    return {"success": bool(success), "steps": steps, "return": ret, "failures": list(teleop.failures),
            "time": env.twin.time}
