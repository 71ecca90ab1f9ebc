"""The grasping simulation as a ROS 2 robot: rehearse a deployment end to end before it meets hardware.

    # terminal 1: the simulated arm                # terminal 2: the policy, exactly as on the robot
    export ROS_DOMAIN_ID=42                          export ROS_DOMAIN_ID=42
    python scripts/sim_robot_ros.py \\               python scripts/deploy_ros.py --policy runs/adapted
        --policy runs/adapted --episodes 20

It publishes the camera (``sensor_msgs/Image`` rgb8, or JPEG ``CompressedImage`` with ``--compressed``),
the end-effector pose and the finger joints on the topics of ``--config`` (the same deployment YAML
the policy node reads), accepts the MoveIt Servo twist and the gripper command, and reports grasp
success per episode, image-to-command latency and the watchdog at the end. The environment is the
policy's run's evaluation setting (held-out objects, full randomization) unless ``--run`` or
``--domain proxy_real`` say otherwise.

Use a ROS domain of its own (``ROS_DOMAIN_ID``): on a network with a real robot on the same domain,
the policy would drive the real arm from simulated images. ``scripts/bench_ros.py`` does all of this
in one command, in a private domain.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from sim2real.ros.rehearsal import add_rehearsal_args

    p.add_argument("--policy", type=Path, required=True, help="folder with policy.json (its action scale and rate)")
    add_rehearsal_args(p, episodes=20)
    p.add_argument("--rate", type=float, help="ticks per second (default: the policy's control rate)")
    p.add_argument("--config", type=Path, help="deployment YAML (topics, frame)")
    p.add_argument("--compressed", action="store_true")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    p.add_argument("--out", type=Path, help="write the report (JSON) here")
    args = p.parse_args(argv)
    if args.episodes < 1:
        p.error("--episodes: must be at least 1")
    try:
        spec = json.loads((args.policy / "policy.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"error: {args.policy}/policy.json: {e}", file=sys.stderr)
        return 2
    from sim2real.ros.core import DeployConfig

    try:
        deploy = DeployConfig.load(args.config)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import rclpy
    from tqdm import tqdm

    from sim2real.ros.rehearsal import camera_topics, env_kwargs, make_env
    from sim2real.ros.sim_robot import RobotModel, SimRobot, spin_sim_robot

    env = make_env(env_kwargs(spec, args.run, args.domain))
    seeds = list(range(args.seed, args.seed + args.episodes))
    rclpy.init()
    bar = tqdm(total=len(seeds), desc="episodes", unit="ep")

    def log(text: str) -> None:
        bar.update()
        bar.write(text)

    topics, compressed = camera_topics(deploy, args.compressed)
    robot = SimRobot(env, seeds, RobotModel.from_spec(spec), topics=topics, frame_id=deploy.frame_id,
                     rate_hz=args.rate or float(spec["control_hz"]), compressed=compressed, log=log)
    robot.make_node()
    print(f"simulated robot at {robot.rate_hz:g} Hz; waiting for the policy node on {deploy.topics.twist} ...",
          flush=True)
    try:
        report = spin_sim_robot(robot, timeout_s=args.timeout)
    except KeyboardInterrupt:
        report = robot.report()
    finally:
        bar.close()
        robot.node.destroy_node()
        rclpy.shutdown()
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0 if report["episodes"] == len(seeds) else 1


if __name__ == "__main__":
    sys.exit(main())
