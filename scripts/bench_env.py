"""Speed benchmark of the grasping env against its peers, run side by side in one sitting.

    python scripts/bench_env.py --peer-python /path/to/peer-venv/bin/python

Measures, on PandaGrasp-v0 at 64x64 RGB under the full randomization preset, one process:
  steps/s with random actions; full episodes/s with random actions and with the scripted expert
  (a complete grasp, planning included); SB3 SubprocVecEnv throughput with 1 and 2 workers; and
  resident memory over many resets. Then it runs ../shared/peers/bench_kuka.py and
  bench_panda_gym.py with ``--peer-python`` (an environment holding pybullet, gym 0.26 and
  panda-gym; see the README) and prints a markdown table of ratios.
Machines are shared and noisy: compare the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import envs  # noqa: E402,F401
from envs.expert import ScriptedExpert  # noqa: E402

ENV_ID = "PandaGrasp-v0"
KWARGS = {"image_size": 64, "randomization": "full"}


def steps_per_second(seconds: float) -> tuple[float, float]:
    """Random actions: (steps/s, random-action episodes/s)."""
    env = gym.make(ENV_ID, **KWARGS)
    env.reset(seed=0)
    env.action_space.seed(0)
    steps = episodes = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            env.reset()
            episodes += 1
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed, episodes / elapsed


def expert_episodes_per_second(seconds: float) -> tuple[float, float, int]:
    """Scripted-expert grasp episodes (reset, planning and execution): (episodes/s, success, n)."""
    env = gym.make(ENV_ID, **KWARGS)
    expert = ScriptedExpert(env)
    env.reset(seed=1)
    episodes = successes = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if episodes:
            env.reset()
        expert.reset()
        while True:
            _, _, terminated, truncated, info = env.step(expert.act())
            if terminated or truncated:
                break
        episodes += 1
        successes += int(info["is_success"])
    elapsed = time.perf_counter() - start
    env.close()
    return episodes / elapsed, successes / max(episodes, 1), episodes


def _make(rank: int):
    def thunk():
        env = gym.make(ENV_ID, **KWARGS)
        env.reset(seed=rank)
        return env
    return thunk


def vec_steps_per_second(workers: int, seconds: float) -> float:
    from stable_baselines3.common.vec_env import SubprocVecEnv

    vec = SubprocVecEnv([_make(i) for i in range(workers)], start_method="fork")
    vec.reset()
    rng = np.random.default_rng(0)
    for _ in range(20):  # warm up the workers
        vec.step(rng.uniform(-1, 1, (workers, 5)).astype(np.float32))
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        vec.step(rng.uniform(-1, 1, (workers, 5)).astype(np.float32))
        steps += workers
    elapsed = time.perf_counter() - start
    vec.close()
    return steps / elapsed


def memory_over_resets(resets: int) -> dict:
    """RSS (MB) of this process over many resets of one env (a few random steps each)."""
    env = gym.make(ENV_ID, **KWARGS)
    env.reset(seed=2)
    proc = psutil.Process()
    marks = {}
    for i in range(1, resets + 1):
        env.reset()
        for _ in range(3):
            env.step(env.action_space.sample())
        if i in (1, resets // 4, resets // 2, resets) or i % 250 == 0:
            marks[i] = proc.memory_info().rss / 2**20
    env.close()
    quarter = resets // 4
    return {"rss_mb": marks, "growth_after_warmup_mb": marks[resets] - marks[quarter],
            "warmup_resets": quarter}


def run_peer(python: str, script: str, seconds: float) -> str:
    path = ROOT.parent / "shared" / "peers" / script
    if not path.exists():
        raise FileNotFoundError(f"peer script not found: {path}")
    out = subprocess.run([python, str(path), str(seconds)], capture_output=True, text=True, check=True)
    return out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each timed run")
    parser.add_argument("--resets", type=int, default=2000, help="resets for the memory run")
    parser.add_argument("--peer-python", help="python of an environment with the peers installed")
    parser.add_argument("--json", type=Path, help="write all figures to this JSON file")
    args = parser.parse_args()

    r: dict = {}
    print("timing our env (random actions)...", flush=True)
    r["steps_per_s"], r["random_episodes_per_s"] = steps_per_second(args.seconds)
    print("timing scripted-expert grasp episodes...", flush=True)
    r["expert_episodes_per_s"], r["expert_success"], r["expert_episodes"] = \
        expert_episodes_per_second(args.seconds)
    print("timing SubprocVecEnv with 1 and 2 workers...", flush=True)
    r["vec1_steps_per_s"] = vec_steps_per_second(1, args.seconds)
    r["vec2_steps_per_s"] = vec_steps_per_second(2, args.seconds)
    print(f"memory over {args.resets} resets...", flush=True)
    r["memory"] = memory_over_resets(args.resets)

    if args.peer_python:
        print("timing peers...", flush=True)
        kuka = run_peer(args.peer_python, "bench_kuka.py", max(args.seconds, 30))
        m = re.search(r"kuka_diverse: ([\d.]+) steps/s ([\d.]+) episodes/s", kuka)
        r["kuka_steps_per_s"], r["kuka_episodes_per_s"] = float(m.group(1)), float(m.group(2))
        panda = run_peer(args.peer_python, "bench_panda_gym.py", args.seconds)
        states = re.findall(r"render=(\w+): ([\d.]+) steps/s", panda)
        r["panda_gym_state_steps_per_s"] = float(dict(states)["False"])
        r["panda_gym_render_steps_per_s"] = float(dict(states)["True"])

    cores = os.cpu_count()
    print(f"\n## Benchmark ({cores} cores, 64x64 RGB, full randomization, one process)\n")
    print("| measure | sim2real PandaGrasp-v0 | peer | ratio |")
    print("|---|---|---|---|")
    kuka_s, kuka_e = r.get("kuka_steps_per_s"), r.get("kuka_episodes_per_s")
    pg = r.get("panda_gym_render_steps_per_s")

    def ratio(a, b):
        return f"{a / b:.1f}x" if b else "n/a"

    print(f"| env steps/s, random actions | {r['steps_per_s']:.0f} | panda-gym PickAndPlace + 64x64 render: "
          f"{pg if pg else 'n/a'} | {ratio(r['steps_per_s'], pg)} |")
    print(f"| env steps/s, random actions | {r['steps_per_s']:.0f} | KukaDiverseObjectEnv 64x64: "
          f"{kuka_s if kuka_s else 'n/a'} | {ratio(r['steps_per_s'], kuka_s)} |")
    print(f"| full grasp episodes/s (scripted expert, planning included) | {r['expert_episodes_per_s']:.2f} "
          f"| KukaDiverseObjectEnv episodes/s: {kuka_e if kuka_e else 'n/a'} | "
          f"{ratio(r['expert_episodes_per_s'], kuka_e)} |")
    print(f"| full episodes/s, random actions (50 steps unless lifted) | {r['random_episodes_per_s']:.2f} "
          f"| KukaDiverseObjectEnv episodes/s: {kuka_e if kuka_e else 'n/a'} | "
          f"{ratio(r['random_episodes_per_s'], kuka_e)} |")
    print(f"| SubprocVecEnv steps/s, 1 -> 2 workers | {r['vec1_steps_per_s']:.0f} -> {r['vec2_steps_per_s']:.0f} "
          f"| linear: 2.0x | {r['vec2_steps_per_s'] / r['vec1_steps_per_s']:.2f}x |")
    mem = r["memory"]
    marks = mem["rss_mb"]
    print(f"| RSS over {args.resets} resets (MB) | " + ", ".join(f"{k}: {v:.0f}" for k, v in marks.items())
          + f" | growth after reset {mem['warmup_resets']}: {mem['growth_after_warmup_mb']:+.1f} MB | |")
    print(f"\nexpert success during the episodes/s run: {r['expert_success']:.2f} over {r['expert_episodes']} episodes")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
