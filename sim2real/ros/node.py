"""The ROS 2 policy node (rclpy): camera + end-effector state in, MoveIt Servo twist + gripper out.

Needs the ``ros`` extra (``pip install "sim2real[ros]"``: rclpy and the message packages from PyPI, no
ROS installation). Topics (names from ``DeployConfig.topics``):

===================  =====================================  ==========================================
topic                type                                   meaning
===================  =====================================  ==========================================
``image``            sensor_msgs/Image or CompressedImage   camera, RGB/BGR/mono 8-bit or JPEG/PNG
``ee_pose``          geometry_msgs/PoseStamped              end effector in the base frame (m, quat)
``gripper_state``    sensor_msgs/JointState                 finger positions; opening = their sum, m
``estop``            std_msgs/Bool                          true engages the latched emergency stop
``reset``            std_msgs/Empty                         new episode; releases the emergency stop
``twist``            geometry_msgs/TwistStamped (out)       m/s, rad/s in ``frame_id`` (Servo, speed units)
``gripper_command``  std_msgs/Float64 (out)                 target opening, m
``trace``            std_msgs/Header (out)                  stamp of the image behind the last command
===================  =====================================  ==========================================

Camera and state are best effort, newest only (a queued old frame is worth nothing; a frame's age is
taken from when the middleware received it). Commands are reliable with depth 1 (a late velocity
should be replaced, not delivered in a burst); the e-stop is reliable. All behaviour lives in
``sim2real.ros.core.PolicyLoop``; an exception there (e.g. in the policy) sends a zero twist and the
node keeps running.
"""

from __future__ import annotations

import signal
import threading
import time

from sim2real.ros.core import DeployConfig, Output, PolicyLoop
from sim2real.ros.messages import (
    BadMessage,
    decode_compressed,
    decode_image,
    received_time,
    s_to_stamp,
    stamp_to_s,
    yaw_of,
)


def _stamp(header) -> float | None:
    t = stamp_to_s(header.stamp.sec, header.stamp.nanosec)
    return t if t > 0 else None


