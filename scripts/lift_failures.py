"""Why lift episodes fail: success by the cube's initial yaw, and by the gripper's pose error when it first
closes, read from recorded episode stores (a finetune run's online.zarr, an eval or collect store).

    .venv/bin/python scripts/lift_failures.py runs/bench/finetune_12k/lift/residual/seed*/online.zarr

Yaw is taken modulo 90 degrees (the cube is square); the pose error is the TCP's offset from the cube's
centre at the first step whose gripper command is > 0 (closing). Episodes that never close are skipped in
the second table. Measured with this script: docs/rl.md ("Why lift fails").
"""

import argparse

import numpy as np

from robot_rl.data.episode_store import EpisodeStore
from robot_rl.sim.env import quat_yaw

QUARTER = np.pi / 2


def wrap_quarter(angle: float) -> float:
    return (angle + QUARTER / 2) % QUARTER - QUARTER / 2


def episodes(paths):
    """(initial cube yaw, |yaw error| at close, xy offset at close (m), success) per episode; None where it never closes."""
    for path in paths:
        store = EpisodeStore.open(path)
        for i, meta in enumerate(store.meta_list()):
            action, cube = store.read("action", i)[0], store.read("task_state", i)[0]
            ee_pos, ee_quat = store.read("ee_pos", i)[0], store.read("ee_quat", i)[0]
            closing = np.flatnonzero(action[:, 6] > 0)
            yaw0 = wrap_quarter(quat_yaw(cube[0, 3:7]))
            if len(closing) == 0:
                yield yaw0, None, None, bool(meta.get("success"))
                continue
            k = int(closing[0])
            yaw_err = abs(wrap_quarter(quat_yaw(cube[k, 3:7]) - quat_yaw(ee_quat[k])))
            yield yaw0, yaw_err, float(np.linalg.norm(ee_pos[k, :2] - cube[k, :2])), bool(meta.get("success"))


def table(title, values, success, edges, unit=""):
    print(title)
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (values >= lo) & (values < hi)
        rate = f"{100 * success[m].mean():3.0f} %" if m.any() else "  -"
        print(f"  [{lo:g}, {hi:g}){unit}: {m.sum():4d} episodes, success {rate}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", nargs="+", help="episode stores (zarr) of the lift task")
    rows = list(episodes(parser.parse_args().stores))
    if not rows:
        raise SystemExit("no episodes in the given stores")
    yaw0 = np.array([abs(r[0]) for r in rows])
    success = np.array([r[3] for r in rows])
    print(f"{len(rows)} episodes, success {100 * success.mean():.0f} %")
    table("|initial cube yaw| (rad, modulo 90 deg)", yaw0, success, [0, 0.1, 0.2, 0.3, 0.8], " rad")
    closed = [r for r in rows if r[1] is not None]
    ok = np.array([r[3] for r in closed])
    table("|yaw error| at the first close (rad)", np.array([r[1] for r in closed]), ok, [0, 0.05, 0.1, 0.2, 0.8],
          " rad")
    table("xy offset at the first close (mm)", 1000 * np.array([r[2] for r in closed]), ok, [0, 5, 10, 20, 1000],
          " mm")


if __name__ == "__main__":
    main()
