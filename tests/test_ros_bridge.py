"""The rosbridge client against a rosbridge v2 JSON protocol server written here (``websockets``, in a
background thread): what it publishes, the watchdog, the e-stop, malformed messages, a refused
connection. The policy is the tiny exported one from ``conftest.exported`` (64x64 input, 10 Hz)."""

import asyncio
import base64
import json
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("roslibpy")
websockets_server = pytest.importorskip("websockets.asyncio.server")

from sim2real.ros.core import DeployConfig, PolicyLoop  # noqa: E402
from sim2real.ros.messages import (  # noqa: E402
    decode_compressed,
    encode_compressed,
    encode_image,
    quaternion_from_yaw,
    s_to_stamp,
)
from sim2real.ros.safety import SafetyGate  # noqa: E402

SIZE = 64
POSITION = (0.55, 0.02, 0.25)  # m, inside the default workspace
YAW = 0.3
OPENING = 0.04                  # m
JOINTS = ["finger_left", "finger_right"]


# ---------------------------------------------------------------------------- a rosbridge v2 server
class FakeRosbridge:
    """Speaks enough of the rosbridge v2 protocol for roslibpy: advertise / unadvertise / subscribe /
    unsubscribe / publish (routed to subscribers), call_service answered with a failure. Records every
    operation a client sends, with its arrival time (``time.monotonic()``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received: list[tuple[float, dict]] = []
        self.subscribers: dict[str, set] = {}
        self.connections: set = set()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(5), "the test server did not start"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        async def start():  # websockets wants the loop running when the server is made
            return await websockets_server.serve(self._handler, "127.0.0.1", 0)

        self.server = self.loop.run_until_complete(start())
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _handler(self, ws) -> None:
        self.connections.add(ws)
        try:
            async for raw in ws:
                message = json.loads(raw)
                with self._lock:
                    self.received.append((time.monotonic(), message))
                op, topic = message.get("op"), message.get("topic")
                if op == "subscribe":
                    self.subscribers.setdefault(topic, set()).add(ws)
                elif op == "unsubscribe":
                    self.subscribers.get(topic, set()).discard(ws)
                elif op == "publish":
                    await self._broadcast(topic, message["msg"])
                elif op == "call_service":
                    await ws.send(json.dumps({"op": "service_response", "id": message.get("id"),
                                              "service": message.get("service"), "values": {}, "result": False}))
                # advertise / unadvertise / anything else: recorded only
        except Exception:  # noqa: BLE001 - a client going away mid-message
            pass
        finally:
            for subs in self.subscribers.values():
                subs.discard(ws)
            self.connections.discard(ws)

    async def _broadcast(self, topic: str, msg, raw: dict | None = None) -> int:
        text = json.dumps(raw if raw is not None else {"op": "publish", "topic": topic, "msg": msg})
        sent = 0
        for ws in list(self.subscribers.get(topic, ()) if raw is None else self.connections):
            try:
                await ws.send(text)
                sent += 1
            except Exception:  # noqa: BLE001 - closed meanwhile
                pass
        return sent

    # ------------------------------------------------------------------ for the tests
    def inject(self, topic: str, msg) -> None:
        """Publish ``msg`` to the clients subscribed to ``topic`` (asserts there is one)."""
        sent = asyncio.run_coroutine_threadsafe(self._broadcast(topic, msg), self.loop).result(5)
        assert sent == 1, f"{sent} subscribers on {topic}"

    def send_raw(self, message: dict) -> None:
        """Send any protocol message to every connected client."""
        asyncio.run_coroutine_threadsafe(self._broadcast("", None, raw=message), self.loop).result(5)

    def drop_connections(self) -> None:
        """Close every client connection from the server side (rosbridge restarting, network loss)."""
        async def close_all():
            for ws in list(self.connections):
                await ws.close()

        asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(5)

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def ops(self, op: str | None = None) -> list[tuple[float, dict]]:
        with self._lock:
            return [(t, m) for t, m in self.received if op is None or m.get("op") == op]

    def published(self, topic: str | None = None) -> list[tuple[float, str, dict]]:
        """(arrival time, topic, msg) of what clients published, in arrival order."""
        return [(t, m["topic"], m["msg"]) for t, m in self.ops("publish") if topic is None or m["topic"] == topic]

    def close(self) -> None:
        self.server.close()
        asyncio.run_coroutine_threadsafe(self.server.wait_closed(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def wait_for(predicate, timeout: float = 3.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# ---------------------------------------------------------------------------- messages
def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def header(stamp: tuple[int, int], ros1: bool = False) -> dict:
    sec, ns = stamp
    return {"stamp": {"secs": sec, "nsecs": ns} if ros1 else {"sec": sec, "nanosec": ns}, "frame_id": "camera"}


def image_msg(rgb: np.ndarray, stamp, ros1=False, compressed=False) -> dict:
    msg = encode_compressed(rgb) if compressed else encode_image(rgb)
    return {**msg, "data": b64(msg["data"]), "header": header(stamp, ros1)}


def pose_msg(stamp, ros1=False, position=POSITION, yaw=YAW) -> dict:
    q = quaternion_from_yaw(yaw)
    return {"header": {**header(stamp, ros1), "frame_id": "test_base"},
            "pose": {"position": dict(zip("xyz", position, strict=True)),
                                                    "orientation": dict(zip("xyzw", q, strict=True))}}


def joints_msg(opening=OPENING) -> dict:
    return {"header": header((0, 0)), "name": JOINTS + ["wrist"], "position": [opening / 2, opening / 2, 1.0],
            "velocity": [], "effort": []}


def norm(v: dict) -> float:
    return float(np.linalg.norm([v["x"], v["y"], v["z"]]))


def first_zero_twist(server, config, after: float, **wait) -> float:
    """Wait for the first zero twist the node publishes after time ``after``; its arrival time."""
    return wait_for(lambda: next((t for t, _, m in server.published(config.topics.twist)
                                  if t > after and norm(m["twist"]["linear"]) == 0), None), **wait)


def stamp_of(h: dict) -> tuple[int, int]:
    s = h["stamp"]
    return (s["sec"], s["nanosec"]) if "sec" in s else (s["secs"], s["nsecs"])


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def server():
    srv = FakeRosbridge()
    yield srv
    srv.close()


class PushedPolicy:
    """The exported policy plus a push read from the frame's top-left pixel. The untrained export answers
    (almost) zero translation whatever it sees; the push makes every frame's command different, and large
    enough (|action| up to 2) to exercise the clip and the speed clamps."""

    def __init__(self, inner) -> None:
        self.inner, self.spec, self.size = inner, inner.spec, inner.size

    def act(self, image, proprio):
        pixel = image[0, 0].astype(np.float32) / 127.5 - 1.0
        push = np.array([2 * pixel[0], 2 * pixel[1], 2 * pixel[2], 2 * pixel[0] * pixel[1], pixel[2]], np.float32)
        return self.inner.act(image, proprio) + push


@pytest.fixture(scope="module")
def policy(exported):
    from sim2real.runtime import OnnxPolicy

    return PushedPolicy(OnnxPolicy(exported[0]))


@pytest.fixture
def make_client(server, policy):
    """make_client(**config) -> (client, loop, warnings, log lines), connected and subscribed."""
    from sim2real.ros.bridge import RosbridgeClient

    clients = []

    def make(**overrides):
        server.clear()
        config = DeployConfig(**{"frame_id": "test_base", "gripper_joints": JOINTS, **overrides})
        warnings, lines = [], []
        loop = PolicyLoop(policy, config, warn=warnings.append)
        client = RosbridgeClient(loop, config, "127.0.0.1", server.port, log=lines.append)
        client.start(timeout=5.0)
        clients.append(client)
        topics = config.topics
        wanted = {topics.image, topics.ee_pose, topics.gripper_state, topics.estop, topics.reset}
        wait_for(lambda: wanted <= {m["topic"] for _, m in server.ops("subscribe")}
                 and all(server.subscribers.get(t) for t in wanted), what="subscriptions")
        return client, loop, warnings, lines

    yield make
    for client in clients:
        client.stop()
    wait_for(lambda: not server.connections, what="the clients to disconnect")


class Camera:
    """Streams poses + images (each frame a different random image) at ``hz``; remembers what the
    client should have decoded per stamp."""

    def __init__(self, server, config: DeployConfig, ros1=False, seed=0) -> None:
        self.server, self.config, self.ros1 = server, config, ros1
        self.rng = np.random.default_rng(seed)
        self.frames: dict[tuple[int, int], np.ndarray] = {}
        self.last_image = 0.0

    def stream(self, n: int, hz: float = 20.0) -> None:
        start = time.monotonic()
        for i in range(n):
            time.sleep(max(0.0, start + i / hz - time.monotonic()))
            stamp = divmod(time.time_ns(), 1_000_000_000)  # full ns: does not survive a trip through float s
            rgb = self.rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            msg = image_msg(rgb, stamp, self.ros1, self.config.compressed)
            if self.config.compressed:
                rgb = decode_compressed(msg["format"], msg["data"])
            self.frames[stamp] = rgb
            self.server.inject(self.config.topics.ee_pose, pose_msg(stamp, self.ros1))
            # Joint states stream too, with the frame's stamp: a gripper state older than 1.5 periods stops the arm.
            self.server.inject(self.config.topics.gripper_state, {**joints_msg(), "header": header(stamp, self.ros1)})
            self.last_image = time.monotonic()
            self.server.inject(self.config.topics.image, msg)


def expected_command(policy, loop: PolicyLoop, rgb: np.ndarray):
    """What the gate makes of the policy's action on this frame at POSITION / YAW / OPENING."""
    action = policy.act(rgb, np.array([*POSITION, YAW, OPENING], np.float32))
    gate = SafetyGate.from_spec(loop.safety, policy.spec)
    gate.image_received(0.0)
    return gate.command(action, np.array(POSITION), 0.0)


