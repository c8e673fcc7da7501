"""RosTransport: robot_rl's Transport interface on an rclpy node (standard message types only).

Topics become publishers/subscriptions of the kind's ROS type (see convert.py), `QoS` becomes a
KEEP_LAST QoSProfile (RELIABLE or BEST_EFFORT; TRANSIENT_LOCAL when latched), services become
std_srvs/srv/Trigger or SetBool servers and clients. Names are ROS names: "~/start" is relative to the
node ("/recorder/start"). Callbacks run on the node's executor; conversion or callback errors are
logged and counted on the subscription (`errors`), never raised into the executor. Messages the
middleware reports as lost (Fast DDS sample-lost events) are counted in `dropped`.

`close()` destroys everything the transport created, so a lifecycle node makes a transport on
activate and closes it on deactivate.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import SetBool, Trigger

from robot_rl.runtime.transport import (Handler, Publisher, QoS, Reply, Subscription, Topic, Transport,
                                        TransportError, check_service, handle_request)
from robot_rl_ros.convert import msg_type, to_msg, to_sample
from robot_rl_ros.stamps import StampMapping

SERVICE_TYPES = {"trigger": Trigger, "set_bool": SetBool}


def qos_profile(qos: QoS) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(qos.depth),
        reliability=ReliabilityPolicy.RELIABLE if qos.reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if qos.latched else DurabilityPolicy.VOLATILE,
    )


class _RosPublisher(Publisher):
    def __init__(self, transport: "RosTransport", topic: Topic) -> None:
        self.topic = topic
        self._stamps = transport.stamps
        self.handle = transport.node.create_publisher(msg_type(topic.kind), topic.name, qos_profile(topic.qos))

    def publish(self, msg: Any) -> None:
        self.handle.publish(to_msg(self.topic.kind, self.topic.check(msg), self._stamps))


class _RosSubscription(Subscription):
    def __init__(self, transport: "RosTransport", topic: Topic, callback: Callable[[Any], None]) -> None:
        super().__init__(topic, callback)
        self.transport = transport
        node = transport.node
        events = SubscriptionEventCallbacks(message_lost=self._lost)
        try:
            self.handle = node.create_subscription(msg_type(topic.kind), topic.name, self._receive,
                                                   qos_profile(topic.qos), event_callbacks=events)
        except Exception:  # middleware without sample-lost events: count nothing rather than fail
            self.handle = node.create_subscription(msg_type(topic.kind), topic.name, self._receive, qos_profile(topic.qos))

    def _lost(self, info) -> None:
        self.dropped += int(info.total_count_change)

    def _receive(self, msg) -> None:
        name = self.handle.topic_name  # resolved: after remapping, the name the graph shows
        try:
            self.callback(to_sample(self.topic.kind, msg, self.transport.stamps, name))
        except Exception as e:
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
            self.transport.node.get_logger().error(f"topic {name}: {self.last_error}", throttle_duration_sec=5.0)

    def close(self) -> None:
        self.transport._destroy(self)


class RosTransport(Transport):
    """Transport on `node` (a Node or LifecycleNode that some executor spins)."""

    def __init__(self, node, stamps: StampMapping | None = None) -> None:
        self.node = node
        self.stamps = stamps or StampMapping.for_node(node)
        self._lock = threading.Lock()
        self._publishers: list[_RosPublisher] = []
        self._subscriptions: list[_RosSubscription] = []
        self._services: dict[str, Any] = {}
        self._clients: dict[str, Any] = {}
        self._closed = False

    def publisher(self, topic: Topic) -> Publisher:
        with self._lock:
            self._check_open()
            pub = _RosPublisher(self, topic)
            self._publishers.append(pub)
        return pub

    def subscribe(self, topic: Topic, callback: Callable[[Any], None]) -> Subscription:
        with self._lock:
            self._check_open()
            sub = _RosSubscription(self, topic, callback)
            self._subscriptions.append(sub)
        return sub

    def serve(self, name: str, kind: str, handler: Handler) -> None:
        check_service(name, kind, None if kind == "trigger" else False)

        def answer(request, response):
            reply = handle_request(name, handler, None if kind == "trigger" else bool(request.data))
            response.success, response.message = reply.success, reply.message
            return response

        with self._lock:
            self._check_open()
            if name in self._services:
                raise TransportError(f"service {name}: already served")
            self._services[name] = self.node.create_service(SERVICE_TYPES[kind], name, answer)

    def call(self, name: str, kind: str, request: Any = None, timeout_s: float = 5.0) -> Reply:
        """Call a service and wait for the answer. The node must be spun by an executor on another
        thread (never call this from one of the node's own callbacks on a single-threaded executor)."""
        check_service(name, kind, request)
        with self._lock:
            self._check_open()
            client = self._clients.get(name)
            if client is None:
                client = self._clients[name] = self.node.create_client(SERVICE_TYPES[kind], name)
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise TransportError(f"service {name}: not available after {timeout_s} s")
        req = SERVICE_TYPES[kind].Request()
        if kind == "set_bool":
            req.data = bool(request)
        done = threading.Event()
        future = client.call_async(req)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout_s):
            client.remove_pending_request(future)
            raise TransportError(f"service {name}: no answer within {timeout_s} s")
        response = future.result()
        return Reply(bool(response.success), str(response.message))

    def _destroy(self, sub: _RosSubscription) -> None:
        with self._lock:
            if sub in self._subscriptions:
                self._subscriptions.remove(sub)
                self.node.destroy_subscription(sub.handle)

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"node {self.node.get_name()}: transport is closed")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for pub in self._publishers:
                self.node.destroy_publisher(pub.handle)
            for sub in self._subscriptions:
                self.node.destroy_subscription(sub.handle)
            for srv in self._services.values():
                self.node.destroy_service(srv)
            for client in self._clients.values():
                self.node.destroy_client(client)
            self._publishers.clear()
            self._subscriptions.clear()
            self._services.clear()
            self._clients.clear()
