"""Where does a servo policy's grasp estimate go wrong? Its horizontal estimate against the
scripted expert's grasp in every state of fresh episodes, binned by how far the grasp is from the
hand and how high the hand is (``policies.diagnosis``).

    python scripts/diagnose_estimate.py runs/default-dagger-seed0 --episodes 40
    python scripts/diagnose_estimate.py RUN --drive expert      # the states it was trained on

Prints a table (states, median true offset, |estimate| and error in cm, and the gain: 1 =
unbiased, 0 = "right here" however far the grasp is) and writes estimate_errors.json and
estimate_errors.png into --out (default RUN/diagnosis-<drive>/; an existing result is kept unless
--overwrite). Episodes are from pixels on held-out objects under the run's evaluation
randomization, like scripts/evaluate.py, but with their own seeds (default from 40000);
``--domain proxy_real`` runs them in the proxy-real target domain (RUN/diagnosis-<drive>-proxy_real/).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    from envs.config import DOMAINS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="run directory (with policy.pt and config.json)")
    p.add_argument("--episodes", type=int, default=40, help="episodes (default 40)")
    p.add_argument("--drive", choices=("student", "expert"), default="student",
                   help="who moves the hand: the policy (default) or the expert")
    p.add_argument("--objects", choices=("train", "heldout"), default="heldout", help="object split")
    p.add_argument("--domain", choices=DOMAINS, default="sim",
                   help="sim (default) or proxy_real: the proxy-real target domain (envs/proxy_real.py)")
    p.add_argument("--no-plan", action="store_true", help="label with the nearest object's grasp, no rehearsal")
    p.add_argument("--seed", type=int, default=40000, help="seed of the first episode")
    p.add_argument("--out", type=Path, default=None, help="output folder (default RUN/diagnosis-<drive>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result in --out")
    args = p.parse_args(argv)
    if args.episodes <= 0:
        p.error(f"--episodes must be positive, got {args.episodes}")
    for name in ("policy.pt", "config.json"):
        if not (args.run / name).is_file():
            p.error(f"{args.run}: no {name} (not a run directory)")
    from policies.diagnosis import result_dir

    out = args.out or result_dir(args.run, f"diagnosis-{args.drive}", args.domain)
    if (out / "estimate_errors.json").exists() and not args.overwrite:
        p.error(f"{out / 'estimate_errors.json'} exists; pass --overwrite to replace it or choose another --out")

    import gymnasium as gym
    from tqdm import tqdm

    import envs  # noqa: F401  (registers the env ids)
    from envs.expert import ScriptedExpert
    from policies.diagnosis import COLUMNS, error_table, estimate_rows, plot_rows
    from policies.policy import GraspPolicy
    from policies.train import eval_env_kwargs, run_settings
    from sim2real.stats import success_summary

    try:
        policy = GraspPolicy.load(args.run / "policy.pt")
        config = run_settings(json.loads((args.run / "config.json").read_text()), args.domain)
    except (ValueError, KeyError, OSError) as e:
        p.error(f"{args.run}: {e}")
    kwargs = eval_env_kwargs(config, args.objects, args.domain)
    kwargs["image_size"] = policy.spec.image_size
    env = gym.make("PandaGrasp-v0", disable_env_checker=True, **kwargs)
    expert = ScriptedExpert(env, plan=not args.no_plan)
    wins = 0
    bar = tqdm(total=args.episodes, desc=f"{args.drive} drives", unit="ep")

    def done(k: int, success: bool) -> None:
        nonlocal wins
        wins += success
        bar.update(1)
        bar.set_postfix(success=f"{wins}/{k + 1}")

    rows = estimate_rows(env, expert, policy, list(range(args.seed, args.seed + args.episodes)), args.drive, done)
    bar.close()
    env.close()
    table = error_table(rows)
    print(f"{args.drive} drives, {args.episodes} episodes on {args.objects} objects ({args.domain}): {wins} grasped; "
          f"{len(rows)} states with an expert grasp")
    print(f"{'hand':>5} {'offset cm':>10} {'states':>6} {'true':>6} {'|est|':>6} {'error':>6} {'gain':>5}")
    for r in table:
        lo, hi = r["offset_cm"]
        span = f"{lo:.0f}-{hi:.0f}" if hi is not None else f">= {lo:.0f}"
        print(f"{r['height']:>5} {span:>10} {r['states']:6d} {r['true_cm']:6.2f} {r['estimate_cm']:6.2f} "
              f"{r['error_cm']:6.2f} {r['gain']:5.2f}")
    out.mkdir(parents=True, exist_ok=True)
    result = {"run": str(args.run), "drive": args.drive, "objects": args.objects, "domain": args.domain,
              "plan": not args.no_plan, "seed": args.seed, "episodes": args.episodes,
              "grasped": success_summary(wins, args.episodes),
              "columns": list(COLUMNS), "table": table, "rows": rows.round(5).tolist()}
    (out / "estimate_errors.json").write_text(json.dumps(result))
    plot_rows(rows, out / "estimate_errors.png",
              title=f"{args.run.name}, {args.drive} drives, {args.objects} objects, {args.domain}")
    print(f"results in {out / 'estimate_errors.json'} and estimate_errors.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
