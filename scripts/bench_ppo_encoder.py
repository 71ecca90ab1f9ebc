"""Does the sim-pretrained encoder help RL? SB3 PPO from pixels with the pretrained encoder versus a
randomly initialised one, at an equal env-step budget, evaluated on held-out objects under full
randomization (success with a 95% Wilson interval, dense return with a 95% t interval).

    python scripts/bench_ppo_encoder.py --encoder runs/default-dagger-seed0/encoder.pt --steps 30000

Arms: ``pretrained-frozen`` (features extraction: the encoder is fixed, PPO trains the heads),
``pretrained-finetune``, ``random`` (the usual from-scratch PPO: encoder trained by PPO) and
``random-frozen`` (a fixed random encoder: what the frozen arm would be without pretraining).

Actors (``--actor``): ``mlp`` (SB3's usual Gaussian MLP head on the fused features) or ``servo``
(the student's structure: the grasp head's estimate through the fixed servo law,
``policies.rl.make_servo_ppo``). With ``servo`` the pretrained arms start from the run's
``pretrained_policy.pt`` (encoder + grasp head after pretraining on privileged sim labels, before any
imitation) and the random arms from the same architecture freshly initialised.

    python scripts/bench_ppo_encoder.py --encoder runs/x/encoder.pt --actor servo --steps 10000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ARMS = ("pretrained-frozen", "pretrained-finetune", "random", "random-frozen")


def evaluate(model, episodes: int, seed: int, env_kwargs: dict) -> dict:
    import gymnasium as gym
    import numpy as np

    import envs  # noqa: F401
    from sim2real.stats import success_summary

    env = gym.make("PandaGrasp-v0", reward="dense", **env_kwargs)
    successes, returns = 0, []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, term, trunc, info = env.step(action)
            total += r
            done = term or trunc
        successes += int(info["is_success"])
        returns.append(total)
    env.close()
    r = np.array(returns)
    half = 1.96 * r.std(ddof=1) / math.sqrt(len(r)) if len(r) > 1 else float("nan")
    return {**success_summary(successes, episodes), "mean_return": float(r.mean()),
            "return_ci95": [float(r.mean() - half), float(r.mean() + half)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", type=Path, default=Path("runs/default-dagger-seed0/encoder.pt"),
                   help="pretrained encoder.pt from a train_sim.py run")
    p.add_argument("--steps", type=int, default=30000, help="PPO env steps per arm (default 30000)")
    p.add_argument("--eval-episodes", type=int, default=100, help="evaluation episodes per arm (default 100)")
    p.add_argument("--arms", nargs="+", default=["pretrained-frozen", "random"], choices=ARMS)
    p.add_argument("--actor", choices=("mlp", "servo"), default="mlp")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="env processes for PPO")
    p.add_argument("--json", type=Path, help="also write results here")
    args = p.parse_args(argv)
    if not args.encoder.is_file():
        p.error(f"--encoder: no such file {args.encoder} (train one with scripts/train_sim.py)")
    if args.steps < 1 or args.eval_episodes < 1:
        p.error("--steps and --eval-episodes must be positive")

    import torch

    from policies.encoders import Encoder, load_encoder
    from policies.policy import GraspPolicy
    from policies.rl import make_env, make_model, make_servo_ppo

    pretrained_policy = args.encoder.parent / "pretrained_policy.pt"
    if args.actor == "servo" and not pretrained_policy.is_file():
        p.error(f"--actor servo: needs {pretrained_policy} next to the encoder (a train_sim.py run)")

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    train_kw = {"image_size": 64, "randomization": "full", "objects": "train"}
    eval_kw = {"image_size": 64, "randomization": "full", "objects": "heldout"}
    results = {}
    for arm in args.arms:
        torch.manual_seed(args.seed)
        pretrained = load_encoder(args.encoder)
        encoder = pretrained if arm.startswith("pretrained") else Encoder(pretrained.spec)
        env = make_env(train_kw, workers=args.workers, seed=args.seed)
        t0 = time.time()
        try:
            if args.actor == "servo":
                given = GraspPolicy.load(pretrained_policy)
                start = given if arm.startswith("pretrained") else \
                    GraspPolicy(pretrained.spec, control="servo", grasp_modes=given.grasp_head.modes,
                                geometry=given.geometry is not None, servo=given.servo)
                model = make_servo_ppo(env, start, freeze=arm.endswith("frozen"), seed=args.seed)
            else:
                model = make_model("ppo", env, encoder=encoder, freeze=arm.endswith("frozen"), seed=args.seed)
            model.learn(total_timesteps=args.steps, progress_bar=True)
        finally:
            env.close()
        train_s = time.time() - t0
        res = evaluate(model, args.eval_episodes, 50_000 + args.seed, eval_kw)
        res.update(train_s=round(train_s, 1), env_steps=args.steps, actor=args.actor)
        results[arm] = res
        print(f"{arm}: success {res['success_rate']:.1%} ({res['episodes']} ep, CI {res['ci95'][0]:.1%}-"
              f"{res['ci95'][1]:.1%}), return {res['mean_return']:.2f}, {train_s:.0f} s", flush=True)
    print("\n| PPO arm | env steps | held-out success (95% CI) | mean dense return (95% CI) |\n|---|---|---|---|")
    for arm, r in results.items():
        print(f"| {arm} | {r['env_steps']} | {r['success_rate']:.1%} ({r['ci95'][0]:.1%}–{r['ci95'][1]:.1%}), "
              f"n={r['episodes']} | {r['mean_return']:.2f} ({r['return_ci95'][0]:.2f}–{r['return_ci95'][1]:.2f}) |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
