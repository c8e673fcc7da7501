"""Converters between the episode store and other ecosystems' formats.

Each module exposes `export_store(store, out, **options) -> summary dict` and
`import_store(src, out_store_path, **options) -> EpisodeStore`; its docstring lists the options.

    diffusion_policy  diffusion_policy / UMI replay buffer (zarr format 2, meta/episode_ends)
    lerobot           LeRobotDataset v3.0 (parquet + mp4), constant rate
    rosbag            ROS2 bags (rosbag2 MCAP or sqlite3), standard messages

Formats that need one common time base (diffusion_policy, lerobot) resample the multi-rate streams
onto a grid with `robot_rl.data.align` and record how in their metadata and summary.
"""

FORMATS = ("diffusion_policy", "lerobot", "rosbag")