# ---------------------------------------------------------------------------- tests
@pytest.mark.parametrize("compressed, ros1", [(False, False), (True, True)], ids=["rgb8-ros2", "jpeg-ros1"])
def test_commands_from_images(server, make_client, policy, compressed, ros1):
    topics = {"image": "/camera/color/image_raw/compressed"} if compressed else {}
    client, loop, warnings, _ = make_client(topics=topics)
    config = client.config
    assert config.compressed == compressed
    subscribed = {m["topic"]: m["type"] for _, m in server.ops("subscribe")}
    assert subscribed[config.topics.image] == ("sensor_msgs/CompressedImage" if compressed else "sensor_msgs/Image")
    assert subscribed[config.topics.ee_pose] == "geometry_msgs/PoseStamped"
    advertised = {m["topic"]: m["type"] for _, m in server.ops("advertise")}
    assert advertised == {config.topics.twist: "geometry_msgs/TwistStamped",
                          config.topics.gripper_command: "std_msgs/Float64", config.topics.trace: "std_msgs/Header"}

    server.inject(config.topics.gripper_state, joints_msg())
    camera = Camera(server, config, ros1=ros1)
    camera.stream(12)
    wait_for(lambda: len(server.published(config.topics.trace)) >= 4, what="trace headers")
    client.stop()
    assert not client.connected
    assert not warnings, warnings

    out = [(t, topic, msg) for t, topic, msg in server.published()]
    twists = [msg for _, topic, msg in out if topic == config.topics.twist]
    assert len(twists) >= 5
    style = {"secs", "nsecs"} if ros1 else {"sec", "nanosec"}
    first_trace = next(i for i, (_, topic, _) in enumerate(out) if topic == config.topics.trace)
    for i, (_, topic, twist) in enumerate(out):
        if topic != config.topics.twist:
            continue
        assert twist["header"]["frame_id"] == "test_base"
        # ROS 2 style until a stamp has been seen on input, then the input's style
        keys = set(twist["header"]["stamp"])
        assert keys == style if i > first_trace else keys in ({"sec", "nanosec"}, style)
        sec, ns = stamp_of(twist["header"])
        assert abs(sec + ns * 1e-9 - time.time()) < 10.0
        assert norm(twist["twist"]["linear"]) <= loop.safety.max_linear_speed + 1e-9
        angular = twist["twist"]["angular"]
        assert angular["x"] == angular["y"] == 0.0 and abs(angular["z"]) <= loop.safety.max_angular_speed + 1e-9
    assert norm(twists[-1]["twist"]["linear"]) == norm(twists[-1]["twist"]["angular"]) == 0.0  # stop()

    # Each trace follows the twist (and gripper command) computed from the image with that exact stamp.
    checked = 0
    for i, (_, topic, msg) in enumerate(out):
        if topic != config.topics.trace:
            continue
        assert msg["frame_id"] == "" and set(msg["stamp"]) == style
        stamp = stamp_of(msg)
        assert stamp in camera.frames, f"trace stamp {stamp} is not an image stamp"
        before = [(tp, m) for _, tp, m in out[:i]]
        twist = next(m for tp, m in reversed(before) if tp == config.topics.twist)
        gripper = next(m for tp, m in reversed(before) if tp == config.topics.gripper_command)
        want = expected_command(policy, loop, camera.frames[stamp])
        np.testing.assert_allclose([twist["twist"]["linear"][a] for a in "xyz"], want.linear, atol=1e-5)
        np.testing.assert_allclose(twist["twist"]["angular"]["z"], want.angular[2], atol=1e-5)
        assert norm(twist["twist"]["linear"]) > 0
        np.testing.assert_allclose(gripper["data"], (want.gripper + 1) / 2 * loop.max_opening, atol=1e-6)
        assert 0.0 <= gripper["data"] <= loop.max_opening
        checked += 1
    assert checked >= 4
    speeds = [norm(m["twist"]["linear"]) for m in twists]
    assert max(speeds) == pytest.approx(loop.safety.max_linear_speed)  # the clamp was needed and applied
    assert loop.stats.inferences >= checked and loop.stats.latency_stamp
    # stop(): unsubscribed from every input topic and unadvertised the outputs
    assert {m["topic"] for _, m in server.ops("unsubscribe")} == {
        config.topics.image, config.topics.ee_pose, config.topics.gripper_state, config.topics.estop,
        config.topics.reset}
    assert len(server.ops("unadvertise")) == 3


