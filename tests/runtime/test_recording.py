"""RecordingSession over the in-process transport: commands, timing, routing, and what lands in the store."""

import numpy as np
import pytest

from robot_rl.control.rig import load_rig
from robot_rl.core.config import config_dir, load_yaml
from robot_rl.core.errors import ConfigError, StoreError
from robot_rl.data.info import format_info, store_info
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.validate import validate
from robot_rl.runtime.recording_session import RecordingSession, SessionConfig, open_writer, routes_from_config
from robot_rl.runtime.transport import SENSOR_DATA, STATE, LocalTransport, QoS, Sample, Topic

STREAMS = {
    "joint_pos": {"topic": "/arm/joint_states", "kind": "joint_state", "field": "position",
                  "dtype": "float64", "shape": [7], "rate_hz": 100.0, "units": "rad", "frame": "joint"},
    "joint_vel": {"topic": "/arm/joint_states", "kind": "joint_state", "field": "velocity",
                  "dtype": "float64", "shape": [7], "rate_hz": 100.0, "units": "rad/s"},
    "ee_pos": {"topic": "/arm/ee_pose", "kind": "pose", "field": "position",
               "dtype": "float64", "shape": [3], "rate_hz": 100.0, "units": "m", "frame": "base"},
    "cam_rgb": {"topic": "/cam/image", "kind": "image", "dtype": "uint8", "shape": [8, 8, 3],
                "rate_hz": 30.0, "codec": "png", "interp": "hold"},
}
STREAMS = {name: entry | {"required": False} for name, entry in STREAMS.items()}  # refusal: its own test


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def transport():
    with LocalTransport() as tr:
        yield tr


def make_session(tmp_path, clock, **config):
    routes = routes_from_config(STREAMS)
    writer = open_writer(tmp_path / "demo.zarr", routes)
    return RecordingSession(writer, routes, SessionConfig(task="reach", rig="test", **config), clock=clock)


@pytest.fixture
def session(tmp_path, clock, transport):
    s = make_session(tmp_path, clock)
    s.attach(transport)
    yield s
    s.close()


def publish_joints(transport, ts):
    pub = transport.publisher(Topic("/arm/joint_states", "joint_state", STATE))
    for t in ts:
        pub.publish(Sample(t, {"position": np.arange(7) + t, "velocity": np.full(7, -t)}))


def call(transport, name):
    return transport.call(f"recorder/{name}", "trigger")


def test_services_record_an_episode_whose_streams_match_the_samples(session, transport, clock, tmp_path):
    assert call(transport, "start").success
    ts = [clock.t + 0.01 * i for i in range(25)]
    publish_joints(transport, ts)
    img_pub = transport.publisher(Topic("/cam/image", "image", SENSOR_DATA))
    for i in range(3):
        img_pub.publish(Sample(clock.t + 0.033 * i, {"image": np.full((8, 8, 3), i, np.uint8)}))
    pose_pub = transport.publisher(Topic("/arm/ee_pose", "pose", STATE))
    pose_pub.publish(Sample(clock.t + 0.005, {"position": [0.4, 0.0, 0.3], "quat": [1.0, 0, 0, 0]}, frame="base"))
    assert transport.drain()
    assert call(transport, "mark_success").success
    reply = call(transport, "stop_and_save")
    assert reply.success, reply.message
    session.wait_saved()

    store = EpisodeStore.open(tmp_path / "demo.zarr")
    ep = store.episode(0)
    assert ep.meta["success"] is True and ep.meta["task"] == "reach" and ep.meta["source"] == "teleop"
    pos, t = ep.read("joint_pos")
    np.testing.assert_array_equal(t, ts)
    np.testing.assert_array_equal(pos, np.arange(7)[None] + np.asarray(ts)[:, None])
    np.testing.assert_array_equal(ep.read("joint_vel")[0][:, 0], -np.asarray(ts))
    assert ep.length("cam_rgb") == 3 and ep.read("cam_rgb")[0][2].max() == 2
    np.testing.assert_allclose(ep.read("ee_pos")[0], [[0.4, 0.0, 0.3]])


