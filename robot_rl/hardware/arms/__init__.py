"""Real arm backends for the control loop process (`robot_rl.control.loop`).

`franka.FrankaArm`: torque control through pylibfranka (an `ArmBackend`: the 1 kHz impedance law and
its safety run in robot_rl). `ur.URArm`: pose servoing through ur_rtde (a `PoseBackend`: the loop sends
the controller's filtered, limited reference pose at 500 Hz). Both are registered in the hardware
registry's `robot_rl.arms` group as loop factories `make_loop_backend(rig, task)`, so a rig file names
them with `backend: franka` / `backend: ur`. Vendor libraries are imported when an arm is built.
"""