def test_watchdog_zeroes_when_images_stop(server, make_client):
    client, loop, _, _ = make_client()
    config = client.config
    server.inject(config.topics.gripper_state, joints_msg())
    camera = Camera(server, config)
    camera.stream(10)
    last_image = camera.last_image
    zero = first_zero_twist(server, config, after=last_image, what="a zero twist")
    # The design promises the zero within 2 periods (1.5 stale + a quarter-period watchdog tick);
    # scripts/bench_ros.py measures that. A shared CI machine can delay any one wake-up by tens of ms,
    # so the test asserts the mechanism with a margin of one period.
    assert zero - last_image <= 3 * loop.period, f"zero after {zero - last_image:.3f} s"
    twists = server.published(config.topics.twist)
    moving = [t for t, _, m in twists if norm(m["twist"]["linear"]) > 0]
    assert len(moving) >= 4
    # While images stream, the control timer keeps its fixed schedule: one late wake-up is followed by
    # a short gap that catches up (seen on CI: 0.157 s then 0.043 s), but no tick is ever skipped.
    times = np.array([t for t, _, _ in twists if t <= last_image])
    gaps = np.diff(times)
    assert gaps.max() < 2.5 * loop.period, f"command stream stalled: gap {gaps.max():.3f} s"
    assert len(times) - 1 >= round((times[-1] - times[0]) / loop.period) - 1, (
        f"{len(times)} commands in {times[-1] - times[0]:.3f} s at {loop.period:.3f} s periods: ticks were skipped")
    # The zero keeps going out at the control rate, and nothing moves without images.
    time.sleep(3 * loop.period)
    after = [m for t, _, m in server.published(config.topics.twist) if t >= zero]
    assert len(after) >= 3
    assert all(norm(m["twist"]["linear"]) == 0 and m["twist"]["angular"]["z"] == 0 for m in after)


