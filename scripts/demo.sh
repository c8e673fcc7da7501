#!/usr/bin/env bash
# The main job as far as it exists today, end to end on the MuJoCo twin (CPU, a few minutes):
# scripted-teleop demos -> diffusion policy by imitation -> evaluation on fixed seeds -> one-step
# distillation -> deployment through the policy runner and the 1 kHz impedance loop process.
# `robot-rl pipeline` replaces this script once the RL stages land.
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL="${MUJOCO_GL:-egl}"
OUT="${OUT:-runs/demo}"
TASK="${TASK:-reach}"
RR=.venv/bin/robot-rl
mkdir -p "$OUT"

$RR collect task="$TASK" episodes=30 noise=0.3 store="$OUT/demos.zarr" out="$OUT/collect"
$RR data info "$OUT/demos.zarr"
$RR data validate "$OUT/demos.zarr" decode=false
$RR train store="$OUT/demos.zarr" out="$OUT/bc" train.success_only=true train.max_minutes="${MINUTES:-4}" \
    train.steps=100000 train.eval_every=1000 train.eval_episodes=5 train.checkpoint_every=1000
$RR eval policy="$OUT/bc/checkpoints/best" task="$TASK" episodes=20 out="$OUT/eval_bc"
if [ -f robot_rl/commands/distill.py ]; then
  $RR distill teacher="$OUT/bc/checkpoints/best" store="$OUT/demos.zarr" task="$TASK" out="$OUT/distill" \
      distill.steps=500 distill.eval_episodes=10
fi
if [ -f robot_rl/commands/deploy.py ]; then
  $RR deploy policy="$OUT/bc/checkpoints/best" twin=true task="$TASK" episodes=5 out="$OUT/deploy"
fi
echo "results: $OUT/*/results.json"
