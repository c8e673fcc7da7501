"""camera_node: one camera (RealSense by default, any robot_rl.hardware camera) -> Image + CameraInfo.

Parameters (configs/ros/camera.yaml, one section per camera node): camera (the name in topics:
/cameras/<camera>/...), driver (robot_rl.hardware registry name: realsense, opencv, plug-ins),
device_args.* (constructor arguments: serial, width, height, fps, depth, align_to_color, ...; opencv:
source), calibration (optional calibration/<rig>/cameras.yaml: intrinsics for CameraInfo; default: the
device's own, RealSense factory intrinsics), frame_id (default <camera>_color_optical_frame),
read_timeout_s, status_period_s.

Configure connects the device; activate publishes, on a reader thread, every frame as
/cameras/<camera>/color/image_raw (rgb8) and .../color/camera_info, and depth (32FC1, metres) as
.../depth/image_raw and .../depth/camera_info, all RELIABLE KEEP_LAST 5 (PUBLISH_QOS = graph.CAMERA_IMAGE). Header stamps are the
device's timestamps mapped onto the host clock (robot_rl.hardware.clock_sync: the RealSense hardware
clock, estimated exposure time), then onto ROS time (robot_rl_ros.stamps). ~/status (latched JSON):
frames, drops, clock-mapping error. Cleanup disconnects.

The process leaves with os._exit after a clean shutdown: librealsense (pyrealsense2 wheel) and rclpy
in one process crash in C++ teardown at interpreter exit (docs/ros2.md, "Known issue").
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from robot_rl.core.clock import now
from robot_rl.hardware.device_errors import CameraTimeoutError, EndOfStreamError
from robot_rl.runtime.transport import STATUS, Sample, Topic
from robot_rl_ros import graph
from robot_rl_ros.camera_info import info_from_calibration, info_from_intrinsics
from robot_rl_ros.shell import ShellNode, main_for


# Frames and their camera_info alike: graph.CAMERA_IMAGE (reliable, KEEP_LAST; docs/ros2.md "QoS and losses")
PUBLISH_QOS = graph.CAMERA_IMAGE


class CameraNode(ShellNode):
    DEFAULTS = {"camera": "front", "driver": "realsense", "calibration": "", "frame_id": "", "read_timeout_s": 1.0,
                "status_period_s": 1.0}

    def __init__(self, name: str = "camera", **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.calibration = None
        self.frames = 0
        self.last_error = ""

    def setup(self) -> None:
        from robot_rl.hardware.registry import create

        self.camera = str(self.param("camera"))
        calibration = str(self.param("calibration"))
        if calibration:
            from robot_rl.sim.cameras import load_camera_calibration

            _, cams = load_camera_calibration(calibration)
            if self.camera not in cams:
                raise ValueError(f"{self.where('calibration')}: {calibration} has no camera {self.camera!r} "
                                 f"(cameras: {sorted(cams)})")
            self.calibration = cams[self.camera]
        self.frame_id = str(self.param("frame_id")) or f"{self.camera}_color_optical_frame"
        self.device = create("cameras", str(self.param("driver")), **self.params("device_args", required=False))
        self.device.connect()
        self.get_logger().info(f"camera {self.camera}: {self.device.name} connected")

    def attach(self, transport) -> None:
        topics = graph.camera_topics(self.camera)
        self.pubs = {k: transport.publisher(replace(t, qos=PUBLISH_QOS)) for k, t in topics.items()}
        self.status_pub = transport.publisher(Topic("~/status", "status", STATUS))
        self.start_worker(self._run, f"camera-{self.camera}")

    def _info(self, stream: str, t: float) -> Sample | None:
        if self.calibration is not None and stream == "color":
            return info_from_calibration(self.calibration, t, self.frame_id)
        intrinsics = getattr(self.device, "intrinsics", None)
        if intrinsics is None:
            return None
        try:
            return info_from_intrinsics(intrinsics(stream), t, self.frame_id)
        except Exception:   # the device does not know this stream's intrinsics (yet)
            return None

    def _run(self) -> None:
        timeout = float(self.param("read_timeout_s"))
        period = float(self.param("status_period_s"))
        next_status = now()
        aligned = bool(getattr(self.device, "align_to_color", False))
        while not self.stopping:
            try:
                frame = self.device.read(timeout)
            except CameraTimeoutError as e:
                self.last_error = str(e)
                continue
            except EndOfStreamError as e:
                self.last_error = str(e)
                self.get_logger().info(str(e))
                break
            t = frame.t
            if frame.color is not None:
                self.pubs["color"].publish(Sample(t, {"image": frame.color}, self.frame_id))
                info = self._info("color", t)
                if info is not None:
                    self.pubs["color_info"].publish(info)
            if frame.depth is not None:
                self.pubs["depth"].publish(Sample(t, {"image": frame.depth.astype(np.float32)}, self.frame_id))
                info = self._info("color" if aligned else "depth", t)
                if info is not None:
                    self.pubs["depth_info"].publish(info)
            self.frames += 1
            if now() >= next_status:
                next_status = now() + period
                self.status_pub.publish({"camera": self.camera, "frames": self.frames, "last_error": self.last_error,
                                         **{k: v for k, v in self.device.stats.items()}})
        self.status_pub.publish({"camera": self.camera, "frames": self.frames, "last_error": self.last_error,
                                 "ended": True})


main = main_for(CameraNode, hard_exit=True)

if __name__ == "__main__":
    main()