def test_estop_latches_until_reset(server, make_client):
    client, loop, _, lines = make_client()
    config = client.config
    server.inject(config.topics.gripper_state, joints_msg())
    camera = Camera(server, config)
    camera.stream(6)
    engaged = time.monotonic()
    server.inject(config.topics.estop, {"data": True})
    zero = first_zero_twist(server, config, after=engaged, timeout=1.0, what="the e-stop zero")
    # On arrival, not at the next tick (test_ros_core checks that on a fake clock); here, within a
    # period even when the shared machine delays the wake-up.
    assert zero - engaged < loop.period, f"e-stop zero after {zero - engaged:.3f} s"
    camera.stream(6)
    server.inject(config.topics.estop, {"data": False})  # does not release
    camera.stream(4)
    reset = time.monotonic()
    latched = [(t, tp, m) for t, tp, m in server.published() if zero <= t < reset]
    twists = [m for _, tp, m in latched if tp == config.topics.twist]
    assert len(twists) >= 3  # the control timer keeps the zero stream going (10 Hz over ~0.5 s)
    assert all(norm(m["twist"]["linear"]) == 0 and m["twist"]["angular"]["z"] == 0 for m in twists)
    assert not [m for _, tp, m in latched if tp in (config.topics.gripper_command, config.topics.trace)]
    assert loop.gate.estopped

    server.inject(config.topics.reset, {})
    camera.stream(6)
    wait_for(lambda: any(t > reset and norm(m["twist"]["linear"]) > 0
                         for t, _, m in server.published(config.topics.twist)), what="motion after the reset")
    assert not loop.gate.estopped
    assert any("reset" in line for line in lines)


