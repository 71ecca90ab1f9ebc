"""The ROS 2 deployment with real rclpy over DDS: ``scripts/deploy_ros.py`` in its own process against
the simulated robot (``sim2real.ros.sim_robot``) or a test node in this one."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from sim2real.ros.rehearsal import (
    make_env,
    private_graph,
    rehearse,
    run_in_process,
    start_policy_node,
    stop_policy_node,
    transport_only_config,
)
from sim2real.runtime import OnnxPolicy

ROOT = Path(__file__).resolve().parent.parent
RATE = 10.0
SEEDS = [11, 12]
ENV = {"image_size": 64, "randomization": "full", "objects": "heldout", "max_episode_steps": 12}


@pytest.fixture(scope="module")
def rehearsal(exported, tmp_path_factory):
    folder, spec = exported
    work = tmp_path_factory.mktemp("rehearsal")
    env = make_env(ENV)
    inproc = run_in_process(OnnxPolicy(folder), env, SEEDS, record_actions=True)
    # Limits at the policy's own range, so transport and in-process must agree action for action.
    report = rehearse(folder, env, SEEDS, RATE, work, config=transport_only_config(spec, work / "deploy.yaml"),
                      record_actions=True, log=lambda _t: None)
    env.close()
    return inproc, report


def test_the_policy_drives_the_sim_robot_through_dds_like_in_process(rehearsal):
    inproc, report = rehearsal
    assert report["episodes"] == len(SEEDS), report.get("policy_node_log_tail")
    assert report["fresh_fraction"] >= 0.9
    for row in inproc:
        ros = np.array(report["actions"][row["seed"]])
        fresh = report["fresh_steps"][row["seed"]]
        # Identical until the first step that acted on an older frame (then the worlds may part).
        n = fresh.index(False) if False in fresh else len(fresh)
        assert n >= 5
        np.testing.assert_allclose(ros[:n], np.array(row["actions"])[:n], atol=1e-5)
        if n == len(fresh):
            assert report["per_seed"][row["seed"]] == row["success"] and len(fresh) == row["steps"]


def test_latency_is_measured_and_the_watchdog_zeroes_the_command(rehearsal):
    _, report = rehearsal
    assert report["latency_ms"]["n"] >= sum(len(a) for a in report["actions"].values())
    assert 0 < report["latency_ms"]["p50"] < 1000 / RATE
    assert report["watchdog_delay_s"] is not None and report["watchdog_delay_s"] < 3 / RATE
    node = report["policy_node"]
    assert report["policy_node_exit"] == 0 and node["inferences"] >= 20 and node["rejected"] == 0


class Probe:
    """A stand-in robot: publishes a steady camera + state at 20 Hz, records the commands."""

    def __init__(self, image: np.ndarray):
        import rclpy
        from geometry_msgs.msg import PoseStamped, TwistStamped
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Bool, Empty

        rclpy.init()
        self.rclpy, self.image = rclpy, image
        self.node = rclpy.create_node("probe")
        rel = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {"image": self.node.create_publisher(Image, "/camera/color/image_raw", qos_profile_sensor_data),
                     "pose": self.node.create_publisher(PoseStamped, "/ee_pose", qos_profile_sensor_data),
                     "joints": self.node.create_publisher(JointState, "/gripper/joint_states", qos_profile_sensor_data),
                     "estop": self.node.create_publisher(Bool, "/emergency_stop", rel),
                     "reset": self.node.create_publisher(Empty, "/policy/reset", rel)}
        self.types = {"Image": Image, "PoseStamped": PoseStamped, "JointState": JointState, "Bool": Bool,
                      "Empty": Empty}
        self.twists: list[tuple[float, bool]] = []
        self.node.create_subscription(TwistStamped, "/servo_node/delta_twist_cmds", self._twist, rel)
        self.node.create_timer(0.05, self.publish)

    def _twist(self, msg):
        lin = msg.twist.linear
        self.twists.append((time.monotonic(), bool(lin.x or lin.y or lin.z or msg.twist.angular.z)))

    def publish(self):
        t = self.types
        stamp = self.node.get_clock().now().to_msg()
        img = t["Image"]()
        img.header.stamp, img.encoding = stamp, "rgb8"
        img.height, img.width = self.image.shape[:2]
        img.step, img.data = self.image.shape[1] * 3, self.image.tobytes()
        pose = t["PoseStamped"]()
        pose.header.stamp, pose.header.frame_id = stamp, "panda_link0"
        pose.pose.position.x, pose.pose.position.z, pose.pose.orientation.w = 0.55, 0.2, 1.0
        joints = t["JointState"]()
        joints.header.stamp, joints.name, joints.position = stamp, ["f1", "f2"], [0.04, 0.04]
        for key, msg in (("pose", pose), ("joints", joints), ("image", img)):
            self.pubs[key].publish(msg)

    def spin_for(self, seconds: float):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.rclpy.spin_once(self.node, timeout_sec=0.01)

    def close(self):
        self.node.destroy_node()
        self.rclpy.shutdown()


@pytest.fixture
def own_domain():
    with private_graph() as domain:
        yield domain


def test_emergency_stop_and_bad_images_over_dds(exported, tmp_path, own_domain):
    folder, spec = exported
    stats = tmp_path / "stats.json"
    proc = start_policy_node(folder, transport_only_config(spec, tmp_path / "deploy.yaml"), RATE, stats,
                             log_path=tmp_path / "node.log")
    probe = Probe(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    try:
        deadline = time.monotonic() + 20
        while not any(moving for _, moving in probe.twists) and time.monotonic() < deadline:
            probe.spin_for(0.1)
        assert any(moving for _, moving in probe.twists), (tmp_path / "node.log").read_text()

        probe.pubs["estop"].publish(probe.types["Bool"](data=True))
        t_stop = time.monotonic()
        probe.spin_for(1.0)
        after = [moving for t, moving in probe.twists if t > t_stop + 1 / RATE]
        assert after and not any(after)  # zero from the next period on, while images keep coming

        probe.pubs["reset"].publish(probe.types["Empty"]())  # the button still reads pressed: ignored
        probe.spin_for(0.5)
        assert not any(moving for t, moving in probe.twists if t > t_stop + 1 / RATE)
        probe.pubs["estop"].publish(probe.types["Bool"](data=False))
        probe.spin_for(0.2)
        probe.pubs["reset"].publish(probe.types["Empty"]())
        t_reset = time.monotonic()
        probe.spin_for(1.0)
        assert any(moving for t, moving in probe.twists if t > t_reset)

        probe.image = np.zeros((50, 50, 3), np.uint8)  # wrongly sized: must never reach the policy
        probe.spin_for(0.5)
        t_bad = time.monotonic()
        probe.spin_for(0.5)
        late = [moving for t, moving in probe.twists if t > t_bad]
        assert late and not any(late)  # the watchdog stops the arm: no valid image any more
    finally:
        probe.close()
        assert stop_policy_node(proc) == 0
    node = json.loads(stats.read_text())
    assert node["rejected"] >= 5 and any("size 50x50" in k for k in node["reject_reasons"])
    log = (tmp_path / "node.log").read_text()
    assert "EMERGENCY STOP" in log and "still reads engaged" in log and "image rejected: size 50x50" in log


def run_script(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "deploy_ros.py"), *args],
                          capture_output=True, text=True, timeout=120)


def test_deploy_script_refuses_a_tampered_policy(exported, tmp_path):
    folder, _ = exported
    bad = tmp_path / "policy"
    bad.mkdir()
    (bad / "policy.json").write_text((folder / "policy.json").read_text())
    (bad / "policy.onnx").write_bytes((folder / "policy.onnx").read_bytes() + b"\0")
    r = run_script("--policy", str(bad), "--duration", "1")
    assert r.returncode == 2 and "sha256" in r.stderr and "refusing" in r.stderr


def test_deploy_script_config_errors_and_print_config(tmp_path):
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text("rate_hz: 15\ntopic: {}\n")
    r = run_script("--config", str(cfg), "--print-config")
    assert r.returncode == 2 and str(cfg) in r.stderr and "topic" in r.stderr
    cfg.write_text("rate_hz: 15\n")
    r = run_script("--config", str(cfg), "--twist-topic", "/arm/servo", "--print-config")
    assert r.returncode == 0, r.stderr
    printed = yaml.safe_load(r.stdout)
    assert printed["rate_hz"] == 15 and printed["topics"]["twist"] == "/arm/servo"
    r = run_script("--duration", "1")
    assert r.returncode == 2 and "--policy" in r.stderr


def test_compressed_camera_through_dds(exported, tmp_path):
    folder, spec = exported
    env = make_env({**ENV, "max_episode_steps": 8})
    report = rehearse(folder, env, [21], 20.0, tmp_path, config=transport_only_config(spec, tmp_path / "deploy.yaml"),
                      compressed=True, log=lambda _t: None)
    env.close()
    assert report["episodes"] == 1 and report["steps"] == 8 and report["fresh_fraction"] >= 0.75
    assert report["policy_node"]["rejected"] == 0 and report["policy_node"]["inferences"] >= 8