def test_status_is_published_on_every_command(session, transport):
    seen = []
    transport.subscribe(Topic("recorder/status", "status", QoS(depth=20, latched=True)), seen.append)
    call(transport, "start")
    publish_joints(transport, [100.0, 100.01])
    call(transport, "discard")
    assert transport.drain()
    states = [s["state"] for s in seen]
    assert states[0] == "idle" and "recording" in states and states[-1] == "idle"
    assert seen[-1]["episodes_discarded"] == 1


def test_discarded_episode_leaves_no_trace(session, transport, clock, tmp_path):
    call(transport, "start")
    publish_joints(transport, [clock.t + 0.01])
    assert transport.drain()
    assert call(transport, "discard").success
    call(transport, "start")
    publish_joints(transport, [clock.t + 0.02, clock.t + 0.03])
    assert transport.drain()
    call(transport, "stop_and_save")
    session.wait_saved()
    store = EpisodeStore.open(tmp_path / "demo.zarr")
    assert len(store) == 1 and store.episode(0).length("joint_pos") == 2
    assert store.episode(0).meta["success"] is None


def test_samples_outside_an_episode_are_ignored(session, transport, clock):
    publish_joints(transport, [clock.t])  # idle: ignored
    assert transport.drain()
    call(transport, "start")
    publish_joints(transport, [clock.t - 0.5, clock.t + 0.01])  # stamped before start: early
    assert transport.drain()
    status = session.status()
    assert status["samples"]["joint_pos"] == 1 and status["early"] == 1


def test_commands_in_the_wrong_state_fail_with_a_reason(session, transport):
    assert "not recording" in call(transport, "stop_and_save").message
    assert "no open episode" in call(transport, "mark_failure").message
    call(transport, "start")
    reply = call(transport, "start")
    assert not reply.success and "already recording episode 0" in reply.message


def test_an_episode_without_samples_is_discarded_not_saved(session, transport, tmp_path):
    call(transport, "start")
    reply = call(transport, "stop_and_save")
    assert not reply.success and "no samples stored on" in reply.message and "/arm/joint_states" in reply.message
    assert session.status()["episodes_discarded"] == 1


def test_reset_period_blocks_start_until_it_elapses(tmp_path, clock, transport):
    session = make_session(tmp_path, clock, reset_s=5.0)
    session.attach(transport)
    call(transport, "start")
    publish_joints(transport, [clock.t + 0.01])
    assert transport.drain()
    call(transport, "stop_and_save")
    clock.t += 2.0
    reply = call(transport, "start")
    assert not reply.success and "3.0 s left" in reply.message
    assert session.tick()["state"] == "resetting"
    clock.t += 3.0
    assert session.tick()["state"] == "idle"
    assert call(transport, "start").success
    session.close()


def test_max_episode_length_saves_and_auto_start_begins_the_next(tmp_path, clock, transport):
    session = make_session(tmp_path, clock, max_episode_s=1.0, reset_s=0.5, auto_start=True)
    session.attach(transport)
    call(transport, "start")
    publish_joints(transport, [clock.t + 0.1, clock.t + 0.2])
    assert transport.drain()
    clock.t += 1.0
    assert session.tick()["state"] == "resetting"
    clock.t += 0.5
    status = session.tick()
    assert status["state"] == "recording" and status["episode"] == 1
    session.wait_saved()
    assert session.status()["episodes_saved"] == 1
    meta = EpisodeStore.open(tmp_path / "demo.zarr").episode(0).meta
    assert "max_episode_s" in meta["notes"]
    session.close(save_open=False)


def test_bad_samples_are_rejected_and_counted_without_stopping_the_session(session, transport, clock):
    call(transport, "start")
    pub = transport.publisher(Topic("/arm/joint_states", "joint_state", STATE))
    pub.publish(Sample(clock.t + 0.01, {"position": np.zeros(6), "velocity": np.zeros(7)}))  # 6 joints
    pub.publish(Sample(clock.t + 0.02, {"position": np.zeros(7)}))  # no velocity
    assert transport.drain()
    status = session.status()
    assert status["rejected"] == {"joint_pos": 1, "joint_vel": 1}
    assert status["samples"] == {"joint_pos": 1, "joint_vel": 1, "ee_pos": 0, "cam_rgb": 0}
    assert "velocity" in status["last_error"] and "/arm/joint_states" in status["last_error"]


