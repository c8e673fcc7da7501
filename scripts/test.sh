#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run every test tier: unit, slow end-to-end, and ROS2 (real rclpy
# from PyPI wheels, when installed). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# The package must also byte-compile on Python 3.12 (the system Python of ROS2 Jazzy robots).
PY312=""
for candidate in "$HOME"/.pyenv/versions/3.12*/bin/python3.12 python3.12; do
  if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then PY312="$candidate"; break; fi
done
if [ -n "$PY312" ]; then
  "$PY312" -m compileall -q robot_rl tests ros2_ws/src launch
  echo "byte-compiled robot_rl with $("$PY312" --version)"
else
  echo "python3.12 not found: skipping the 3.12 byte-compile check"
fi

# zarr-python 2 in its own venv: checks that diffusion_policy/UMI tooling (which pins zarr 2) reads
# our exported replay buffers with the real library.
if [ ! -x .venv-zarr2/bin/python ]; then
  .venv/bin/python -m venv .venv-zarr2
  .venv-zarr2/bin/python -m pip install -q "zarr>=2.16,<3" numcodecs imagecodecs
fi
export ROBOT_RL_ZARR2_PYTHON="$PWD/.venv-zarr2/bin/python"

# The lowest declared MuJoCo and Gymnasium in their own venv: suites that pin mujoco==3.3.0 share a venv with
# robot_rl, so the twin, the controller, collect and task=gym must run on it as on 4.x
# (robot_rl/sim/mujoco_compat.py). The venv holds only mujoco 3.3.0 and gymnasium 1.0.0 (and their deps); a .pth
# after its site-packages adds .venv's packages (robot_rl, zarr, pytest, ...).
if [ ! -x .venv-mujoco3/bin/python ]; then
  .venv/bin/python -m venv .venv-mujoco3
  .venv-mujoco3/bin/python -m pip install -q "mujoco==3.3.0" "gymnasium==1.0.0"
  main_site="$(.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')"
  side_site="$(.venv-mujoco3/bin/python -c 'import site; print(site.getsitepackages()[0])')"
  echo "import site; site.addsitedir('$main_site')" > "$side_site/zz_robot_rl_main_venv.pth"
fi
.venv-mujoco3/bin/python -c 'import mujoco, gymnasium as g; assert (mujoco.__version__, g.__version__) == ("3.3.0", "1.0.0")'

export MUJOCO_GL="${MUJOCO_GL:-egl}"
# Two pytest processes: the ROS2 tier runs in its own, because a process that has used both
# librealsense (pyrealsense2 wheel) and rclpy (ROS2 PyPI wheels) segfaults in their C++ teardown
# at exit, after every test has passed (reproduced outside pytest; see docs/ros2.md).
run_pytest() {
  set +e
  .venv/bin/python -m pytest "$@"
  local status=$?
  set -e
  if [ "$status" = 5 ]; then echo "pytest collected no tests for: $*"; status=0; fi
  return "$status"
}
status=0
.venv-mujoco3/bin/python -m pytest -q -m "not ros and not slow" tests/sim/test_mujoco_compat.py tests/sim/test_env.py \
  tests/control/test_impedance.py tests/sim/test_collect.py tests/sim/test_gym_tasks.py || status=$?   # mujoco 3.3.0
run_pytest -m "not ros" "$@" || status=$?
run_pytest tests/ros -m ros "$@" || status=$?  # collects only tests/ros: no librealsense objects
exit "$status"
