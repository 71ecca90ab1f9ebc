"""The grasping environment as a ROS 2 robot, to rehearse a deployment end to end before hardware.

Each tick of a fixed-rate timer (``rate_hz``) applies the newest command, advances the simulation by
one control period (``1 / control_hz`` of simulated time, so ``rate_hz > control_hz`` runs faster than
real time), then publishes what a real arm publishes, all stamped with the same time: the camera image
(``sensor_msgs/Image`` rgb8, or JPEG ``CompressedImage``), the end-effector pose
(``geometry_msgs/PoseStamped``, base frame, gripper pointing down) and the finger joints
(``sensor_msgs/JointState``, opening = their sum). Commands come in as a MoveIt Servo twist
(``geometry_msgs/TwistStamped``, m/s and rad/s) and a gripper target opening (``std_msgs/Float64``,
m) and are turned back into the environment's action. Like MoveIt Servo, a twist older than
``command_timeout_s`` is ignored (the arm holds still). Episodes run over the given seeds; a
``std_msgs/Empty`` on the reset topic announces each new one.

Measured on the way (``SimRobot.report``): success per seed, the fraction of steps whose command was
computed from the image of the step just before (``fresh``; 1.0 means the transport never made the
policy act on an older frame), image-to-command latency from the policy's trace topic, and - after
``stop_camera()`` - how long the policy took to command zero velocity.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from sim2real.ros.core import Topics
from sim2real.ros.messages import encode_compressed, encode_image, received_time, s_to_stamp, stamp_to_s

FINGER_NAMES = ("panda_finger_joint1", "panda_finger_joint2")


@dataclass
class RobotModel:
    """How commands map back to actions: the policy's action scale (m, rad per control step), control
    rate (Hz) and gripper range (m), all from ``policy.json``."""

    max_translation: float
    max_rotation: float
    control_hz: float
    max_opening: float = 0.08

    @classmethod
    def from_spec(cls, spec: dict) -> RobotModel:
        return cls(spec["action_scale"]["max_translation_m"], spec["action_scale"]["max_rotation_rad"],
                   float(spec["control_hz"]), float(spec.get("gripper", {}).get("max_opening_m", 0.08)))

    def action(self, linear, angular_z: float, opening: float) -> np.ndarray:
        """Twist (m/s, rad/s) and target opening (m) -> env action (5,) in [-1, 1]."""
        a = np.empty(5, dtype=np.float32)
        a[:3] = np.asarray(linear, dtype=float) / (self.max_translation * self.control_hz)
        a[3] = angular_z / (self.max_rotation * self.control_hz)
        a[4] = opening / self.max_opening * 2.0 - 1.0
        return np.clip(a, -1.0, 1.0)


@dataclass
class Episode:
    seed: int
    success: bool = False
    steps: int = 0
    fresh: int = 0
    actions: list[list[float]] = field(default_factory=list)      # with record_actions
    fresh_steps: list[bool] = field(default_factory=list)          # with record_actions


class SimRobot:
    """Args: env: a ``GraspEnv`` (pixels); seeds: episodes to run, in order; model: see ``RobotModel``;
    topics / frame_id: as the policy node's (``rehearsal.camera_topics`` names the image topic);
    rate_hz: ticks per wall-clock second; compressed: publish
    JPEG; record_actions: keep every applied action (for transport-fidelity tests)."""

    def __init__(self, env, seeds: list[int], model: RobotModel, topics: Topics | None = None,
                 frame_id: str = "panda_link0", rate_hz: float = 10.0, command_timeout_s: float | None = None,
                 compressed: bool = False, record_actions: bool = False, log=print) -> None:
        self.env, self.seeds, self.model = env, list(seeds), model
        self.topics, self.frame_id, self.rate_hz = topics or Topics(), frame_id, float(rate_hz)
        self.period = 1.0 / self.rate_hz
        self.command_timeout_s = command_timeout_s if command_timeout_s is not None else 2.5 * self.period
        self.compressed, self.record_actions, self.log = compressed, record_actions, log
        self.episodes: list[Episode] = []
        self.current: Episode | None = None
        self.latencies: list[float] = []
        self.done = False
        self._twist = (np.zeros(3), 0.0, -math.inf)   # linear m/s, angular z rad/s, arrival (monotonic)
        self._opening = model.max_opening
        self._trace = None                              # stamp (s) of the image behind the newest command
        self._image_stamp = None
        self._camera_on = True
        self.watchdog_delay: float | None = None
        self._connected_at: float | None = None
        self.node = None

    # ---------------------------------------------------------------- ROS
    def make_node(self, name: str = "sim2real_sim_robot"):
        from geometry_msgs.msg import PoseStamped, TwistStamped
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image, JointState
        from std_msgs.msg import Empty, Float64, Header

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        t = self.topics
        node = Node(name)
        self._msgs = {"Image": Image, "CompressedImage": CompressedImage, "PoseStamped": PoseStamped,
                      "JointState": JointState, "Empty": Empty}
        self._image_pub = node.create_publisher(CompressedImage if self.compressed else Image, t.image,
                                                qos_profile_sensor_data)
        self._pose_pub = node.create_publisher(PoseStamped, t.ee_pose, qos_profile_sensor_data)
        self._joint_pub = node.create_publisher(JointState, t.gripper_state, qos_profile_sensor_data)
        self._reset_pub = node.create_publisher(Empty, t.reset, reliable)
        self._subs = [node.create_subscription(TwistStamped, t.twist, self._on_twist, reliable),
                      node.create_subscription(Float64, t.gripper_command, self._on_gripper, reliable),
                      node.create_subscription(Header, t.trace, self._on_trace, reliable)]
        self._timer = node.create_timer(self.period, self._tick)
        self.node = node
        return node

    def _on_twist(self, msg, info) -> None:
        lin = np.array([msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z])
        self._twist = (lin, float(msg.twist.angular.z), time.monotonic())
        if not self._camera_on and self.watchdog_delay is None and not lin.any() and msg.twist.angular.z == 0:
            self.watchdog_delay = received_time(info) - self._image_stamp

    def _on_gripper(self, msg) -> None:
        if math.isfinite(msg.data):
            self._opening = float(msg.data)

    def _on_trace(self, msg, info) -> None:
        stamp = stamp_to_s(msg.stamp.sec, msg.stamp.nanosec)
        if self._camera_on and stamp != self._trace:  # the first command from this image
            self.latencies.append(received_time(info) - stamp)
        self._trace = stamp

    def stop_camera(self) -> None:
        """Stop publishing (and stepping): the policy's watchdog must command zero."""
        self._camera_on = False

    def connected(self) -> bool:
        """Every topic has its peer: DDS discovery between processes takes a moment, and the first
        episode must not start while its first image or command would still be dropped."""
        pubs = (self._image_pub, self._pose_pub, self._joint_pub)
        return all(p.get_subscription_count() > 0 for p in pubs) and \
            all(s.get_publisher_count() > 0 for s in self._subs)

    # ---------------------------------------------------------------- the loop
    def _tick(self) -> None:
        if not self._camera_on or self.done:
            return
        if not self.episodes and self.current is None:
            if not self.connected():
                return
            # Matched is not yet delivered: the first samples after discovery can still be dropped.
            self._connected_at = self._connected_at or time.monotonic()
            if time.monotonic() - self._connected_at < 1.0:
                return
        if self.current is None:
            if len(self.episodes) >= len(self.seeds):
                self.done = True
                return
            seed = self.seeds[len(self.episodes)]
            self.current = Episode(seed)
            # The last episode's final command must not start this one.
            self._twist, self._opening = (np.zeros(3), 0.0, -math.inf), self.model.max_opening
            obs, _ = self.env.reset(seed=seed)
            self._reset_pub.publish(self._msgs["Empty"]())
            self._publish(obs)
            # Resetting the world takes longer than a period; without this the overdue timer would
            # step at once, before the policy could answer the episode's first image.
            self._timer.reset()
            return
        lin, ang, arrival = self._twist
        if time.monotonic() - arrival > self.command_timeout_s:
            lin, ang = np.zeros(3), 0.0
        action = self.model.action(lin, ang, self._opening)
        ep = self.current
        fresh = (self._trace is not None and self._image_stamp is not None
                 and abs(self._trace - self._image_stamp) < 1e-6)
        ep.fresh += int(fresh)
        if self.record_actions:
            ep.actions.append(action.tolist())
            ep.fresh_steps.append(bool(fresh))
        obs, _, terminated, truncated, info = self.env.step(action)
        ep.steps += 1
        if terminated or truncated:
            ep.success = bool(info["is_success"])
            self.episodes.append(ep)
            self.current = None
            self.log(f"episode {len(self.episodes)}/{len(self.seeds)} seed {ep.seed}: "
                     f"{'success' if ep.success else 'failure'} in {ep.steps} steps ({ep.fresh}/{ep.steps} fresh)")
        self._publish(obs)

    def _publish(self, obs: dict) -> None:
        stamp_s = round(time.time(), 6)  # microseconds survive the round trip through float seconds
        sec, nsec = s_to_stamp(stamp_s)
        m = self._msgs
        if self.compressed:
            img = m["CompressedImage"]()
            fields = encode_compressed(obs["image"])
            img.format, img.data = fields["format"], fields["data"]
        else:
            img = m["Image"]()
            fields = encode_image(obs["image"])
            img.encoding, img.height, img.width, img.step = (fields[k] for k in ("encoding", "height", "width",
                                                                                 "step"))
            img.data = fields["data"]
        x, y, z, yaw, opening = (float(v) for v in obs["proprio"])
        pose = m["PoseStamped"]()
        # Gripper pointing down (pi about x), then yaw about z: q = (cos(yaw/2), sin(yaw/2), 0, 0) as (x, y, z, w=0).
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = x, y, z
        o = pose.pose.orientation
        o.x, o.y, o.z, o.w = math.cos(yaw / 2), math.sin(yaw / 2), 0.0, 0.0
        joints = m["JointState"]()
        joints.name = list(FINGER_NAMES)
        joints.position = [opening / 2, opening / 2]
        for msg in (img, pose, joints):
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nsec
            msg.header.frame_id = self.frame_id
        img.header.frame_id = "camera_color_optical_frame"
        # State first: the policy waits for a state as new as the image, so this order saves a wait.
        self._pose_pub.publish(pose)
        self._joint_pub.publish(joints)
        self._image_pub.publish(img)
        self._image_stamp = stamp_s

    def report(self) -> dict:
        eps = self.episodes
        steps = sum(e.steps for e in eps)
        lat = np.asarray(self.latencies) * 1e3
        return {"episodes": len(eps), "successes": sum(e.success for e in eps),
                "per_seed": {e.seed: e.success for e in eps},
                "steps": steps, "fresh_fraction": (sum(e.fresh for e in eps) / steps) if steps else None,
                "latency_ms": ({"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                                "max": float(lat.max()), "n": int(lat.size)} if lat.size else None),
                "watchdog_delay_s": self.watchdog_delay, "rate_hz": self.rate_hz}


def spin_sim_robot(robot: SimRobot, timeout_s: float, stop_camera_after: bool = True, watchdog_wait_s: float = 2.0):
    """Run ``robot`` (rclpy must be initialised) until its seeds are done or ``timeout_s`` passes; then,
    with ``stop_camera_after``, stop the camera and wait up to ``watchdog_wait_s`` for the zero twist."""
    from rclpy.executors import SingleThreadedExecutor

    node = robot.node or robot.make_node()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    end = time.monotonic() + timeout_s
    while not robot.done and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.01)
    if stop_camera_after and robot.done:
        # Keep ticking a little so the policy has a steady stream, then stop the camera.
        robot.stop_camera()
        wd_end = time.monotonic() + watchdog_wait_s
        while robot.watchdog_delay is None and time.monotonic() < wd_end:
            executor.spin_once(timeout_sec=0.005)
    executor.remove_node(node)
    return robot.report()