def test_a_full_write_queue_drops_and_counts_instead_of_blocking(tmp_path, clock):
    routes = routes_from_config(STREAMS)
    writer = open_writer(tmp_path / "demo.zarr", routes, max_queue_bytes=1)
    session = RecordingSession(writer, routes, clock=clock)
    session.start()
    session.on_sample("/arm/joint_states", Sample(clock.t + 0.01, {"position": np.zeros(7), "velocity": np.zeros(7)}))
    assert session.status()["dropped"] == {"joint_pos": 1, "joint_vel": 1}
    session.close(save_open=False)


def test_closing_saves_the_open_episode(tmp_path, clock):
    session = make_session(tmp_path, clock)
    session.start()
    session.on_sample("/arm/joint_states", Sample(clock.t + 0.01, {"position": np.zeros(7), "velocity": np.zeros(7)}))
    session.close()
    assert EpisodeStore.open(tmp_path / "demo.zarr").episode(0).meta["notes"] == "saved at session close"


@pytest.mark.parametrize("change, words", [
    ({"kind": "odometry"}, ["streams.joint_pos.kind", "odometry"]),
    ({"field": "torque"}, ["streams.joint_pos.field", "torque"]),
    ({"rate_hz": -1}, ["streams.joint_pos", "rate_hz"]),
    ({"topic": None}, ["streams.joint_pos", "missing 'topic'"]),
])
def test_bad_stream_config_names_the_field(change, words):
    entry = {k: v for k, v in (STREAMS["joint_pos"] | change).items() if v is not None}
    with pytest.raises(ConfigError) as e:
        routes_from_config({"joint_pos": entry})
    assert all(w in str(e.value) for w in words)


def test_existing_store_with_other_streams_is_refused(tmp_path):
    routes = routes_from_config(STREAMS)
    open_writer(tmp_path / "demo.zarr", routes).close()
    other = routes_from_config({**STREAMS, "joint_pos": STREAMS["joint_pos"] | {"shape": [6]}})
    with pytest.raises(StoreError, match=r"joint_pos is float64 \(7,\), configured float64 \(6,\)"):
        open_writer(tmp_path / "demo.zarr", other)


def test_fields_listed_together_are_concatenated_into_one_stream(tmp_path, clock):
    streams = {"ee_force": {"topic": "/arm/ee_wrench", "kind": "wrench", "field": ["force", "torque"],
                            "dtype": "float32", "shape": [6], "rate_hz": 100.0}}
    routes = routes_from_config(streams)
    session = RecordingSession(open_writer(tmp_path / "w.zarr", routes), routes, clock=clock)
    session.start()
    session.on_sample("/arm/ee_wrench", Sample(clock.t, {"force": [1.0, 2, 3], "torque": [4.0, 5, 6]}))
    session.close()
    np.testing.assert_array_equal(EpisodeStore.open(tmp_path / "w.zarr").episode(0).read("ee_force")[0], [[1, 2, 3, 4, 5, 6]])


def test_the_shipped_recorder_parameter_file_maps_valid_streams():
    params = load_yaml(config_dir() / "ros" / "recorder.yaml")["recorder"]["ros__parameters"]
    routes = routes_from_config(params["streams"], cameras=load_rig(params["rig"]).cameras)
    assert params["index_stream"] in {r.spec.name for r in routes}
    # large frames need reliable delivery (best effort loses a whole frame with any fragment), queued for 1 s
    assert {r.qos() for r in routes if r.kind == "image"} == {QoS(depth=30, reliable=True)}


def test_the_shipped_camera_and_recorder_configs_agree_on_the_real_rig():
    cameras = load_rig("franka_fr3").cameras
    for node, section in load_yaml(config_dir() / "ros" / "camera.yaml").items():
        args, camera = section["ros__parameters"]["device_args"], section["ros__parameters"]["camera"]
        assert (args["width"], args["height"], args["fps"]) == tuple(cameras[camera][k] for k in ("width", "height", "fps")), node
    params = load_yaml(config_dir() / "ros" / "recorder.yaml")["recorder"]["ros__parameters"]
    shapes = {r.spec.name: r.spec.shape for r in routes_from_config(params["streams"], cameras=cameras) if r.kind == "image"}
    assert shapes == {"cam_front_rgb": (480, 640, 3), "cam_wrist_rgb": (480, 640, 3)}


