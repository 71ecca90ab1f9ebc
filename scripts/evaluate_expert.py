"""Success rate of the privileged scripted expert, with its 95% interval.

    python scripts/evaluate_expert.py --episodes 200 --objects heldout --randomization full

Episodes run back to back from one seed (the world is rebuilt with a new object pool every
``world_refresh`` episodes), from pixels-env resets so every randomization group is active.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import envs  # noqa: E402,F401  (registers the env ids)
from envs.expert import ScriptedExpert  # noqa: E402
from sim2real.stats import success_summary  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=200, help="number of episodes (default 200)")
    parser.add_argument("--objects", choices=("train", "heldout"), default="heldout", help="object split")
    parser.add_argument("--randomization", default="full", help="preset: none, light or full")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first reset")
    parser.add_argument("--no-plan", action="store_true", help="naive expert: no rehearsal in simulation")
    parser.add_argument("--json", type=Path, help="also write the result to this JSON file")
    args = parser.parse_args()
    if args.episodes <= 0:
        parser.error(f"--episodes must be positive, got {args.episodes}")

    env = gym.make("PandaGrasp-v0", image_size=64, objects=args.objects, randomization=args.randomization)
    expert = ScriptedExpert(env, plan=not args.no_plan)
    successes = steps = 0
    start = time.time()
    bar = tqdm(range(args.episodes), desc="expert episodes", unit="ep")
    env.reset(seed=args.seed)
    for episode in bar:
        if episode:
            env.reset()
        expert.reset()
        while True:
            _, _, terminated, truncated, info = env.step(expert.act())
            steps += 1
            if terminated or truncated:
                break
        successes += int(info["is_success"])
        bar.set_postfix(success=f"{successes / (episode + 1):.3f}")
    result = {"expert": "naive" if args.no_plan else "planning", "objects": args.objects,
              "randomization": args.randomization, "seed": args.seed,
              **success_summary(successes, args.episodes),
              "mean_steps": steps / args.episodes, "wall_time_s": time.time() - start}
    lo, hi = result["ci95"]
    print(f"expert ({result['expert']}) on {args.objects} objects, randomization={args.randomization}: "
          f"success {result['success_rate']:.3f} over {args.episodes} episodes "
          f"(95% CI {lo:.3f}-{hi:.3f}), {result['mean_steps']:.1f} steps/episode, "
          f"{result['wall_time_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
