"""Where the corrector takes over, read from a finetune run's online.zarr (its per-step `intervention` flag).

    .venv/bin/python scripts/takeovers.py runs/r19/insert/fc/seed0/online.zarr [--quarters 4]

Per quarter of the run: episode success (with the takeovers), the share of episodes with a takeover and the
share of env steps taken over; a policy that learns from the takeovers needs fewer of them as the run goes
on. For insert also the peg's pose at each takeover's first step (task_state: peg position, quaternion,
hole position): its bottom's offset from the hole axis and its height above the rim; success needs the
bottom within 4 mm of the axis and 2 cm below the rim. Measured with this script: docs/rl.md.
"""

import argparse

import numpy as np

from robot_rl.data.episode_store import EpisodeStore
from robot_rl.learning.rl.filtered_bc import takeover_began
from robot_rl.sim.tasks import InsertTask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="a finetune run's online.zarr (recorded with corrector=scripted)")
    parser.add_argument("--quarters", type=int, default=4, help="split the run's episodes into this many parts")
    args = parser.parse_args()
    store = EpisodeStore.open(args.store)
    metas = store.meta_list()
    rows = []      # (success, steps, steps taken over, takeovers)
    peg = []       # insert: (axis offset mm, bottom above the rim mm) at each takeover's first step
    for i, meta in enumerate(metas):
        flag = store.read("intervention", i)[0]
        starts = np.flatnonzero(takeover_began(flag.reshape(-1) > 0.5))
        rows.append((bool(meta.get("success")), len(flag), int((flag > 0.5).sum()), len(starts)))
        if meta.get("task") == "insert" and "task_state" in store.streams:
            state = store.read("task_state", i)[0]
            for t in starts:
                s = state[min(int(t), len(state) - 1)]
                bottom_z = s[2] - InsertTask.peg_half[2]
                peg.append((1e3 * float(np.linalg.norm(s[:2] - s[7:9])), 1e3 * float(bottom_z - s[9])))
    print(f"{args.store}: {len(rows)} episodes")
    print("part  episodes  success  with a takeover  steps taken over")
    for q, part in enumerate(np.array_split(np.array(rows, dtype=float), args.quarters)):
        if len(part):
            print(f"{q + 1:>4}  {len(part):>8}  {part[:, 0].mean():>7.0%}  {(part[:, 3] > 0).mean():>15.0%}  "
                  f"{part[:, 2].sum() / part[:, 1].sum():>16.1%}")
    if peg:
        p = np.array(peg)
        print(f"insert, {len(p)} takeovers: peg bottom off the hole axis (mm) p25/p50/p75 "
              f"{np.percentile(p[:, 0], [25, 50, 75]).round(1).tolist()}; above the rim (mm) "
              f"{np.percentile(p[:, 1], [25, 50, 75]).round(1).tolist()}")
        for name, m in (("more than 2 cm above the rim", p[:, 1] > 20), ("0-2 cm above", (p[:, 1] <= 20) & (p[:, 1] > 0)),
                        ("below the rim", p[:, 1] <= 0)):
            if m.any():
                print(f"  {name}: {m.sum()} takeovers, median axis offset {np.median(p[m, 0]):.1f} mm")


if __name__ == "__main__":
    main()
