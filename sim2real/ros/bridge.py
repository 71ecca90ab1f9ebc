"""Run an exported policy on a robot over rosbridge (WebSocket + JSON): no ROS install on this machine.

``RosbridgeClient`` connects to a rosbridge v2 server with ``roslibpy``, turns the messages it
receives into calls on ``sim2real.ros.core.PolicyLoop`` and publishes the commands the loop returns.
The loop decides everything (when the policy runs, clamps, when to send zero); this module is only the
transport, so it behaves like the ROS 2 node.

Topics (names from ``DeployConfig.topics``; types as rosbridge on ROS 1 and ROS 2 both accept them):

====================  ==================================  =========================================
topic                 type                                use
====================  ==================================  =========================================
``image``             ``sensor_msgs/Image`` (rgb8, bgr8,  camera frame; ``CompressedImage`` (JPEG,
                      rgba8, bgra8, mono8) or             PNG) when ``config.compressed``
                      ``sensor_msgs/CompressedImage``
``ee_pose``           ``geometry_msgs/PoseStamped``       end effector in the base frame: m, yaw rad
``gripper_state``     ``sensor_msgs/JointState``          opening, m = sum of the positions of
                                                          ``config.gripper_joints`` (empty: all)
``estop``             ``std_msgs/Bool``                   true engages the (latched) emergency stop
``reset``             ``std_msgs/Empty``                  new episode; releases the emergency stop
``twist`` (out)       ``geometry_msgs/TwistStamped``      m/s and rad/s in ``config.frame_id``
``gripper_command``   ``std_msgs/Float64``                target opening, m (only when it changes
(out)                                                     from "leave it")
``trace`` (out)       ``std_msgs/Header``                 stamp of the image behind a command
====================  ==================================  =========================================

Header stamps are read in ROS 2 (``sec``, ``nanosec``) and ROS 1 (``secs``, ``nsecs``) form; outgoing
stamps use the form last seen on input (ROS 2 until something arrives). The twist's stamp is this
machine's wall clock (``time.time()``): keep the robot's and this machine's clocks synchronized (NTP,
chrony). ``uint8[]`` fields arrive base64-encoded, as rosbridge sends them.

Threads: roslibpy runs a Twisted reactor in a background thread and calls the subscription callbacks
there. E-stop and reset messages are handled right away in that thread; images (decoded off the
reactor thread, older undecoded frames superseded by newer ones), poses and gripper states go to one
control thread, which also runs the control timer (``loop.rate_hz``) and the watchdog (4 x
``loop.rate_hz``) on a drift-free schedule. Every ``PolicyLoop`` call holds ``RosbridgeClient.lock``
(hold it too to read ``loop.stats`` while running). A malformed message never raises: images go to the
loop as the text of what is wrong (it rejects them and warns), other messages are logged and dropped.
An exception in the policy sends a zero twist.

On the robot, start rosbridge (default port 9090)::

    ros2 launch rosbridge_server rosbridge_websocket_launch.xml      # ROS 2
    roslaunch rosbridge_server rosbridge_websocket.launch            # ROS 1

and prefer a ``.../compressed`` image topic: a raw 640x480 rgb8 frame is ~1.2 MB of base64 JSON.

    loop = PolicyLoop(OnnxPolicy(folder), config)
    client = RosbridgeClient(loop, config, host="robot.local")
    client.start()
    try:
        client.spin()            # until Ctrl-C
    finally:
        client.stop()            # one zero twist, unsubscribe, close
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

from sim2real.ros.core import DeployConfig, Output, PolicyLoop
from sim2real.ros.messages import BadMessage, decode_compressed, decode_image, s_to_stamp, stamp_to_s, yaw_of

TYPES = {
    "image": "sensor_msgs/Image",
    "image_compressed": "sensor_msgs/CompressedImage",
    "ee_pose": "geometry_msgs/PoseStamped",
    "gripper_state": "sensor_msgs/JointState",
    "estop": "std_msgs/Bool",
    "reset": "std_msgs/Empty",
    "twist": "geometry_msgs/TwistStamped",
    "gripper_command": "std_msgs/Float64",
    "trace": "std_msgs/Header",
}

WARN_EVERY_S = 5.0           # repeated problems of one kind: one log line per this many seconds
RECONNECT_DELAY_S = 0.25     # after a lost connection, retry after ~0.7 s, then backing off up to ...
RECONNECT_MAX_DELAY_S = 5.0  # ... this (roslibpy's defaults: ~2.7 s, up to an hour)
CLOSE_WAIT_S = 2.0           # stop(): wait this long for the close handshake (the zero twist goes first)


def _field(msg, path: str):
    """``msg["a"]["b"]`` for path "a.b", or BadMessage naming the missing field."""
    value, parts = msg, path.split(".")
    for i, part in enumerate(parts):
        if not isinstance(value, dict):
            where = ".".join(parts[:i]) or "the message"
            raise BadMessage(f"{where} is a {type(value).__name__}, not an object (reading {path!r})")
        if part not in value:
            raise BadMessage(f"missing field {path!r}")
        value = value[part]
    return value


def _integer(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise BadMessage(f"{name} is not an integer: {value!r}")
    return int(value)


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadMessage(f"{name} is not a number: {value!r}")
    return float(value)


def _problem(e: Exception) -> str:
    return str(e) if isinstance(e, BadMessage) else f"{type(e).__name__}: {e}"


class RosbridgeClient:
    """Args: loop: the control loop (its policy loaded); config: the deployment settings (topics,
    frame_id, ...); host, port: the rosbridge server; log: called with a text for each log line."""

    def __init__(self, loop: PolicyLoop, config: DeployConfig, host: str = "localhost", port: int = 9090,
                 log=print) -> None:
        self.loop, self.config, self.host, self.port, self.log = loop, config, host, int(port), log
        self.lock = threading.Lock()          # every PolicyLoop call
        self.counts = {"twist": 0, "gripper_command": 0, "trace": 0, "unsent": 0, "superseded_images": 0,
                       "dropped": 0}
        self._ros = None
        self._subscribed: list = []
        self._publishers: dict = {}
        self._ros1_stamps = False             # answer in the stamp style seen on input
        self._stamps: OrderedDict[float, tuple[int, int]] = OrderedDict()  # float stamp -> exact (sec, ns)
        self._pending: OrderedDict[str, object] = OrderedDict()            # newest message per kind
        self._cond = threading.Condition()
        self._stopping = False
        self._stopped = threading.Event()
        self._closing = False
        self._worker: threading.Thread | None = None
        self._warned: dict[str, float] = {}

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return bool(self._ros is not None and self._ros.is_connected)

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 10.0) -> None:
        """Connect (retrying until ``timeout`` s), subscribe, advertise and start the timers.
        Raises ConnectionError naming host:port when rosbridge cannot be reached."""
        import roslibpy

        if self._ros is not None or self._stopping:
            raise RuntimeError("RosbridgeClient.start: already started or stopped (use a new client after stop)")
        ros = roslibpy.Ros(self.host, self.port)
        factory = ros.factory
        if hasattr(factory, "maxDelay"):  # Twisted: instance attributes, so this client only
            factory.initialDelay = factory.delay = RECONNECT_DELAY_S
            factory.maxDelay = RECONNECT_MAX_DELAY_S
        ros.on("ready", self._on_ready)
        ros.on("close", self._on_close)
        try:
            ros.run(timeout=timeout)
        except roslibpy.core.RosTimeoutError:
            self._abandon(factory)
            why = _diagnose(self.host, self.port)
            raise ConnectionError(f"cannot connect to rosbridge at {self.host}:{self.port} ({self.url}) within "
                                  f"{timeout:g} s: {why}. Is rosbridge running there? (ROS 2: ros2 launch "
                                  f"rosbridge_server rosbridge_websocket_launch.xml; ROS 1: roslaunch "
                                  f"rosbridge_server rosbridge_websocket.launch)") from None
        self._ros = ros
        self._install_status_handler(getattr(factory, "_proto", None))  # if "ready" fired before the hook
        try:
            self._open_topics(roslibpy.Topic)
        except BaseException:
            self.stop()
            raise
        self._worker = threading.Thread(target=self._run, name="rosbridge-control", daemon=True)
        self._worker.start()
        topics = self.config.topics
        self.log(f"rosbridge: connected to {self.url}; image {topics.image} ({self._image_type}), commands on "
                 f"{topics.twist} at {self.loop.rate_hz:g} Hz in frame {self.config.frame_id!r}")

    @property
    def _image_type(self) -> str:
        return TYPES["image_compressed" if self.config.compressed else "image"]

    def _open_topics(self, make) -> None:
        ros, topics = self._ros, self.config.topics
        for key, name in (("twist", topics.twist), ("gripper_command", topics.gripper_command),
                          ("trace", topics.trace)):
            self._publishers[key] = make(ros, name, TYPES[key], queue_size=1)
            self._publishers[key].advertise()
        for name, msg_type, callback, extra in (
                (topics.image, self._image_type, lambda m: self._enqueue("image", m), {"queue_length": 1}),
                (topics.ee_pose, TYPES["ee_pose"], lambda m: self._enqueue("state", m), {}),
                (topics.gripper_state, TYPES["gripper_state"], lambda m: self._enqueue("gripper", m), {}),
                (topics.estop, TYPES["estop"], self._on_estop, {}),
                (topics.reset, TYPES["reset"], self._on_reset, {})):
            topic = make(ros, name, msg_type, **extra)
            topic.subscribe(callback)
            self._subscribed.append(topic)

    def spin(self, duration: float | None = None) -> None:
        """Block until ``duration`` s have passed (None: forever), Ctrl-C, or ``stop()``. Does not stop
        the client: call ``stop()`` afterwards. Raises RuntimeError if the control thread died."""
        deadline = math.inf if duration is None else time.monotonic() + duration
        try:
            while not self._stopped.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._stopped.wait(min(0.2, remaining))
                if self._worker is not None and not self._worker.is_alive() and not self._stopping:
                    raise RuntimeError("rosbridge: the control thread stopped unexpectedly")
        except KeyboardInterrupt:
            self.log("rosbridge: interrupted")

    def stop(self) -> None:
        """Stop the timers, publish one zero twist, unsubscribe, unadvertise and close. Idempotent."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=5.0)
        ros, self._ros = self._ros, None
        if ros is None:
            self._stopped.set()
            return
        self._closing = True
        zero_sent = False
        try:
            if ros.is_connected:
                with self.lock:
                    zero_sent = self._send_zero(ros)
            for topic in self._subscribed:
                topic.unsubscribe()
            for topic in self._publishers.values():
                topic.unadvertise()
            ros.close()
            deadline = time.monotonic() + CLOSE_WAIT_S
            while ros.is_connected and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            self._subscribed.clear()
            self._publishers.clear()
            observer = getattr(getattr(ros.factory, "_manager", None), "_log_observer", None)
            if observer is not None:  # one per Ros: stop it, or twisted log lines repeat per client
                try:
                    observer.stop()
                except Exception:  # noqa: BLE001 - already stopped
                    pass
            self._stopped.set()
            self.log(f"rosbridge: stopped ({'zero twist sent' if zero_sent else 'not connected: no zero twist sent'}"
                     f", connection closed)")

    # ------------------------------------------------------------------ roslibpy plumbing
    @staticmethod
    def _abandon(factory) -> None:
        """Stop a factory that never connected from retrying forever in the background."""
        if hasattr(factory, "stopTrying"):  # Twisted ReconnectingClientFactory
            from twisted.internet import reactor

            reactor.callFromThread(factory.stopTrying)
        if hasattr(factory, "_stop"):        # roslibpy's asyncio transport
            factory._stop = True

    def _on_ready(self, proto) -> None:
        self._install_status_handler(proto)
        if self._ros is not None and not self._closing:
            self.log(f"rosbridge: reconnected to {self.url}")

    def _install_status_handler(self, proto) -> None:
        # roslibpy has no handler for rosbridge's "status" messages (errors such as an unknown type): it
        # logs an exception for each. Log them as what they are.
        handlers = getattr(proto, "_message_handlers", None)
        if isinstance(handlers, dict):
            handlers["status"] = self._on_status

    def _on_close(self, _proto) -> None:
        if not self._closing:
            self.log(f"rosbridge: connection to {self.url} lost; reconnecting (commands are not sent meanwhile)")

    def _on_status(self, message) -> None:
        level, text = message.get("level", "?"), message.get("msg", "")
        self._warn(f"status:{level}:{str(text)[:40]}", f"rosbridge {level}: {text}")

    def _warn(self, key: str, text: str) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, -math.inf) >= WARN_EVERY_S:
            self._warned[key] = now
            self.log(text)

    # ------------------------------------------------------------------ inputs (reactor thread)
    def _enqueue(self, kind: str, msg) -> None:
        """Hand a message to the control thread; a newer message of the same kind replaces one that
        waits (an image the policy has not seen yet is superseded by the newer frame)."""
        with self._cond:
            if self._pending.pop(kind, None) is not None and kind == "image":
                self.counts["superseded_images"] += 1
            self._pending[kind] = msg
            self._cond.notify()

    def _on_estop(self, msg) -> None:
        try:
            engaged = _field(msg, "data")
            if not isinstance(engaged, bool | int) or engaged not in (0, 1):
                raise BadMessage(f"data is not a bool: {engaged!r}")
        except Exception as e:  # noqa: BLE001 - a callback must never raise
            self._drop("estop", e)
            return
        self._call("e-stop", self.loop.on_estop, bool(engaged), time.monotonic())

    def _on_reset(self, _msg) -> None:
        with self.lock:
            self.loop.on_reset(time.monotonic())
        self.log("rosbridge: reset (new episode, e-stop released)")

    # ------------------------------------------------------------------ the control thread
    def _run(self) -> None:
        period = 1.0 / self.loop.rate_hz
        watchdog_period = period / 4.0
        start = time.monotonic()
        next_timer, next_watchdog = start + period, start + watchdog_period
        while True:
            with self._cond:
                while not self._stopping and not self._pending:
                    wait = min(next_timer, next_watchdog) - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stopping:
                    return
                pending = list(self._pending.items())
                self._pending.clear()
            for kind, msg in pending:
                try:
                    self._handle(kind, msg)
                except Exception as e:  # noqa: BLE001 - keep the timers alive whatever happens
                    self._warn(f"handler:{kind}", f"rosbridge: {kind} handler failed: {_problem(e)}")
            now = time.monotonic()
            if now >= next_watchdog:
                self._call("watchdog", self.loop.on_watchdog, now)
                next_watchdog = _next_beat(next_watchdog, watchdog_period, now)
            if now >= next_timer:
                self._call("control timer", self.loop.on_timer, now)
                next_timer = _next_beat(next_timer, period, now)

    def _handle(self, kind: str, msg) -> None:
        if kind == "image":
            stamp = None
            try:
                stamp = self._stamp(msg, remember=True)
                image = self._decode(msg)
            except Exception as e:  # noqa: BLE001 - the loop rejects and warns
                image = _problem(e)
            self._call("image", self.loop.on_image, image, stamp, time.monotonic())
        elif kind == "state":
            try:
                position = [_number(_field(msg, f"pose.position.{a}"), f"position.{a}") for a in "xyz"]
                quaternion = [_number(_field(msg, f"pose.orientation.{a}"), f"orientation.{a}") for a in "xyzw"]
                stamp = self._stamp(msg)
            except Exception as e:  # noqa: BLE001
                self._drop("ee_pose", e)
                return
            frame = msg.get("header", {}).get("frame_id") if isinstance(msg, dict) else None
            self._call("state", self.loop.on_state, position, yaw_of(*quaternion), stamp, time.monotonic(),
                       frame if isinstance(frame, str) else None)
        elif kind == "gripper":
            try:
                opening = self._opening(msg)
            except Exception as e:  # noqa: BLE001
                self._drop("gripper_state", e)
                return
            try:
                stamp = self._stamp(msg)
            except Exception:  # noqa: BLE001 - an unstamped gripper state is still an opening
                stamp = None
            # The gripper state may be the last of a frame's messages to arrive: it can run the policy.
            self._call("gripper", self.loop.on_gripper, opening, time.monotonic(), stamp)

    def _decode(self, msg):
        if self.config.compressed:
            fmt = msg.get("format", "") if isinstance(msg, dict) else ""
            return decode_compressed(str(fmt), _field(msg, "data"))
        return decode_image(str(_field(msg, "encoding")), _integer(_field(msg, "height"), "height"),
                            _integer(_field(msg, "width"), "width"), _integer(_field(msg, "step"), "step"),
                            _field(msg, "data"))

    def _opening(self, msg) -> float:
        positions = _field(msg, "position")
        if not isinstance(positions, list) or not positions:
            raise BadMessage(f"position is not a non-empty list: {positions!r}")
        values = [_number(p, "position") for p in positions]
        joints = self.config.gripper_joints
        if not joints:
            return float(sum(values))
        names = _field(msg, "name")
        if not isinstance(names, list) or len(names) != len(values):
            raise BadMessage(f"name ({names!r}) does not match position ({len(values)} values)")
        missing = [j for j in joints if j not in names]
        if missing:
            raise BadMessage(f"joint(s) {missing} not in the message's names {names}")
        return float(sum(values[names.index(j)] for j in joints))

    def _stamp(self, msg, remember: bool = False) -> float:
        """header.stamp -> s; notes the ROS 1 / ROS 2 style and (``remember``: for the trace) the exact
        (sec, ns), which float seconds cannot hold to the nanosecond."""
        stamp = _field(msg, "header.stamp")
        if isinstance(stamp, dict) and "sec" in stamp and "nanosec" in stamp:
            sec, ns, ros1 = stamp["sec"], stamp["nanosec"], False
        elif isinstance(stamp, dict) and "secs" in stamp and "nsecs" in stamp:
            sec, ns, ros1 = stamp["secs"], stamp["nsecs"], True
        else:
            raise BadMessage(f"header.stamp is neither {{sec, nanosec}} nor {{secs, nsecs}}: {stamp!r}")
        sec, ns = _integer(sec, "stamp sec"), _integer(ns, "stamp nanosec")
        if not 0 <= ns < 1_000_000_000:
            raise BadMessage(f"header.stamp nanoseconds out of range: {ns}")
        self._ros1_stamps = ros1
        seconds = stamp_to_s(sec, ns)
        if remember:
            self._stamps[seconds] = (sec, ns)
            self._stamps.move_to_end(seconds)
            while len(self._stamps) > 16:
                self._stamps.popitem(last=False)
        return seconds

    def _drop(self, topic: str, e: Exception) -> None:
        self.counts["dropped"] += 1
        problem = _problem(e)
        self._warn(f"drop:{topic}:{problem[:40]}", f"rosbridge: {topic} message dropped: {problem}")

    # ------------------------------------------------------------------ outputs
    def _call(self, what: str, fn, *args) -> None:
        """``fn(*args)`` on the loop under the lock; publish what it returns; zero if it raises."""
        with self.lock:
            try:
                out = fn(*args)
            except Exception as e:  # noqa: BLE001 - e.g. the policy failing: stop the arm, keep running
                self._warn(f"error:{what}", f"rosbridge: {what} failed ({_problem(e)}); sending zero")
                self._send_zero(self._ros)
                return
            if out is not None:
                self._publish(out)

    def _publish(self, out: Output) -> None:
        ros = self._ros
        now = time.time()
        command = out.command
        twist = {"header": self._header(s_to_stamp(now), self.config.frame_id),
                 "twist": {"linear": _vector(command.linear), "angular": _vector(command.angular)}}
        if not self._send(ros, "twist", twist):
            return
        if out.gripper_opening is not None:
            self._send(ros, "gripper_command", {"data": float(out.gripper_opening)})
        if out.source_stamp is not None:
            exact = self._stamps.get(out.source_stamp) or s_to_stamp(out.source_stamp)
            self._send(ros, "trace", self._header(exact, ""))
        self.loop.record_stamp_latency(out, now)

    def _send_zero(self, ros) -> bool:
        zero = {"x": 0.0, "y": 0.0, "z": 0.0}
        return self._send(ros, "twist", {"header": self._header(s_to_stamp(time.time()), self.config.frame_id),
                                  "twist": {"linear": dict(zero), "angular": dict(zero)}})

    def _header(self, stamp: tuple[int, int], frame_id: str) -> dict:
        sec, ns = stamp
        return {"stamp": {"secs": sec, "nsecs": ns} if self._ros1_stamps else {"sec": sec, "nanosec": ns},
                "frame_id": frame_id}

    def _send(self, ros, key: str, msg: dict) -> bool:
        """Publish now, or not at all: while disconnected roslibpy would queue messages and flush stale
        commands on reconnection."""
        topic = self._publishers.get(key)
        if ros is None or topic is None or not ros.is_connected:
            self.counts["unsent"] += 1
            return False
        import roslibpy

        topic.publish(roslibpy.Message(msg))
        self.counts[key] += 1
        return True


def _diagnose(host: str, port: int) -> str:
    """Why a WebSocket connection failed, from a plain TCP connection attempt (roslibpy only times out)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=2.0):
            return "the port accepts TCP connections but no rosbridge WebSocket handshake completed"
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}"


def _vector(values) -> dict:
    x, y, z = (float(v) for v in values)
    return {"x": x, "y": y, "z": z}


def _next_beat(beat: float, step: float, now: float) -> float:
    """The next beat of a fixed schedule after ``now`` (missed beats are skipped, not bunched)."""
    beat += step
    if beat <= now:
        beat += math.ceil((now - beat) / step + 1e-9) * step
    return beat