MALFORMED_RAW = [
    ("base64", lambda m: {**m, "data": "!!not base64!!"}),
    ("bytes", lambda m: {**m, "data": b64(b"\x00" * 100)}),
    ("encoding", lambda m: {**m, "encoding": "yuv422"}),
    ("size 32x32", lambda m: image_msg(np.zeros((32, 32, 3), np.uint8), stamp_of(m["header"]))),
    ("missing field 'data'", lambda m: {k: v for k, v in m.items() if k != "data"}),
    ("missing field 'header.stamp'", lambda m: {k: v for k, v in m.items() if k != "header"}),
    ("height", lambda m: {**m, "height": "sixty-four"}),
    ("header.stamp is neither", lambda m: {**m, "header": {"stamp": {"seconds": 1}, "frame_id": ""}}),
    ("the message is a list", lambda m: [1, 2, 3]),
]
MALFORMED_JPEG = [
    ("base64", lambda m: {**m, "data": "%%%"}),
    ("does not decode", lambda m: {**m, "data": b64(b"definitely not a jpeg")}),
    ("does not decode", lambda m: {**m, "data": ""}),
    ("size 32x32", lambda m: image_msg(np.zeros((32, 32, 3), np.uint8), stamp_of(m["header"]), compressed=True)),
    ("missing field 'data'", lambda m: {"format": "jpeg", "header": m["header"]}),
]


@pytest.mark.parametrize("compressed", [False, True], ids=["rgb8", "jpeg"])
def test_malformed_messages_are_rejected(server, make_client, compressed):
    topics = {"image": "/camera/image/compressed"} if compressed else {}
    client, loop, warnings, lines = make_client(topics=topics)
    config = client.config
    cases = MALFORMED_JPEG if compressed else MALFORMED_RAW
    server.inject(config.topics.gripper_state, joints_msg())
    # One message at a time: a newer message of a kind supersedes one the client has not handled yet.
    for i, (_, damage) in enumerate(cases):
        stamp = s_to_stamp(time.time())
        server.inject(config.topics.ee_pose, pose_msg(stamp))
        good = image_msg(np.full((SIZE, SIZE, 3), 100, np.uint8), stamp, compressed=compressed)
        server.inject(config.topics.image, damage(good))
        wait_for(lambda n=i + 1: loop.stats.images == n, what=f"image {i} to be handled")
    # Other topics: logged and dropped. A status error from rosbridge is logged; a broken protocol message
    # (publish without msg) is roslibpy's to survive.
    dropped = [
        ("ee_pose", {"header": header((1, 0)), "pose": {"position": {"x": 0.5}}}, "missing field 'pose.position.y'"),
        ("gripper_state", {"name": JOINTS, "position": ["a", "b"]}, "not a number"),
        ("gripper_state", {"name": ["other"], "position": [0.01]}, "not in the message's names"),
        ("estop", {"data": "yes"}, "not a bool"),
        ("estop", {}, "missing field 'data'"),
    ]
    for topic, msg, reason in dropped:
        server.inject(getattr(config.topics, topic), msg)
        wait_for(lambda t=topic, r=reason: any(f"{t} message dropped: " in line and r in line for line in lines),
                 what=f"the {topic} message to be dropped ({reason})")
    server.send_raw({"op": "status", "level": "error", "msg": "Unable to load the manifest for package foo"})
    server.send_raw({"op": "publish", "topic": config.topics.image})
    wait_for(lambda: any("rosbridge error: Unable to load the manifest" in line for line in lines),
             what="the status message to be logged")
    time.sleep(2 * loop.period)

    assert loop.stats.rejected == len(cases)
    for reason, _ in cases:
        assert any(reason in w for w in warnings), (reason, warnings)
    assert client.counts["dropped"] == len(dropped)
    assert not loop.gate.estopped
    twists = server.published(config.topics.twist)
    assert twists, "the control timer publishes zeros while there is no valid image"
    assert all(norm(m["twist"]["linear"]) == 0 and m["twist"]["angular"]["z"] == 0 for _, _, m in twists)
    assert not server.published(config.topics.trace) and not server.published(config.topics.gripper_command)

    # Still alive: a good frame moves the arm.
    client_before = len(twists)
    Camera(server, config).stream(4)
    wait_for(lambda: server.published(config.topics.trace), what="a command from a valid image")
    assert len(server.published(config.topics.twist)) > client_before
    assert any(norm(m["twist"]["linear"]) > 0 for _, _, m in server.published(config.topics.twist))


