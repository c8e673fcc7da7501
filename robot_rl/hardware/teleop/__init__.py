"""Teleoperation devices -> end-effector delta targets, deadman, gripper/intervention toggles, session keys.

Every device (SpaceMouse over HID, keyboard, gamepad) names its raw inputs and binds them to relative-frame
axes or actions (`bindings.py`); one `TeleopState` turns them into `TeleopCommand`s, so the safety logic
(deadband, deadman, speed limits) exists once. Backends that own an event loop (pynput, pygame, evdev) feed
`press`/`release`/`set_value`; the logic never imports them.
"""
