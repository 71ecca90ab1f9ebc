"""Rehearse a deployment: the policy node and the simulated robot as two processes over real DDS, next
to the same policy run in-process on the same seeds (``scripts/bench_ros.py``, ``tests/test_ros2.py``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def env_kwargs(spec: dict, run: str | Path | None = None, domain: str = "sim", objects: str = "heldout") -> dict:
    """Environment settings to rehearse in: the run's evaluation settings (``run``, else the policy's
    ``source_run`` when it still exists), else the defaults at the policy's image size."""
    from policies.train import eval_env_kwargs, run_settings

    run = Path(run) if run else Path(spec.get("source_run") or "")
    if run.name and (run / "config.json").is_file():
        return eval_env_kwargs(run_settings(json.loads((run / "config.json").read_text()), domain), objects, domain)
    size = int(spec["inputs"]["image"]["shape"][1])
    return {"image_size": size, "randomization": "full", "objects": objects, "domain": domain}


def add_rehearsal_args(p, episodes: int) -> None:
    """The arguments every rehearsal script takes: which environment (``--run``, ``--domain``) and
    which seeds (``--episodes`` from ``--seed``)."""
    p.add_argument("--run", type=Path, help="run whose evaluation settings to use (default: the policy's source run)")
    p.add_argument("--domain", choices=("sim", "proxy_real"), default="sim")
    p.add_argument("--episodes", type=int, default=episodes)
    p.add_argument("--seed", type=int, default=1000, help="first seed")


def camera_topics(deploy, compressed: bool):
    """(topics, compressed) for the simulated camera: JPEG when asked or when the config reads JPEG;
    a raw topic asked to carry JPEG becomes ``<topic>/compressed`` (image_transport's name), which the
    policy node then reads as compressed too."""
    import dataclasses

    if not compressed or deploy.compressed:
        return deploy.topics, compressed or deploy.compressed
    return dataclasses.replace(deploy.topics, image=deploy.topics.image.rstrip("/") + "/compressed"), True


def transport_only_config(spec: dict, path: Path) -> Path:
    """A deployment YAML whose safety limits are the policy's own range (per-axis action 1 x scale x
    control rate, a workspace wider than the simulator's), so that a rehearsal compares the transport,
    not the clamps."""
    import yaml

    hz = float(spec["control_hz"])
    lin = spec["action_scale"]["max_translation_m"] * hz * 3 ** 0.5 * 1.01
    ang = spec["action_scale"]["max_rotation_rad"] * hz * 1.01
    path.write_text(yaml.safe_dump({"safety": {"max_linear_speed": lin, "max_angular_speed": ang,
                                               "workspace_low": [0.2, -0.5, -0.05],
                                               "workspace_high": [1.0, 0.5, 0.6], "max_episode_s": 600.0}}))
    return path


def make_env(kwargs: dict):
    import gymnasium as gym

    import envs  # noqa: F401 - registers the ids

    return gym.make("PandaGrasp-v0", disable_env_checker=True, **kwargs)


def run_in_process(policy, env, seeds: list[int], record_actions: bool = False, progress=None) -> list[dict]:
    """The exported policy acting on the env directly: [{seed, success, steps, actions?}]."""
    out = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        actions = []
        while True:
            action = policy.act(obs["image"], obs["proprio"])
            actions.append(action.tolist())
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        row = {"seed": seed, "success": bool(info["is_success"]), "steps": len(actions)}
        if record_actions:
            row["actions"] = actions
        out.append(row)
        if progress is not None:
            progress(row)
    return out


@contextmanager
def private_graph(domain_id: int | None = None):
    """A DDS domain of its own on loopback only, for this process and the ones it starts.

    A rehearsal must never reach a real robot's topics (the policy would drive the arm from simulated
    images), nor another rehearsal's; the domain id is random in 1..101 (the range whose DDS ports
    stay clear of Linux's ephemeral ports) unless given. Discovery is limited to this host
    (``ROS_AUTOMATIC_DISCOVERY_RANGE``, the rclpy installed by the ``ros`` extra)."""
    saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")}
    os.environ["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else random.randint(1, 101))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    try:
        yield int(os.environ["ROS_DOMAIN_ID"])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_policy_node(policy_dir: str | Path, config: str | Path | None, rate_hz: float, stats_out: Path,
                      extra: list[str] | None = None, log_path: Path | None = None) -> subprocess.Popen:
    """``scripts/deploy_ros.py`` in its own process (one onnxruntime thread, like on the robot), on
    this process's ROS domain (see ``private_graph``)."""
    cmd = [sys.executable, str(SCRIPTS / "deploy_ros.py"), "--policy", str(policy_dir), "--rate", str(rate_hz),
           "--stats-out", str(stats_out), *(["--config", str(config)] if config else []), *(extra or [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if log_path is None:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
    with open(log_path, "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


def stop_policy_node(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGINT (the node sends a zero twist and writes its statistics), then wait."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def rehearse(policy_dir: str | Path, env, seeds: list[int], rate_hz: float, workdir: Path,
             config: str | Path | None = None, compressed: bool = False, record_actions: bool = False,
             timeout_s: float | None = None, log=print) -> dict:
    """Policy node (subprocess) <-> ``SimRobot`` (this process) over DDS on ``seeds`` at ``rate_hz``,
    in a private ROS domain (``private_graph``).

    Returns the robot's report (success per seed, fresh fraction, latency, watchdog delay) plus
    ``policy_node``: the node's own statistics, and ``actions`` per episode with ``record_actions``."""
    import rclpy

    from sim2real.ros.core import DeployConfig
    from sim2real.ros.sim_robot import RobotModel, SimRobot, spin_sim_robot

    spec = json.loads((Path(policy_dir) / "policy.json").read_text())
    deploy = DeployConfig.load(config)
    workdir.mkdir(parents=True, exist_ok=True)
    name = f"policy-node-{rate_hz:g}hz"
    stats_path = workdir / f"{name}.json"
    topics, compressed = camera_topics(deploy, compressed)
    extra = ["--image-topic", topics.image] if topics.image != deploy.topics.image else []
    with private_graph():
        proc = start_policy_node(policy_dir, config, rate_hz, stats_path, extra, workdir / f"{name}.log")
        rclpy.init()
        try:
            robot = SimRobot(env, seeds, RobotModel.from_spec(spec), topics=topics, frame_id=deploy.frame_id,
                             rate_hz=rate_hz, compressed=compressed, record_actions=record_actions, log=log)
            robot.make_node()
            # At most ~50 steps an episode, plus resets and discovery.
            budget = timeout_s or (60.0 + len(seeds) * (60 / rate_hz + 2.0))
            t0 = time.monotonic()
            report = spin_sim_robot(robot, timeout_s=budget)
            report["wall_s"] = time.monotonic() - t0
            report["latency_samples_ms"] = [round(v * 1e3, 4) for v in robot.latencies]
            if record_actions:
                report["actions"] = {e.seed: e.actions for e in robot.episodes}
                report["fresh_steps"] = {e.seed: e.fresh_steps for e in robot.episodes}
            robot.node.destroy_node()
        finally:
            rclpy.shutdown()
            code = stop_policy_node(proc)
    report["policy_node"] = json.loads(stats_path.read_text()) if stats_path.is_file() else None
    report["policy_node_exit"] = code
    if code != 0 or report["episodes"] < len(seeds):
        report["policy_node_log_tail"] = (workdir / f"{name}.log").read_text()[-2000:]
    return report
