"""LocalTransport: typed topics, keep-last non-blocking delivery, latched status, services."""

import threading

import numpy as np
import pytest

from robot_rl.runtime.transport import (STATE, STATUS, LocalTransport, QoS, Reply, Sample, Topic,
                                        TransportError)

JOINTS = Topic("/arm/joint_states", "joint_state", STATE)


def joint_sample(t, n=7):
    return Sample(t, {"position": np.full(n, t), "velocity": np.zeros(n)})


@pytest.fixture
def transport():
    with LocalTransport() as tr:
        yield tr


def test_subscriber_receives_published_samples_in_order(transport):
    got = []
    transport.subscribe(JOINTS, got.append)
    pub = transport.publisher(JOINTS)
    for i in range(20):
        pub.publish(joint_sample(float(i)))
    assert transport.drain()
    assert [s.t for s in got] == list(range(20))
    np.testing.assert_array_equal(got[3].fields["position"], np.full(7, 3.0))


def test_publish_does_not_block_on_a_slow_subscriber_and_counts_drops(transport):
    entered, release = threading.Event(), threading.Event()
    got = []

    def slow(msg):
        entered.set()
        release.wait(5)
        got.append(msg.t)

    sub = transport.subscribe(Topic("/cam/image", "image", QoS(depth=2, reliable=False)), slow)
    pub = transport.publisher(Topic("/cam/image", "image", QoS(depth=2, reliable=False)))
    image = np.zeros((4, 4, 3), np.uint8)
    pub.publish(Sample(0.0, {"image": image}))
    assert entered.wait(5)
    for i in range(1, 10):  # returns although the callback is stuck on the first message
        pub.publish(Sample(float(i), {"image": image}))
    release.set()
    assert transport.drain()
    assert got == [0.0, 8.0, 9.0]  # keep-last: the newest survive
    assert sub.dropped == 7


def test_latched_topic_reaches_a_late_subscriber(transport):
    topic = Topic("recorder/status", "status", STATUS)
    transport.publisher(topic).publish({"state": "idle"})
    got = []
    transport.subscribe(topic, got.append)
    assert transport.drain()
    assert got == [{"state": "idle"}]


def test_callback_exception_is_counted_not_fatal(transport):
    got = []

    def flaky(msg):
        if msg.t == 1.0:
            raise ValueError("boom")
        got.append(msg.t)

    sub = transport.subscribe(JOINTS, flaky)
    pub = transport.publisher(JOINTS)
    for t in (0.0, 1.0, 2.0):
        pub.publish(joint_sample(t))
    assert transport.drain()
    assert got == [0.0, 2.0] and sub.errors == 1 and "boom" in sub.last_error


@pytest.mark.parametrize("msg, words", [
    (Sample(0.0, {"velocity": np.zeros(7)}), ["/arm/joint_states", "missing ['position']"]),
    (Sample(0.0, {"position": np.zeros(7), "torque": np.zeros(7)}), ["unexpected ['torque']"]),
    ({"position": [0.0]}, ["expected a Sample", "dict"]),
])
def test_wrong_message_is_rejected_naming_topic_and_field(transport, msg, words):
    with pytest.raises(TransportError) as e:
        transport.publisher(JOINTS).publish(msg)
    assert all(w in str(e.value) for w in words)


def test_pose_and_image_shapes_are_checked(transport):
    with pytest.raises(TransportError, match="quat has shape"):
        transport.publisher(Topic("/ee", "pose")).publish(Sample(0.0, {"position": np.zeros(3), "quat": np.zeros(3)}))
    with pytest.raises(TransportError, match=r"image int64 \(4, 4, 3\)"):
        transport.publisher(Topic("/cam", "image")).publish(Sample(0.0, {"image": np.zeros((4, 4, 3), int)}))


def test_a_topic_has_one_kind(transport):
    transport.subscribe(JOINTS, lambda m: None)
    with pytest.raises(TransportError, match="is joint_state, cannot also be pose"):
        transport.publisher(Topic(JOINTS.name, "pose"))


def test_non_finite_timestamp_is_refused():
    with pytest.raises(TransportError, match="finite"):
        Sample(float("nan"), {})


def test_services_answer_and_handler_errors_become_failed_replies(transport):
    transport.serve("arm/hold", "set_bool", lambda on: Reply(True, f"hold={on}"))
    transport.serve("arm/reset", "trigger", lambda _: 1 / 0)
    assert transport.call("arm/hold", "set_bool", True) == Reply(True, "hold=True")
    reply = transport.call("arm/reset", "trigger")
    assert not reply.success and "arm/reset" in reply.message and "ZeroDivisionError" in reply.message
    with pytest.raises(TransportError, match="nobody serves it"):
        transport.call("arm/missing", "trigger")
    with pytest.raises(TransportError, match="needs a bool"):
        transport.call("arm/hold", "set_bool", None)


def test_closing_stops_delivery_and_releases_subscriptions():
    transport = LocalTransport()
    transport.subscribe(JOINTS, lambda m: None)
    assert transport.subscription_count(JOINTS.name) == 1
    transport.close()
    assert transport.subscription_count(JOINTS.name) == 0
    with pytest.raises(TransportError, match="closed"):
        transport.publisher(JOINTS)


def test_joint_names_must_label_every_entry(transport):
    with pytest.raises(TransportError, match="field position has shape \\(7,\\) for 2 names"):
        transport.publisher(JOINTS).publish(Sample(0.0, {"position": np.zeros(7)}, names=("a", "b")))