def make_policy_node(loop: PolicyLoop, config: DeployConfig, name: str = "sim2real_policy"):
    """An rclpy ``Node`` driving ``loop``; ``rclpy.init()`` must have been called."""
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from rclpy.node import Node
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image, JointState
    from std_msgs.msg import Bool, Empty, Float64, Header

    topics = config.topics
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    newest = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
    command_qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)

    class PolicyNode(Node):
        def __init__(self) -> None:
            super().__init__(name)
            self.loop = loop
            self.twist_pub = self.create_publisher(TwistStamped, topics.twist, command_qos)
            self.gripper_pub = self.create_publisher(Float64, topics.gripper_command, command_qos)
            self.trace_pub = self.create_publisher(Header, topics.trace, reliable)
            if config.compressed:
                self.create_subscription(CompressedImage, topics.image, self.on_compressed, newest)
            else:
                self.create_subscription(Image, topics.image, self.on_image, newest)
            self.create_subscription(PoseStamped, topics.ee_pose, self.on_pose, newest)
            self.create_subscription(JointState, topics.gripper_state, self.on_joints, newest)
            self.estop_sub = self.create_subscription(Bool, topics.estop, self.on_estop, reliable)
            self.create_subscription(Empty, topics.reset, self.on_reset, reliable)
            self.create_timer(loop.period, lambda: self.run("control timer", loop.on_timer, time.monotonic()))
            self.create_timer(loop.period / 4.0, self.on_watchdog)
            self.get_logger().info(
                f"policy at {loop.rate_hz:g} Hz (trigger {config.trigger}); {topics.image} -> {topics.twist} "
                f"in {config.frame_id}; images {', '.join(f'{w}x{h}' for w, h in loop.image_sizes)}")
            loop._warn = self.get_logger().warning

        def run(self, what: str, fn, *args) -> None:
            """``fn(*args)`` on the loop; publish what it returns; on an exception, zero and go on."""
            try:
                out = fn(*args)
            except Exception as e:  # noqa: BLE001 - e.g. the policy failing: stop the arm, keep running
                loop.warn(f"{what} failed ({type(e).__name__}: {e}); sending zero", key="error:" + what,
                          now=time.monotonic())
                out = Output(loop.gate.zero([f"{what} failed"]), None, None)
            self.send(out)

        # ----------------------------------------------------------- inputs
        @staticmethod
        def _arrival(info) -> float:
            """When the middleware received the message, on the monotonic clock."""
            return time.monotonic() - max(0.0, time.time() - received_time(info))

        def on_image(self, msg, info) -> None:
            try:
                rgb = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)
            except BadMessage as e:
                rgb = str(e)
            self.run("image", loop.on_image, rgb, _stamp(msg.header), time.monotonic(), self._arrival(info))

        def on_compressed(self, msg, info) -> None:
            try:
                rgb = decode_compressed(msg.format, msg.data)
            except BadMessage as e:
                rgb = str(e)
            self.run("image", loop.on_image, rgb, _stamp(msg.header), time.monotonic(), self._arrival(info))

        def on_pose(self, msg) -> None:
            p, q = msg.pose.position, msg.pose.orientation
            self.run("ee_pose", loop.on_state, (p.x, p.y, p.z), yaw_of(q.x, q.y, q.z, q.w), _stamp(msg.header),
                     time.monotonic(), msg.header.frame_id)

        def on_joints(self, msg) -> None:
            names = config.gripper_joints
            positions = [p for n, p in zip(msg.name, msg.position, strict=False) if not names or n in names]
            if names and len(positions) != len(names):
                loop.warn(f"gripper_state lacks joints {sorted(set(names) - set(msg.name))}", key="joints",
                          now=time.monotonic())
                return
            self.run("gripper_state", loop.on_gripper, float(sum(positions)), time.monotonic(), _stamp(msg.header))

        def on_estop(self, msg) -> None:
            self.run("estop", loop.on_estop, bool(msg.data), time.monotonic())

        def on_watchdog(self) -> None:
            loop.estop_connected = self.estop_sub.get_publisher_count() > 0
            self.run("watchdog", loop.on_watchdog, time.monotonic())

        def on_reset(self, _msg) -> None:
            loop.on_reset(time.monotonic())

        # ----------------------------------------------------------- outputs
        def send(self, out: Output | None) -> None:
            if out is None:
                return
            now = self.get_clock().now()
            msg = TwistStamped()
            msg.header.stamp = now.to_msg()
            msg.header.frame_id = config.frame_id
            lin, ang = out.command.linear, out.command.angular
            msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in lin)
            msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = (float(v) for v in ang)
            self.twist_pub.publish(msg)
            if out.gripper_opening is not None:
                self.gripper_pub.publish(Float64(data=float(out.gripper_opening)))
            if out.source_stamp is not None:
                trace = Header()
                trace.stamp.sec, trace.stamp.nanosec = s_to_stamp(out.source_stamp)
                self.trace_pub.publish(trace)
            loop.record_stamp_latency(out, now.nanoseconds * 1e-9)

        def stop(self) -> None:
            """Send one zero twist (on shutdown the arm must not keep the last velocity)."""
            self.send(Output(loop.gate.zero(["shutdown"]), None, None))

    return PolicyNode()


def spin_policy_node(loop: PolicyLoop, config: DeployConfig, duration: float | None = None,
                     args: list[str] | None = None) -> dict:
    """Init rclpy, run the node until ``duration`` s pass or Ctrl-C, send a zero twist, shut down;
    returns the loop's statistics."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    # rclpy's own SIGINT handler would shut the context down before the zero twist could go out.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = make_policy_node(loop, config)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    # Ctrl-C / SIGTERM set a flag instead of raising: an exception thrown into the middle of the
    # executor's wait leaves it unable to shut down cleanly, and the zero twist must still go out.
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    end = None if duration is None else time.monotonic() + duration
    try:
        while rclpy.ok() and not stop.is_set() and (end is None or time.monotonic() < end):
            executor.spin_once(timeout_sec=0.05)
    finally:
        try:
            node.stop()
            time.sleep(0.1)  # let the zero twist leave before the publisher is destroyed
        finally:
            node.destroy_node()
            if rclpy.ok():
                rclpy.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return loop.stats.summary()
