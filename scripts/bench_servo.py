"""How accurate must the grasp estimate be? Success of the servo control law on the expert's true
grasp plus a known horizontal error (``policies.sensitivity``), for each error kind and size.

    python scripts/bench_servo.py --episodes 60 --sizes 0,0.01,0.02,0.03 --out bench_servo/

"noise": a fresh N(0, size^2) per axis every step; "bias": one direction per episode, size m long.
Size 0 is the control law's own ceiling. The same seeds and error draws serve every setting (paired).
``--law expert`` runs the expert's constants instead of the student's (``policies.policy.ServoLaw``:
the student's wider funnel tolerates a wobbling estimate). Writes bench_servo.json (success, episodes
and 95% interval per setting, the law's constants) and bench_servo.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def sizes_arg(text: str) -> list[float]:
    try:
        sizes = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes: comma-separated metres, got {text!r}") from None
    if not sizes or any(not 0 <= s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--sizes: need values in [0, 1) m, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=60, help="episodes per setting (default 60)")
    p.add_argument("--sizes", type=sizes_arg, default=[0.0, 0.01, 0.02, 0.03],
                   help="error sizes, m (default 0,0.01,0.02,0.03)")
    p.add_argument("--kinds", default="noise,bias", help="error kinds: noise, bias or both (default)")
    p.add_argument("--objects", choices=("train", "heldout"), default="heldout", help="object split")
    p.add_argument("--randomization", default="full", help="preset: none, light or full (default full)")
    p.add_argument("--no-plan", action="store_true", help="the expert grasps the nearest object without rehearsal")
    p.add_argument("--law", choices=("student", "expert"), default="student",
                   help="servo-law constants: the student's (what trained policies act with, default) or "
                        "the expert's (policies.policy.ServoLaw)")
    p.add_argument("--seed", type=int, default=20000, help="seed of the first episode")
    p.add_argument("--out", type=Path, default=Path("bench_servo"), help="output folder (default bench_servo/)")
    args = p.parse_args(argv)
    if args.episodes <= 0:
        p.error(f"--episodes must be positive, got {args.episodes}")
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]

    import gymnasium as gym
    import numpy as np
    from tqdm import tqdm

    import envs  # noqa: F401  (registers the env ids)
    from envs.expert import ScriptedExpert
    from policies.policy import ServoLaw
    from policies.sensitivity import ERROR_KINDS, estimate_error, servo_episode
    from sim2real.stats import success_summary

    if bad := [k for k in kinds if k not in ERROR_KINDS]:
        p.error(f"--kinds: unknown {bad}, choose from {list(ERROR_KINDS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    env = gym.make("PandaGrasp-v0", image_size=64, objects=args.objects, randomization=args.randomization)
    expert = ScriptedExpert(env, plan=not args.no_plan)
    law = ServoLaw.student() if args.law == "student" else ServoLaw.expert()
    # Size 0 is the same for both kinds: run it once.
    settings = [("none", 0.0)] * (0.0 in args.sizes) + [(k, s) for k in kinds for s in args.sizes if s > 0]
    rows = []
    for kind, size in settings:
        wins = 0
        bar = tqdm(range(args.episodes), desc=f"{kind} {100 * size:.1f} cm", unit="ep", leave=False)
        for k in bar:
            # One generator per episode, the same for every setting: rows are paired draw by draw
            # (a bias row's direction, a noise row's per-step draws, only scaled by the size).
            rng = np.random.default_rng([args.seed, k])
            error = estimate_error("bias" if kind == "none" else kind, size, rng)
            wins += servo_episode(env, expert, error, seed=args.seed + k, servo=law)[0]
            bar.set_postfix(success=f"{wins}/{k + 1}")
        row = {"kind": kind, "size_m": size, **success_summary(wins, args.episodes)}
        rows.append(row)
        lo, hi = row["ci95"]
        print(f"{kind:>5} {100 * size:4.1f} cm: {wins}/{args.episodes} = {row['success_rate']:.3f} "
              f"(95% CI {lo:.3f}-{hi:.3f})", flush=True)
    result = {"objects": args.objects, "randomization": args.randomization, "plan": not args.no_plan,
              "seed": args.seed, "law": args.law, "servo": law.to_dict(), "rows": rows}
    (args.out / "bench_servo.json").write_text(json.dumps(result, indent=2))
    plot(rows, kinds, args.out / "bench_servo.png", args.law)
    print(f"results in {args.out / 'bench_servo.json'} and bench_servo.png")
    return 0


def plot(rows: list[dict], kinds: list[str], path: Path, law: str = "student") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    zero = [r for r in rows if r["kind"] == "none"]
    for kind in kinds:
        pts = sorted(zero + [r for r in rows if r["kind"] == kind], key=lambda r: r["size_m"])
        x = [100 * r["size_m"] for r in pts]
        y = [r["success_rate"] for r in pts]
        # (clamped: the Wilson bounds can sit a rounding error inside the rate at 0 and 1)
        err = [[max(0.0, r["success_rate"] - r["ci95"][0]) for r in pts],
               [max(0.0, r["ci95"][1] - r["success_rate"]) for r in pts]]
        label = "noise (fresh every step, per axis)" if kind == "noise" else "bias (fixed per episode)"
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
    ax.set_xlabel("error in the grasp estimate, cm")
    ax.set_ylabel("grasp success")
    ax.set_ylim(0, 1)
    ax.set_title(f"servo law ({law}'s constants) on the expert's grasp plus an error", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
