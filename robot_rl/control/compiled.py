"""The compiled law (`_claw.c`): loading, its parameter vector, and the build.

`scripts/setup.sh` builds the C extension in place with the system compiler
(`python -m robot_rl.control.compiled --build`). Without it the Controller runs the Python law
(robot_rl/control/impedance.py and Controller's guards), which stays the reference the compiled one
is tested against; `load()` then logs once which path runs and how to build the other.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# result flags of _claw.tick / _claw.brake (keep in step with _claw.c)
F_SATURATED, F_RATE_LIMITED, F_JOINT_LIMIT, F_JOINT_VELOCITY = 1, 2, 4, 8
F_JOINT_SHIFT = 8          # with F_JOINT_VELOCITY: flags >> 8 is the joint that stopped the scan
EV_BELOW, EV_ABOVE = 1.0, 2.0

# parameter vector layout (offsets into one float64 array; keep in step with _claw.c's P_*)
P_K, P_D, P_KN, P_DN, P_QNULL, P_MAX_POS_ERR, P_MAX_ROT_ERR = 0, 6, 12, 13, 14, 21, 22
P_GRAVITY_COMP, P_VEL_FF, P_VGUARD, P_VDAMP, P_WGUARD, P_WDAMP = 23, 24, 25, 26, 27, 28
P_WS_LO, P_WS_HI, P_A2, P_CONTACT_DETECT, P_MAX_CONTACT = 29, 32, 35, 36, 37
P_Q_LO, P_Q_HI, P_Q_HARD_LO, P_Q_HARD_HI, P_DQ_GUARD, P_DQ_MAX = 38, 45, 52, 59, 66, 73
P_JL_STIFF, P_JV_DAMP, P_STOP_DAMP, P_TAU_MAX, P_TORQUE_RATE, P_REG = 80, 81, 82, 83, 90, 91
N_PARAMS = 92

BUILD_COMMAND = "python -m robot_rl.control.compiled --build"
_SOURCE = Path(__file__).with_name("_claw.c")
_loaded = None
_reported = False


def load(required: bool = False):
    """The compiled module, or None (logged once) when it is not built. required: raise instead."""
    global _loaded, _reported
    if _loaded is None:
        try:
            _claw = importlib.import_module("robot_rl.control._claw")
        except ImportError as e:
            if required:
                raise ImportError(f"compiled control law not built ({e}); build it with `{BUILD_COMMAND}` "
                                  f"(scripts/setup.sh does)") from None
            if not _reported:
                _reported = True
                log.warning("control law: the compiled law (robot_rl/control/_claw.c) is not built (%s); running "
                            "the Python law (about 3x the compute per tick). Build it with `%s` "
                            "(scripts/setup.sh does).", e, BUILD_COMMAND)
            return None
        if _claw.N_PARAMS != N_PARAMS:
            raise ImportError(f"robot_rl/control/_claw is stale (N_PARAMS {_claw.N_PARAMS} != {N_PARAMS}); "
                              f"rebuild it with `{BUILD_COMMAND}`")
        _loaded = _claw
    return _loaded


def pack_limits(P: np.ndarray, limits, q_nullspace: np.ndarray) -> None:
    """Write the SafetyLimits part of the parameter vector (and the null-space posture)."""
    L = limits
    P[P_QNULL:P_QNULL + 7] = q_nullspace
    P[P_MAX_POS_ERR] = L.max_pos_error
    P[P_MAX_ROT_ERR] = L.max_rot_error
    P[P_VGUARD] = L.ee_speed_guard * L.max_ee_speed
    P[P_VDAMP] = L.ee_speed_damping
    P[P_WGUARD] = L.ee_speed_guard * L.max_ee_angular_speed
    P[P_WDAMP] = L.ee_angular_speed_damping
    P[P_WS_LO:P_WS_LO + 3] = L.workspace_min
    P[P_WS_HI:P_WS_HI + 3] = L.workspace_max
    P[P_A2] = 2.0 * L.boundary_deceleration
    P[P_CONTACT_DETECT] = L.contact_detection_force
    P[P_MAX_CONTACT] = L.max_contact_force
    P[P_Q_LO:P_Q_LO + 7] = np.array(L.q_min) + L.joint_limit_margin
    P[P_Q_HI:P_Q_HI + 7] = np.array(L.q_max) - L.joint_limit_margin
    P[P_Q_HARD_LO:P_Q_HARD_LO + 7] = L.q_min
    P[P_Q_HARD_HI:P_Q_HARD_HI + 7] = L.q_max
    P[P_DQ_GUARD:P_DQ_GUARD + 7] = L.joint_velocity_guard * np.array(L.dq_max)
    P[P_DQ_MAX:P_DQ_MAX + 7] = L.dq_max
    P[P_JL_STIFF] = L.joint_limit_stiffness
    P[P_JV_DAMP] = L.joint_velocity_damping
    P[P_STOP_DAMP] = L.stop_damping
    P[P_TAU_MAX:P_TAU_MAX + 7] = L.tau_max
    P[P_TORQUE_RATE] = L.max_torque_rate
    P[P_REG] = 1e-4


def pack_gains(P: np.ndarray, K: np.ndarray, D: np.ndarray, kn: float, dn: float, gravity_comp: bool,
               velocity_feedforward: bool) -> None:
    """Write the gain part of the parameter vector (on every profile switch)."""
    P[P_K:P_K + 6] = K
    P[P_D:P_D + 6] = D
    P[P_KN] = kn
    P[P_DN] = dn
    P[P_GRAVITY_COMP] = float(gravity_comp)
    P[P_VEL_FF] = float(velocity_feedforward)


def build(verbose: bool = True) -> Path:
    """Compile _claw.c in place with the system C compiler (setuptools' build_ext). Returns the .so."""
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    root = _SOURCE.parents[2]
    ext = Extension("robot_rl.control._claw", [str(_SOURCE.relative_to(root))],
                    extra_compile_args=["-O2", "-fno-fast-math", "-std=c99"])
    dist = Distribution({"name": "robot_rl_claw", "ext_modules": [ext], "script_args": []})
    cmd = build_ext(dist)
    cmd.inplace = True
    cmd.build_temp = str(root / "build" / "claw")
    cmd.ensure_finalized()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        cmd.run()
    finally:
        os.chdir(cwd)
    out = root / cmd.get_ext_filename(ext.name)
    if verbose:
        print(f"built {out}")
    return out


if __name__ == "__main__":
    if sys.argv[1:] != ["--build"]:
        sys.exit(f"usage: {BUILD_COMMAND}")
    try:
        build()
    except Exception as e:   # a missing compiler or Python headers: say what to install
        sys.exit(f"building the compiled control law failed: {e}\n"
                 f"install a C compiler and the Python headers (Debian: apt-get install gcc python3-dev), "
                 f"then run `{BUILD_COMMAND}`; without it the Python law runs")
