#!/usr/bin/env bash
# What runs end to end today: record a synthetic multi-rate session with the real EpisodeWriter, then
# inspect, validate and render it with the CLI. Replaced by `robot-rl pipeline` once it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/demo}"
rm -rf "$OUT/demo.zarr"
.venv/bin/python - "$OUT/demo.zarr" <<'PY'
import sys
import numpy as np
from robot_rl.data.schema import EpisodeMeta, StreamSpec
from robot_rl.data.store import EpisodeStore

store = EpisodeStore.create(sys.argv[1], [
    StreamSpec("action", "float32", (7,), 10.0),
    StreamSpec("joint_pos", "float64", (7,), 500.0, units="rad"),
    StreamSpec("cam_front_rgb", "uint8", (96, 128, 3), 30.0, codec="jpeg", interp="hold"),
])
yy, xx = np.mgrid[0:96, 0:128]
with store.writer() as w:
    for ep in range(3):
        w.begin_episode(EpisodeMeta(task="demo", source="scripted", rig="synthetic"))
        for i in range(1000):  # 2 s at 500 Hz
            t = i / 500
            w.append("joint_pos", np.sin(t * np.arange(1, 8) + ep), t)
            if i % 50 == 0:
                w.append("action", np.cos(t * np.arange(1, 8)).astype(np.float32), t)
            if i % 17 == 0:
                cx = 20 + 80 * t / 2
                img = np.stack([xx * 2, yy * 2, 255 * ((xx - cx) ** 2 + (yy - 48) ** 2 < 100)], -1)
                w.append("cam_front_rgb", img.astype(np.uint8), t)
        w.commit(success=ep != 1)
PY
.venv/bin/robot-rl data info "$OUT/demo.zarr"
.venv/bin/robot-rl data validate "$OUT/demo.zarr"
.venv/bin/robot-rl data view "$OUT/demo.zarr" episode=0 video="$OUT/episode0.mp4"
