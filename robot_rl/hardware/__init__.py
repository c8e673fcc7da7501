"""Layer 2: real device drivers (RealSense and UVC cameras, Robotiq gripper, teleop devices).

Vendor libraries (pyrealsense2, pyserial, hidapi) are imported inside the modules that need them, so
`import robot_rl.hardware` works on a machine without any of them. No torch, no ROS here.
Units: metres, seconds; timestamps are host monotonic seconds (`robot_rl.core.clock.now`).
"""
