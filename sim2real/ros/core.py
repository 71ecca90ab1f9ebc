"""The transport-independent control loop between an exported policy and an arm.

The ROS 2 node (``sim2real.ros.node``) and the rosbridge client (``sim2real.ros.bridge``) only turn
messages into calls on ``PolicyLoop`` and publish what it returns, so the behaviour - when the policy
runs, what is sent, when it is zero - is the same on both, and tested here without any ROS.

Timing (``DeployConfig.trigger``):

- ``"image"`` (default): the policy runs as soon as a new camera frame *and* an end-effector state at
  least as new (within ``sync_slop`` periods) have arrived - an approximate time synchronizer, so the
  image and the proprio describe the same moment, as in training. It runs at most once per 0.75
  loop period (``rate_hz``); a frame that comes sooner waits for the fixed-rate control timer. The control timer
  (``rate_hz``) publishes whenever nothing went out for 0.75 period, so the command stream never
  drops below ``rate_hz`` (MoveIt Servo halts when commands stop).
- ``"timer"``: the policy runs only on the control timer, on the newest frame.

Commands are velocities (the action's per-step delta x ``control_hz``), so publishing the same
command twice does not move the arm twice. A watchdog timer at four times the control rate zeroes the
command as soon as the image is stale (``safety.stale_after_s``, default 1.5 loop periods), so
the zero goes out within two loop periods of the last image. All times are seconds on the
caller's monotonic clock; image/state stamps are seconds on the sender's clock (ROS time).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from sim2real.ros.safety import Command, SafetyConfig, SafetyGate, check_image

TRIGGERS = ("image", "timer")


@dataclass
class Topics:
    """Topic names. The image topic carries ``sensor_msgs/Image``, or ``CompressedImage`` when its name
    ends in ``/compressed`` (image_transport's convention) or ``image_type`` says so."""

    image: str = "/camera/color/image_raw"
    ee_pose: str = "/ee_pose"                         # geometry_msgs/PoseStamped, base frame
    gripper_state: str = "/gripper/joint_states"       # sensor_msgs/JointState; opening = sum of positions
    twist: str = "/servo_node/delta_twist_cmds"       # geometry_msgs/TwistStamped (MoveIt Servo)
    gripper_command: str = "/gripper/command"          # std_msgs/Float64: target opening, m
    estop: str = "/emergency_stop"                     # std_msgs/Bool: true engages (latched)
    reset: str = "/policy/reset"                       # std_msgs/Empty: new episode, releases the e-stop
    trace: str = "/policy/trace"                       # std_msgs/Header: stamp of the image behind a command


@dataclass
class DeployConfig:
    """Everything a deployment needs besides the policy; from YAML (``load``) and flags.

    ``rate_hz``: control timer rate (None: the policy's ``control_hz``). ``frame_id``: the twist's
    frame (MoveIt Servo's command frame), the robot base frame the policy acts in. ``image_type``:
    "raw", "compressed" or "auto" (from the topic name). ``image_sizes``: accepted (width, height);
    empty: the policy's input size and its calibrated camera's size. ``gripper_joints``: the joints of
    ``gripper_state`` whose positions add up to the opening (empty: all). ``state_timeout_s``: an
    end-effector or gripper state older than this stops the arm (the workspace clamp needs a fresh
    position; None: 1.5 loop periods). ``estop_required``: treat "nobody publishes on the e-stop
    topic" as a stop (for rigs whose e-stop node must be up before the arm may move).
    """

    topics: Topics = field(default_factory=Topics)
    rate_hz: float | None = None
    trigger: str = "image"
    frame_id: str = "panda_link0"
    image_type: str = "auto"
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    gripper_joints: list[str] = field(default_factory=list)
    state_timeout_s: float | None = None
    sync_slop: float = 0.25
    estop_required: bool = False
    safety: SafetyConfig = field(default_factory=SafetyConfig)

    def __post_init__(self) -> None:
        if isinstance(self.topics, dict):
            self.topics = _build(Topics, self.topics, "topics")
        if isinstance(self.safety, dict):
            self.safety = _build(SafetyConfig, self.safety, "safety")
        if self.trigger not in TRIGGERS:
            raise ValueError(f"trigger: {self.trigger!r} is not one of {TRIGGERS}")
        if self.image_type not in ("auto", "raw", "compressed"):
            raise ValueError(f"image_type: {self.image_type!r} is not one of auto, raw, compressed")
        if self.rate_hz is not None and not (_number(self.rate_hz) and 0 < self.rate_hz <= 1000):
            raise ValueError(f"rate_hz: must be in (0, 1000] Hz, got {self.rate_hz!r}")
        if self.state_timeout_s is not None and not (_number(self.state_timeout_s) and 0 < self.state_timeout_s <= 2):
            raise ValueError(f"state_timeout_s: must be in (0, 2] s, got {self.state_timeout_s!r}")
        if not (_number(self.sync_slop) and 0 < self.sync_slop <= 1):
            raise ValueError(f"sync_slop: must be in (0, 1] periods, got {self.sync_slop!r}")
        if not isinstance(self.estop_required, bool):
            raise ValueError(f"estop_required: must be true or false, got {self.estop_required!r}")
        if not (isinstance(self.frame_id, str) and self.frame_id.strip()):
            # An empty frame makes MoveIt Servo fall back to its own default command frame.
            raise ValueError(f"frame_id: must name the robot base frame, got {self.frame_id!r}")
        if not (isinstance(self.gripper_joints, list) and all(isinstance(j, str) for j in self.gripper_joints)):
            raise ValueError(f"gripper_joints: expected a list of joint names, got {self.gripper_joints!r}")
        try:
            self.image_sizes = [(int(w), int(h)) for w, h in self.image_sizes]
        except (TypeError, ValueError):
            raise ValueError(f"image_sizes: expected a list of [width, height], got {self.image_sizes!r}") from None
        if any(w < 8 or h < 8 for w, h in self.image_sizes):
            raise ValueError(f"image_sizes: every width and height must be at least 8 px, got {self.image_sizes}")
        seen: dict[str, str] = {}
        for name, topic in asdict(self.topics).items():
            if not (isinstance(topic, str) and topic.strip()):
                raise ValueError(f"topics.{name}: must be a topic name, got {topic!r}")
            if topic in seen:
                raise ValueError(f"topics.{name}: {topic!r} is also topics.{seen[topic]}; each needs its own")
            seen[topic] = name

    @property
    def compressed(self) -> bool:
        if self.image_type == "auto":
            return self.topics.image.rstrip("/").endswith("/compressed")
        return self.image_type == "compressed"

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides) -> DeployConfig:
        """A YAML file (keys as the fields; ``topics`` and ``safety`` nested), then ``overrides``
        (None values ignored; ``topics``/``safety`` dicts merged key by key)."""
        import yaml

        data: dict = {}
        if path is not None:
            try:
                data = yaml.safe_load(Path(path).read_text()) or {}
            except (OSError, yaml.YAMLError) as e:
                raise ValueError(f"{path}: cannot read the deployment config ({e})") from None
            if not isinstance(data, dict):
                raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
        for key, value in overrides.items():
            if value is None:
                continue
            if key in ("topics", "safety"):
                data[key] = {**(data.get(key) or {}), **{k: v for k, v in value.items() if v is not None}}
            else:
                data[key] = value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path or 'config'}: unknown setting(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path or 'config'}: {e}") from None

    def to_dict(self) -> dict:
        return asdict(self)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _stamp(stamp: float | None) -> float | None:
    """A header stamp in s; zero (an unstamped message) counts as none."""
    return float(stamp) if stamp is not None and stamp > 0 else None


