#!/usr/bin/env bash
# Set up robot_rl on a fresh Debian/Ubuntu machine: system packages, a virtualenv in .venv, and the
# package in editable mode (so `robot-rl` finds configs/ in this checkout). Safe to run again.
#   TORCH_VERSION=2.13.0   torch release to install if the venv has none (PyPI picks the CUDA build on
#                          GPU machines; the package itself accepts torch>=2.13,<3)
#   EXTRAS=dev,hardware,ros,interop,gym   pip extras to install (ros: rclpy wheels + colcon for the ROS2 tier;
#                                         gym: panda-gym, the third-party suite of the task=gym tests)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if command -v apt-get >/dev/null; then
  # EGL/Mesa: headless MuJoCo rendering; libusb: pyrealsense2; socat: serial-gripper emulator tests;
  # gcc + python3-dev: the compiled control law; rt-tests: cyclictest, the latency baseline of bench twin
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends \
    libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libgles2 libusb-1.0-0 socat gcc python3-dev rt-tests >/dev/null
fi

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY="$candidate"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "robot_rl needs Python >= 3.11" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
.venv/bin/python -m pip install -q -e ".[${EXTRAS:-dev,hardware,ros,interop,gym}]"
# the 1 kHz law in C (robot_rl/control/_claw.c); without it the loop runs the Python law and says so
.venv/bin/python -m robot_rl.control.compiled --build || echo "compiled control law not built: the Python law runs" >&2
echo "robot_rl set up in .venv: run .venv/bin/robot-rl --help"
