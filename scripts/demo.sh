#!/usr/bin/env bash
# The main job: the whole pipeline on the MuJoCo twin (CPU is enough), with report.md and results.json.
#   collect (scripted teleop, mixed quality) -> bc -> online (filtered BC with interventions)
#   -> one-step distillation -> deployment through the policy runner and the 1 kHz impedance loop.
# Arguments are `robot-rl pipeline` options, e.g. profile=quick task=insert obs=image out=runs/my_run.
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # small models: one thread per process is fastest on CPU
exec .venv/bin/robot-rl pipeline "$@"
