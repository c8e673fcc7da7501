"""Domain randomization hooks of the twin, applied at every reset from the episode's generator.

Each hook scales or jitters a nominal value saved at construction, so randomization never drifts
across episodes. Ranges are (low, high); zero-width ranges switch a hook off.
Object poses are randomized by the task's reset distribution; `object_pos_jitter` widens it.

The appearance hooks (colour, texture) draw from a stream jumped ahead of the episode's generator, which
they do not advance: switching them on leaves every other draw of a seed (arm noise, object and goal
placement) unchanged, so an evaluation with and without them compares the same episodes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

import mujoco
import numpy as np

from robot_rl.core.config import dataclass_from_dict


@dataclass(frozen=True)
class RandomizationParams:
    friction_scale: tuple = (1.0, 1.0)        # multiplies sliding friction of every non-arm geom
    mass_scale: tuple = (1.0, 1.0)            # multiplies the mass of free (object) bodies
    light_scale: tuple = (1.0, 1.0)           # multiplies light diffuse intensity
    light_pos_jitter: float = 0.0             # m, uniform per axis
    camera_pos_jitter: float = 0.0            # m, uniform per axis
    camera_rot_jitter: float = 0.0            # rad, uniform rotation vector per axis
    object_pos_jitter: float = 0.0            # m, extra xy jitter of free bodies after the task reset
    color_jitter: float = 0.0                 # added to each RGB channel of object geoms and materials
    texture_scale: tuple = (1.0, 1.0)         # multiplies every material's texrepeat (the table's checker size)

    @staticmethod
    def from_dict(d: Mapping[str, Any] | None) -> "RandomizationParams":
        return dataclass_from_dict(RandomizationParams, d, "randomization")

    @staticmethod
    def default_on() -> "RandomizationParams":
        """Sim-to-real training data (`collect randomize=true`): moderate friction and mass ranges, and the
        appearance ranges of `visual()`, so pixel policies see at training what held-out evaluation varies."""
        return replace(RandomizationParams.visual(), friction_scale=(0.7, 1.3), mass_scale=(0.7, 1.5))

    @staticmethod
    def visual() -> "RandomizationParams":
        """Appearance only (lighting, colours and textures, camera pose), physics nominal: the held-out
        evaluation of pixel policies (`robot-rl eval randomize=true`)."""
        return RandomizationParams(light_scale=(0.5, 1.5), light_pos_jitter=0.3, camera_pos_jitter=0.01,
                                   camera_rot_jitter=0.02, color_jitter=0.15, texture_scale=(0.5, 2.0))

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class DomainRandomizer:
    def __init__(self, model: mujoco.MjModel, params: RandomizationParams | None = None) -> None:
        self.model = model
        self.p = params or RandomizationParams()
        arm_bodies = {model.body(n).id for n in ("link0", "link1", "link2", "link3", "link4", "link5", "link6",
                                                  "link7", "hand", "finger_left", "finger_right")}
        self.object_geoms = [g for g in range(model.ngeom) if model.geom_bodyid[g] not in arm_bodies]
        self.free_bodies = [model.jnt_bodyid[j] for j in range(model.njnt)
                            if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
        self.free_joints = [j for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
        self._friction = model.geom_friction.copy()
        self._mass = model.body_mass.copy()
        self._inertia = model.body_inertia.copy()
        self._light_diffuse = model.light_diffuse.copy()
        self._light_pos = model.light_pos.copy()
        self._cam_pos = model.cam_pos.copy()
        self._cam_quat = model.cam_quat.copy()
        # object geoms without a material (one with a material is coloured by it: tinted there)
        self.plain_geoms = [g for g in self.object_geoms if model.geom_matid[g] < 0]
        self._geom_rgba = model.geom_rgba.copy()
        self._mat_rgba = model.mat_rgba.copy()
        self._texrepeat = model.mat_texrepeat.copy()

    def apply(self, rng: np.random.Generator) -> dict:
        """Draw and apply the model-level randomization; returns what was drawn (episode metadata)."""
        m, p = self.model, self.p
        drawn = {}
        f = rng.uniform(*p.friction_scale)
        m.geom_friction[:] = self._friction
        m.geom_friction[self.object_geoms, 0] *= f
        s = rng.uniform(*p.mass_scale)
        m.body_mass[:] = self._mass
        m.body_inertia[:] = self._inertia
        m.body_mass[self.free_bodies] *= s
        m.body_inertia[self.free_bodies] *= s
        ls = rng.uniform(*p.light_scale)
        m.light_diffuse[:] = self._light_diffuse * ls
        m.light_pos[:] = self._light_pos + rng.uniform(-p.light_pos_jitter, p.light_pos_jitter, self._light_pos.shape)
        m.cam_pos[:] = self._cam_pos + rng.uniform(-p.camera_pos_jitter, p.camera_pos_jitter, self._cam_pos.shape)
        for i in range(m.ncam):
            rv = rng.uniform(-p.camera_rot_jitter, p.camera_rot_jitter, 3)
            dq = np.zeros(4)
            mujoco.mju_axisAngle2Quat(dq, rv / (np.linalg.norm(rv) or 1.0), float(np.linalg.norm(rv)))
            q = np.zeros(4)
            mujoco.mju_mulQuat(q, dq, self._cam_quat[i])
            m.cam_quat[i] = q
        drawn.update(friction_scale=f, mass_scale=s, light_scale=ls)
        if p.color_jitter > 0 or p.texture_scale[0] != p.texture_scale[1]:
            drawn.update(self._appearance(np.random.Generator(rng.bit_generator.jumped())))
        return drawn

    def _appearance(self, rng: np.random.Generator) -> dict:
        """Colours of object geoms and materials (a material's rgba tints its texture) and texture scale."""
        m, p = self.model, self.p
        c = p.color_jitter
        m.geom_rgba[:] = self._geom_rgba
        g = self.plain_geoms
        m.geom_rgba[g, :3] = np.clip(self._geom_rgba[g, :3] + rng.uniform(-c, c, (len(g), 3)), 0.0, 1.0)
        m.mat_rgba[:, :3] = np.clip(self._mat_rgba[:, :3] + rng.uniform(-c, c, (m.nmat, 3)), 0.0, 1.0)
        ts = rng.uniform(*p.texture_scale)
        m.mat_texrepeat[:] = self._texrepeat * ts
        return {"texture_scale": ts}

    def jitter_objects(self, rng: np.random.Generator, data: mujoco.MjData, skip: tuple = ()) -> None:
        """Extra xy jitter of free bodies (after the task placed them); `skip`: free-joint names."""
        if self.p.object_pos_jitter <= 0:
            return
        for j in self.free_joints:
            if self.model.joint(j).name in skip:
                continue
            a = self.model.jnt_qposadr[j]
            data.qpos[a:a + 2] += rng.uniform(-self.p.object_pos_jitter, self.p.object_pos_jitter, 2)