def test_gaps_in_timestamps_are_reported_as_missing_samples(session, transport, clock, tmp_path):
    call(transport, "start")
    ts = [clock.t + 0.01 * i for i in (1, 2, 3, 7, 8)]  # 100 Hz stream, samples 4, 5, 6 never arrived
    publish_joints(transport, ts)
    assert transport.drain()
    assert session.status()["missing"] == {"joint_pos": 3, "joint_vel": 3}
    call(transport, "stop_and_save")
    session.wait_saved()
    assert EpisodeStore.open(tmp_path / "demo.zarr").episode(0).meta["extra"]["missing"] == {"joint_pos": 3, "joint_vel": 3}


def test_joints_are_picked_by_name_whatever_the_publisher_order(tmp_path, clock):
    streams = {"joint_pos": STREAMS["joint_pos"] | {"names": ["j1", "j2", "j3"], "shape": [3]}}
    routes = routes_from_config(streams)
    session = RecordingSession(open_writer(tmp_path / "n.zarr", routes), routes, clock=clock)
    session.start()
    session.on_sample("/arm/joint_states", Sample(clock.t, {"position": [3.0, 9.0, 1.0, 2.0]}, names=("j3", "finger", "j1", "j2")))
    session.on_sample("/arm/joint_states", Sample(clock.t + 0.01, {"position": [1.0, 2.0]}, names=("j1", "j2")))
    status = session.status()
    assert status["rejected"] == {"joint_pos": 1} and "joints ['j3']" in status["last_error"]
    session.close()
    np.testing.assert_array_equal(EpisodeStore.open(tmp_path / "n.zarr").episode(0).read("joint_pos")[0], [[1.0, 2.0, 3.0]])


def test_joint_names_must_fit_the_stream():
    with pytest.raises(ConfigError, match=r"streams.joint_pos.names: 3 joint names need a joint_state stream of 3 values, not joint_state \(7,\)"):
        routes_from_config({"joint_pos": STREAMS["joint_pos"] | {"names": ["a", "b", "c"]}})


def test_in_process_samples_are_appended_straight_to_their_streams(tmp_path, clock):
    session = make_session(tmp_path, clock)
    assert not session.append("ee_pos", np.zeros(3), 0.0)            # not recording: ignored
    session.start()
    for i in range(3):
        assert session.append("ee_pos", np.array([0.4, 0.0, 0.3 + i]), 0.01 * i)   # the source's own clock
    assert not session.append("ee_pos", np.zeros(4), 0.5)             # wrong shape: rejected, counted
    status = session.status()
    assert status["samples"]["ee_pos"] == 3 and status["rejected"] == {"ee_pos": 1}
    assert "stream ee_pos" in status["last_error"]
    session.mark_success()
    assert session.stop_and_save().success
    session.close()
    pos, t = EpisodeStore.open(tmp_path / "demo.zarr").read("ee_pos", 0)
    np.testing.assert_allclose(pos[:, 2], [0.3, 1.3, 2.3])
    np.testing.assert_allclose(t, [0.0, 0.01, 0.02])


def test_listeners_hear_every_begin_and_end_whatever_caused_it(tmp_path, clock):
    session = make_session(tmp_path, clock, max_episode_s=1.0, auto_start=True)
    heard = []
    session.listeners.append(lambda event, episode: heard.append((event, episode, session.status()["state"])))
    session.start()
    session.append("ee_pos", np.zeros(3), 0.0)
    clock.t += 1.0
    session.tick()                                                    # max_episode_s: saved, auto_start: next
    session.discard()
    session.close()                                                   # no auto_start while closing
    assert heard == [("begin", 0, "recording"), ("saved", 0, "resetting"), ("begin", 1, "recording"),
                     ("discarded", 1, "resetting"), ("begin", 1, "recording"), ("discarded", 1, "resetting")]
    assert session.status()["state"] == "closed" and len(EpisodeStore.open(tmp_path / "demo.zarr")) == 1