def _build(cls, values: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**values)


@dataclass
class Output:
    """One command to publish: the gated ``command``, the gripper target opening (m, None: leave it),
    and the stamp of the image the policy saw (None for a stop)."""

    command: Command
    gripper_opening: float | None
    source_stamp: float | None
    fresh: bool = False  # the first command from this image (counts towards latency)


@dataclass
class LoopStats:
    """Counters and latencies (s) since start: ``latency_node`` = image arrival -> command, on this
    machine; ``latency_stamp`` = image header stamp -> command (includes transport; meaningful when the
    camera's clock is this machine's)."""

    images: int = 0
    rejected: int = 0
    states: int = 0
    inferences: int = 0
    commands: int = 0
    zero_commands: int = 0
    latency_node: deque = field(default_factory=lambda: deque(maxlen=100_000))    # bounded: runs last hours
    latency_stamp: deque = field(default_factory=lambda: deque(maxlen=100_000))
    reject_reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        def pct(x):
            x = list(x)
            return {p: float(np.percentile(x, q)) * 1e3 for p, q in (("p50_ms", 50), ("p99_ms", 99))} if x else {}

        return {"images": self.images, "rejected": self.rejected, "states": self.states,
                "inferences": self.inferences, "commands": self.commands, "zero_commands": self.zero_commands,
                "latency_node": pct(self.latency_node), "latency_stamp": pct(self.latency_stamp),
                "reject_reasons": dict(self.reject_reasons)}