def test_reconnects_after_losing_the_connection(server, make_client):
    client, loop, _, lines = make_client()
    config = client.config
    server.inject(config.topics.gripper_state, joints_msg())
    Camera(server, config).stream(4)
    wait_for(lambda: server.published(config.topics.trace), what="commands before the loss")
    subscribes = len(server.ops("subscribe"))
    server.drop_connections()
    wait_for(lambda: not client.connected, what="the client to notice")
    wait_for(lambda: client.counts["unsent"] > 0, what="a command not sent while disconnected")
    # roslibpy reconnects and subscribes again (its topics re-send their subscribe 1 s after the loss)
    wait_for(lambda: len(server.ops("subscribe")) >= subscribes + 5 and server.subscribers.get(config.topics.image),
             timeout=5.0, what="the subscriptions to come back")
    assert any("lost" in line for line in lines) and any("reconnected" in line for line in lines), lines
    server.clear()
    server.inject(config.topics.gripper_state, joints_msg())
    Camera(server, config, seed=1).stream(4)
    wait_for(lambda: server.published(config.topics.trace), what="commands after reconnecting")


def test_spin_returns_after_duration_or_stop(make_client):
    client, _, _, _ = make_client()
    start = time.monotonic()
    client.spin(0.15)
    assert 0.15 <= time.monotonic() - start < 0.5
    assert client.connected
    threading.Timer(0.1, client.stop).start()
    start = time.monotonic()
    client.spin()
    assert time.monotonic() - start < 1.0
    assert not client.connected
    with pytest.raises(RuntimeError, match="stopped"):
        client.start()


def test_connection_refused_names_host_and_port(server, policy, make_client):
    from sim2real.ros.bridge import RosbridgeClient

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free, and nothing listens once closed
    config = DeployConfig()
    lines = []
    client = RosbridgeClient(PolicyLoop(policy, config, warn=lines.append), config, "127.0.0.1", port,
                             log=lines.append)
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}") as info:
        client.start(timeout=0.5)
    assert time.monotonic() - start < 3.0
    assert "refused" in str(info.value).lower() and "rosbridge" in str(info.value)
    client.stop()  # harmless after a failed start
    # The shared reactor still serves new clients after the failure.
    other, _, _, _ = make_client()
    assert other.connected


def test_a_pose_in_another_frame_never_moves_the_arm(server, make_client):
    client, loop, warnings, _ = make_client(frame_id="other_base")  # the test poses say test_base
    config = client.config
    Camera(server, config).stream(8)
    time.sleep(2 * loop.period)
    twists = server.published(config.topics.twist)
    assert twists and all(norm(m["twist"]["linear"]) == 0 for _, _, m in twists)
    assert any("frame 'test_base'" in w and "dropped" in w for w in warnings)
    with client.lock:
        assert loop.stats.inferences == 0