# -- losses and bad data are counted, logged and saved; never silent ----------------------------------------------
def joint_sample(t, position=None):
    position = np.arange(7, dtype=float) if position is None else position
    return Sample(t, {"position": position, "velocity": np.zeros(7)})


def test_publisher_jitter_is_not_counted_as_missing_but_every_lost_sample_is(session, clock, tmp_path):
    rng = np.random.default_rng(0)
    session.start()
    nominal = clock.t + 0.01 * np.arange(1, 201)                     # 200 samples of a 100 Hz stream...
    jittered = nominal + rng.uniform(-0.004, 0.004, nominal.size)    # ...each sent up to 0.4 periods early or late
    lost = {17, 18, 19, 120, 121, 199 - 5}
    for i, t in enumerate(jittered):
        clock.t = float(t) + 0.002                                   # received 2 ms after its stamp
        if i not in lost:
            session.on_sample("/arm/joint_states", joint_sample(float(t)))
    status = session.status()
    assert status["missing"] == {"joint_pos": len(lost), "joint_vel": len(lost)}
    assert session.stop_and_save().success
    session.wait_saved()
    extra = EpisodeStore.open(tmp_path / "demo.zarr").episode(0).meta["extra"]
    assert extra["missing"] == {"joint_pos": len(lost), "joint_vel": len(lost)}
    assert 0.03 < extra["max_gap_s"]["joint_pos"] < 0.05             # samples 17-19: a 4-period gap
    # `data validate` flags the episode, `data info` counts the losses
    (problem,) = validate(tmp_path / "demo.zarr", decode=False)
    assert str(problem) == f"meta/episode_info[0]: samples lost while recording: missing {extra['missing']}"
    info = store_info(EpisodeStore.open(tmp_path / "demo.zarr"))
    assert info["missing_samples"] == 2 * len(lost) and info["lossy_episodes"] == [0]
    assert f"missing     {2 * len(lost)} samples" in format_info(info)


def test_nonfinite_values_and_bad_stamps_are_rejected_counted_and_logged(tmp_path, clock, caplog):
    session = make_session(tmp_path, clock)
    session.start()
    nan = np.r_[np.nan, np.zeros(6)]
    for i in range(1, 11):
        session.on_sample("/arm/joint_states", joint_sample(clock.t + 0.01 * i, nan if i % 2 else None))
    session.on_sample("/arm/joint_states", joint_sample(clock.t + 2.0))     # from the future
    session.on_sample("/arm/joint_states", joint_sample(-1.7e9))            # header.stamp never set
    status = session.status()
    assert status["samples"]["joint_pos"] == 5 and status["early"] == 0
    assert status["rejected_why"]["joint_pos"] == {"nonfinite": 5, "clock": 1, "unstamped": 1}
    assert status["rejected_why"]["joint_vel"] == {"clock": 1, "unstamped": 1}   # its values were finite
    warnings = [r.getMessage() for r in caplog.records]
    assert any("joint_pos" in w and "NaN" in w and "/arm/joint_states" in w for w in warnings), warnings
    assert any("2.000 s ahead of" in w for w in warnings) and any("header.stamp unset" in w for w in warnings)
    assert session.stop_and_save().success
    session.wait_saved()
    ep = EpisodeStore.open(tmp_path / "demo.zarr").episode(0)
    assert ep.meta["extra"]["rejected"]["joint_pos"] == {"nonfinite": 5, "clock": 1, "unstamped": 1}
    assert np.isfinite(ep.read("joint_pos")[0]).all() and ep.length("joint_pos") == 5
    assert any("stream joint_pos: 5 stored" in r.getMessage() and "rejected" in r.getMessage() for r in caplog.records)