class PolicyLoop:
    """Args: policy: an ``OnnxPolicy`` (anything with ``act(image, proprio)``, ``spec``, ``size``);
    config: the deployment settings; warn: called with a text for each problem worth a log line
    (repeated reasons are rate-limited to one line per 5 s)."""

    def __init__(self, policy, config: DeployConfig, warn=print) -> None:
        self.policy, self.config, self._warn = policy, config, warn
        spec = policy.spec
        self.control_hz = float(spec["control_hz"])
        self.rate_hz = float(config.rate_hz or self.control_hz)
        if self.rate_hz < self.control_hz:
            # Commands are velocities held until the next one: a slower loop would move the arm further
            # per policy step than training ever did.
            raise ValueError(f"rate_hz: {self.rate_hz:g} Hz is below the policy's control rate "
                             f"{self.control_hz:g} Hz; each command would be held longer than in training")
        self.period = 1.0 / self.rate_hz
        self.state_timeout = config.state_timeout_s or 1.5 * self.period
        self.estop_connected = True  # transports that can tell set this (DeployConfig.estop_required)
        safety = config.safety
        if safety.stale_after_s is None:  # 1.5 periods of *this* loop, which may run faster than control_hz
            safety = SafetyConfig(**{**asdict(safety), "stale_after_s": 1.5 * self.period})
        self.safety = safety
        self.gate = SafetyGate.from_spec(safety, spec)
        self.max_opening = float(spec.get("gripper", {}).get("max_opening_m", 0.08))
        camera = spec.get("camera", {}).get("intrinsics", {})
        self.image_sizes = list(config.image_sizes) or sorted(
            {(policy.size, policy.size)} | ({(int(camera["width"]), int(camera["height"]))} if camera else set()))
        self.stats = LoopStats()
        self._image: np.ndarray | None = None
        self._image_stamp: float | None = None
        self._image_arrival = 0.0
        self._image_seq = 0
        self._acted_seq = 0
        self._state: np.ndarray | None = None       # x, y, z, yaw (m, rad)
        self._opening: float | None = None          # m
        self._opening_stamp: float | None = None
        self._opening_arrival = -math.inf
        self._estop_pressed = False
        self._state_stamp: float | None = None
        self._state_arrival = -math.inf
        self._last_publish = -math.inf
        self._last_fresh = -math.inf
        self._last_zero = False
        self._warned: dict[str, float] = {}

    # ------------------------------------------------------------------ inputs
    def on_image(self, image, stamp: float | None, now: float, arrival: float | None = None) -> Output | None:
        """A decoded frame (RGB uint8 (H, W, 3)) or the text of why it could not be decoded. ``arrival``:
        when the middleware received it (same clock as ``now``; default ``now``), so time spent queued
        counts against the watchdog and the latency."""
        self.stats.images += 1
        arrival = now if arrival is None else min(arrival, now)
        stamp = _stamp(stamp)
        problem = image if isinstance(image, str) else check_image(image, sizes=self.image_sizes)
        if problem is None and stamp is not None and self._image_stamp is not None and stamp <= self._image_stamp:
            # A driver re-sending its last frame must not keep the watchdog happy.
            problem = f"stamp did not advance ({stamp:.6f} s after {self._image_stamp:.6f} s)"
        if problem is not None:
            self.stats.rejected += 1
            key = problem.split(",")[0].split(" (")[0][:40]  # the kind of problem, not its numbers
            self.stats.reject_reasons[key] = self.stats.reject_reasons.get(key, 0) + 1
            self.warn(f"image rejected: {problem}", key="image:" + key, now=now)
            return None
        self._image, self._image_stamp, self._image_arrival = image, stamp, arrival
        self._image_seq += 1
        self.gate.image_received(arrival)
        return self._maybe_tick(now)

    def on_state(self, position, yaw: float | None, stamp: float | None, now: float,
                 frame: str | None = None) -> Output | None:
        """End-effector position (3,) m and yaw rad in the base frame (the opening comes through
        ``on_gripper``); ``frame``: the pose's frame_id, which must be
        ``config.frame_id`` when given (a pose in another frame is dropped: the arm then stops once the
        last good one is stale)."""
        if frame and frame != self.config.frame_id:
            self.warn(f"ee_pose in frame {frame!r}, expected {self.config.frame_id!r}: dropped", key="frame", now=now)
            return None
        pos = np.asarray(position, dtype=float).reshape(-1)
        if pos.shape != (3,) or yaw is None or not (np.isfinite(pos).all() and math.isfinite(yaw)):
            self.warn(f"end-effector state rejected: position {pos.tolist()}, yaw {yaw}", key="state", now=now)
            return None
        self.stats.states += 1
        self._state = np.array([*pos, yaw])
        self._state_stamp, self._state_arrival = _stamp(stamp), now
        return self._maybe_tick(now)

    def on_gripper(self, opening: float, now: float, stamp: float | None = None) -> Output | None:
        """Gripper opening (m) from the gripper state; ``stamp`` (s) its header stamp."""
        if not math.isfinite(opening) or opening < -0.005:  # a shut gripper may read slightly negative
            self.warn(f"gripper opening rejected: {opening}", key="gripper", now=now)
            return None
        self._opening, self._opening_stamp, self._opening_arrival = max(float(opening), 0.0), _stamp(stamp), now
        return self._maybe_tick(now)

    def on_estop(self, engaged: bool, now: float) -> Output | None:
        """Engaging publishes the zero at once. Releasing the button alone does not release the stop:
        a reset message does, and only once the button reads released."""
        self._estop_pressed = bool(engaged)
        if not engaged:
            return None
        if not self.gate.estopped:
            self.warn("EMERGENCY STOP engaged: zero velocity until a reset message", key="estop", now=now)
        self.gate.estop()
        return self._publish(now, self.gate.zero(["emergency stop"]), None)

    def on_reset(self, now: float) -> None:
        """A new episode: restarts the episode clock and releases the emergency stop, unless the e-stop
        still reads engaged. The newest frame is kept: the reset and the episode's first frame travel on
        different topics and may arrive in either order."""
        self.gate.new_episode()
        if self._estop_pressed:
            self.warn("reset ignored for the emergency stop: it still reads engaged", key="reset", now=now)
            return
        self.gate.reset_estop()

    def on_timer(self, now: float) -> Output | None:
        """The fixed-rate control timer (``rate_hz``)."""
        if self.config.trigger == "timer" or now - self._last_publish >= 0.75 * self.period:
            return self._tick(now)
        return None

    def on_watchdog(self, now: float) -> Output | None:
        """The watchdog timer (4 x ``rate_hz``): zero as soon as a stop reason appears."""
        reasons = self._stop_reasons(now)
        if reasons and not self._last_zero:
            return self._publish(now, self.gate.zero(reasons), None)
        return None

    # ------------------------------------------------------------------ the loop
    def _stop_reasons(self, now: float) -> list[str]:
        reasons = self.gate.stop_reasons(now)
        if self._state is None:
            reasons.append("no end-effector state yet")
        elif now - self._state_arrival > self.state_timeout:
            reasons.append(f"stale end-effector state ({now - self._state_arrival:.3f} s old)")
        if self._opening is None:
            reasons.append("no gripper state yet")
        elif now - self._opening_arrival > self.state_timeout:
            reasons.append(f"stale gripper state ({now - self._opening_arrival:.3f} s old)")
        if self.config.estop_required and not self.estop_connected:
            reasons.append("no e-stop publisher (estop_required)")
        return reasons

    def _maybe_tick(self, now: float) -> Output | None:
        if self.config.trigger != "image" or self._image_seq == self._acted_seq or self._state is None \
                or self._opening is None:
            return None
        if now - self._last_fresh < 0.75 * self.period:
            return None  # frames faster than the control rate: the control timer takes the newest
        if self._image_stamp is not None:
            oldest = self._image_stamp - self.config.sync_slop * self.period
            if any(s is not None and s < oldest for s in (self._state_stamp, self._opening_stamp)):
                return None  # wait for the state that goes with this image
        if self._stop_reasons(now):
            return None  # stopped: the timer and the watchdog send the zeros, not every state message
        return self._tick(now)

    def _tick(self, now: float) -> Output:
        reasons = self._stop_reasons(now)
        if reasons:
            return self._publish(now, self.gate.zero(reasons), None)
        proprio = np.array([*self._state, self._opening], dtype=np.float32)
        t0 = time.perf_counter()
        action = self.policy.act(self._image, proprio)
        inference = time.perf_counter() - t0
        self.stats.inferences += 1
        # The command may act for a period, from a position that is itself this old.
        horizon = self.period + max(0.0, now - self._state_arrival)
        command = self.gate.command(action, self._state[:3], now, horizon_s=horizon)
        fresh = self._image_seq != self._acted_seq
        self._acted_seq = self._image_seq
        if fresh:
            self._last_fresh = now
        out = self._publish(now, command, self._image_stamp)
        out.fresh = fresh
        if fresh:  # waiting for this tick + the inference itself (``now`` is when the tick began)
            self.stats.latency_node.append(now - self._image_arrival + inference)
        return out

    def _publish(self, now: float, command: Command, source_stamp: float | None) -> Output:
        self._last_publish = now
        self._last_zero = command.is_zero and command.gripper is None
        self.stats.commands += 1
        self.stats.zero_commands += int(self._last_zero)
        opening = None if command.gripper is None else (command.gripper + 1.0) / 2.0 * self.max_opening
        return Output(command, opening, source_stamp)

    def record_stamp_latency(self, out: Output, now_ros: float) -> None:
        """Image stamp -> command, both on the ROS clock (called by the transport when it publishes)."""
        if out.fresh and out.source_stamp:
            self.stats.latency_stamp.append(now_ros - out.source_stamp)

    def warn(self, text: str, key: str, now: float) -> None:
        if now - self._warned.get(key, -math.inf) >= 5.0:
            self._warned[key] = now
            self._warn(text)
