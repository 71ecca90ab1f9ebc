"""Drive a robot arm with an exported policy through ROS.

    python scripts/deploy_ros.py --policy runs/adapted                      # ROS 2 node (rclpy)
    python scripts/deploy_ros.py --policy runs/adapted --config deploy.yaml
    python scripts/deploy_ros.py --policy runs/adapted --transport rosbridge --host robot-pc --port 9090

The policy folder holds ``policy.onnx`` + ``policy.json`` (``scripts/export_policy.py``, or the output
of ``adapt_real.py``); its sha256 is checked before anything moves. The node subscribes to the camera
(``sensor_msgs/Image``, or ``CompressedImage`` on a ``.../compressed`` topic) and the end-effector
state (``geometry_msgs/PoseStamped`` + ``sensor_msgs/JointState``), and publishes a MoveIt Servo twist
(``geometry_msgs/TwistStamped``, m/s and rad/s, speed units) and a gripper target opening
(``std_msgs/Float64``, m). ``std_msgs/Bool`` true on the e-stop topic stops it (latched);
``std_msgs/Empty`` on the reset topic starts a new episode and releases the stop.

Settings come from ``--config`` (YAML; ``--print-config`` shows every key with its default) and then
the flags. Safety (velocity and workspace clamps, stale-image watchdog, e-stop, episode time) is the
same for both transports: ``sim2real/ros/safety.py``. The ROS 2 transport needs the ``ros`` extra
(``pip install "sim2real[ros]"``, no ROS installation); rosbridge needs ``roslibpy`` (same extra) and
``rosbridge_server`` running on the robot. Exit status: 0 after Ctrl-C / ``--duration``, 2 on a bad
policy folder or setting.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", type=Path, help="folder with policy.onnx + policy.json")
    p.add_argument("--transport", choices=("ros2", "rosbridge"), default="ros2")
    p.add_argument("--config", type=Path, help="deployment YAML (topics, rate, frame, safety)")
    p.add_argument("--print-config", action="store_true", help="print the settings as YAML and exit")
    p.add_argument("--rate", type=float, dest="rate_hz", help="control rate, Hz (default: the policy's)")
    p.add_argument("--trigger", choices=("image", "timer"), help="run the policy on each new frame or on the timer")
    p.add_argument("--frame-id", help="frame of the twist (MoveIt Servo command frame = robot base)")
    p.add_argument("--image-topic")
    p.add_argument("--ee-pose-topic")
    p.add_argument("--gripper-state-topic")
    p.add_argument("--twist-topic")
    p.add_argument("--gripper-command-topic")
    p.add_argument("--estop-topic")
    p.add_argument("--reset-topic")
    p.add_argument("--max-linear-speed", type=float, help="m/s")
    p.add_argument("--max-angular-speed", type=float, help="rad/s")
    p.add_argument("--max-episode-s", type=float, help="s")
    p.add_argument("--host", default="localhost", help="rosbridge host")
    p.add_argument("--port", type=int, default=9090, help="rosbridge port")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (1 keeps latency predictable)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--stats-out", type=Path, help="write the loop's statistics (JSON) here on exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from sim2real.ros.core import DeployConfig, PolicyLoop

    topics = {"image": args.image_topic, "ee_pose": args.ee_pose_topic, "gripper_state": args.gripper_state_topic,
              "twist": args.twist_topic, "gripper_command": args.gripper_command_topic, "estop": args.estop_topic,
              "reset": args.reset_topic}
    safety = {"max_linear_speed": args.max_linear_speed, "max_angular_speed": args.max_angular_speed,
              "max_episode_s": args.max_episode_s}
    try:
        config = DeployConfig.load(args.config, rate_hz=args.rate_hz, trigger=args.trigger, frame_id=args.frame_id,
                                   topics=topics, safety=safety)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        import yaml

        print(yaml.safe_dump(json.loads(json.dumps(config.to_dict())), sort_keys=False), end="")
        return 0
    if args.policy is None:
        print("error: --policy: the folder with policy.onnx + policy.json is required", file=sys.stderr)
        return 2

    from sim2real.runtime import OnnxPolicy, PolicyFileError

    try:
        policy = OnnxPolicy(args.policy, threads=args.threads)
    except PolicyFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    loop = PolicyLoop(policy, config, warn=lambda text: print(f"warning: {text}", file=sys.stderr, flush=True))
    # A terminating supervisor (systemd, a launch file, a test) gets the same clean stop as Ctrl-C:
    # one zero twist goes out before the process ends.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"policy {args.policy} ({policy.spec.get('control_hz')} Hz, sha256 {policy.spec['sha256'][:12]}) "
          f"via {args.transport}; Ctrl-C stops", flush=True)
    if args.transport == "ros2":
        try:
            from sim2real.ros.node import spin_policy_node
        except ImportError as e:
            print(f"error: the ROS 2 transport needs rclpy ({e}); pip install \"sim2real[ros]\"", file=sys.stderr)
            return 2
        stats = spin_policy_node(loop, config, duration=args.duration)
    else:
        try:
            from sim2real.ros.bridge import RosbridgeClient
        except ImportError as e:
            print(f"error: the rosbridge transport needs roslibpy ({e}); pip install \"sim2real[ros]\"",
                  file=sys.stderr)
            return 2
        client = RosbridgeClient(loop, config, host=args.host, port=args.port,
                                 log=lambda text: print(text, flush=True))
        try:
            client.start()
        except (ConnectionError, OSError, TimeoutError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        try:
            client.spin(args.duration)
        except KeyboardInterrupt:
            pass
        finally:
            client.stop()
        stats = loop.stats.summary()
    print("stats: " + json.dumps(stats), flush=True)
    if args.stats_out:
        args.stats_out.write_text(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