def test_a_publisher_clock_behind_the_recorder_is_refused_not_stored_misaligned(tmp_path, clock, caplog):
    caplog.set_level("INFO")
    session = make_session(tmp_path, clock)
    session.start()
    for i in range(1, 301):                      # 3 s of a 100 Hz stream whose clock is 2 s behind
        clock.t += 0.01
        session.on_sample("/arm/joint_states", joint_sample(clock.t - 2.0 + 0.001))
    status = session.status()
    assert status["early"] == 199 and status["samples"]["joint_pos"] == 101   # in-flight-looking, then stored
    assert status["min_lag_s"]["joint_pos"] == pytest.approx(1.999)
    reply = session.stop_and_save()
    assert not reply.success and "joint_pos (/arm/joint_states): every stamp at least 1.999 s behind" in reply.message
    assert any("199 samples stamped before the start" in r.getMessage() for r in caplog.records)
    session.close()
    assert len(EpisodeStore.open(tmp_path / "demo.zarr")) == 0


def test_a_backlog_in_the_queues_is_not_taken_for_a_clock_offset(session, clock, tmp_path):
    session.start()
    for i in range(1, 101):
        clock.t += 0.01
        # the first samples arrive at once, the rest after a 3 s stall of the executor
        session.on_sample("/arm/joint_states", joint_sample(clock.t - 0.001 - (3.0 if i > 10 else 0.0)))
        if i == 10:
            clock.t += 3.0
    assert session.stop_and_save().success


def test_an_episode_missing_a_required_stream_is_refused(tmp_path, clock):
    streams = STREAMS | {"cam_rgb": STREAMS["cam_rgb"] | {"required": True}}
    routes = routes_from_config(streams)
    session = RecordingSession(open_writer(tmp_path / "demo.zarr", routes), routes, clock=clock)
    session.start()
    session.on_sample("/arm/joint_states", joint_sample(clock.t + 0.01))
    session.on_sample("/cam/image", Sample(clock.t + 0.01, {"image": np.zeros((480, 640, 3), np.uint8)}))  # wrong size
    reply = session.stop_and_save()
    assert not reply.success
    assert "cam_rgb (/cam/image: 1 rejected {'shape': 1}" in reply.message and "discarded" in reply.message
    assert "sample shape (480, 640, 3) != declared (8, 8, 3)" in reply.message
    session.close()
    assert len(EpisodeStore.open(tmp_path / "demo.zarr")) == 0


def test_image_streams_take_the_resolution_of_their_camera_in_the_rig():
    cameras = {"front": {"width": 640, "height": 480, "fps": 30}}
    entry = {"topic": "/cameras/front/color/image_raw", "kind": "image", "camera": "front", "dtype": "uint8",
             "codec": "jpeg"}
    (route,) = routes_from_config({"cam": entry}, cameras=cameras)
    assert route.spec.shape == (480, 640, 3) and route.spec.rate_hz == 30.0
    with pytest.raises(ConfigError, match=r"sends 640x480 frames, i.e. shape \[480, 640, 3\]"):
        routes_from_config({"cam": entry | {"shape": [128, 128, 3]}}, cameras=cameras)
    with pytest.raises(ConfigError, match="no camera 'front'"):
        routes_from_config({"cam": entry}, cameras={"wrist": cameras["front"]})
    with pytest.raises(ConfigError, match="unknown key.*'reliabilty'.*did you mean 'reliability'"):
        routes_from_config({"cam": entry | {"reliabilty": "reliable"}}, cameras=cameras)


def test_qos_is_reliable_unless_the_publishers_only_offer_best_effort():
    (auto,) = routes_from_config({"cam": STREAMS["cam_rgb"]})
    assert auto.qos() == QoS(depth=30, reliable=True) and auto.qos(offered_reliable=True).reliable
    assert not auto.qos(offered_reliable=False).reliable
    (forced,) = routes_from_config({"cam": STREAMS["cam_rgb"] | {"reliability": "reliable", "depth": 4}})
    assert forced.qos(offered_reliable=False) == QoS(depth=4, reliable=True)


def test_the_label_and_loss_counters_are_journaled_into_the_open_episode(session, clock, tmp_path):
    session.start()
    for t in (0.01, 0.02, 0.05):                                      # two samples missing
        session.on_sample("/arm/joint_states", joint_sample(clock.t + t))
    assert session.mark_failure().success
    session.writer.wait()
    journal = EpisodeStore.open(tmp_path / "demo.zarr").header["open_episode"]["meta"]
    assert journal["success"] is False and journal["extra"]["missing"] == {"joint_pos": 2, "joint_vel": 2}
