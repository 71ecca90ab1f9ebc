"""Transfer benchmark in the proxy-real domain: does adaptation with <= 200 real images recover the
policy's in-simulation success, and beat zero-shot and from-scratch?

    python scripts/bench_transfer.py --run runs/default-dagger-seed0 --episodes 100

1. records a real_grasps/-style dataset in the proxy-real domain (expert demonstrations,
   interventions and policy runs on training objects, every --every-th step; skipped with --data);
2. trains every strategy on it exactly as scripts/adapt_real.py does;
3. evaluates each adapted policy closed loop from pixels in the proxy-real domain on held-out
   objects (same seeds for all), next to the sim run's own in-simulation success.
Writes bench_transfer.json and bench_transfer.md into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="trained sim run")
    p.add_argument("--out", type=Path, default=Path("bench_transfer"), help="output folder (default bench_transfer/)")
    p.add_argument("--data", type=Path, help="an already recorded dataset (skips recording)")
    p.add_argument("--demos", type=int, default=5)
    p.add_argument("--interventions", type=int, default=12)
    p.add_argument("--policy-runs", type=int, default=3)
    p.add_argument("--every", type=int, default=3)
    p.add_argument("--episodes", type=int, default=100, help="closed-loop episodes per policy (default 100)")
    p.add_argument("--sim-episodes", type=int, default=0,
                   help="also evaluate each policy in simulation (forgetting, closed loop); default 0 = off")
    p.add_argument("--strategies", default="zero_shot,probe,partial,full,gradual,l2sp,adabn,dann,coral,scratch")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from policies.policy import GraspPolicy
    from policies.rollout import RolloutPool
    from policies.train import evaluate_policy, run_settings
    from sim2real.data.formats import load_real
    from sim2real.data.record import record_proxy_real
    from sim2real.runs import RunDir
    from sim2real.transfer.adapt import AdaptConfig, compare_strategies, sim_arrays, split_real

    args.out.mkdir(parents=True, exist_ok=True)
    run = RunDir(args.run)
    config = run.read_json("config.json")
    train_cfg = config["train"]
    size = int(train_cfg["image_size"])
    sim_policy = GraspPolicy.load(args.run / "policy.pt")
    camera = sim_policy.spec.camera
    data = args.data
    t0 = time.perf_counter()
    if data is None:
        data = args.out / "real_grasps"
        if not (data / "dataset.json").exists():
            print(json.dumps(record_proxy_real(data, args.run, args.demos, args.policy_runs, objects="train",
                                               every=args.every, interventions=args.interventions)))
    ds = load_real(data, image_size=size)
    cfg = AdaptConfig(compare=tuple(args.strategies.split(",")), steps=args.steps, budgets=(), seed=args.seed)
    real = split_real(ds, size, ds.meta.get("camera") or camera, cfg.val_fraction, cfg.seed)
    source = sim_arrays(args.run, cfg.sim_rows, size, camera, cfg.seed)
    results, policies = compare_strategies(sim_policy, real, cfg, source)
    adapt_s = time.perf_counter() - t0
    in_sim = (run.read_json("metrics.json") or {}).get("eval", {}).get("heldout_objects")
    out = {"run": str(args.run), "data": str(data), "images": len(ds), "labelled": int(real.labelled.sum()),
           "train_rows": int(len(real.train)), "val_rows": int(len(real.val)), "in_sim": in_sim,
           "record_and_adapt_s": adapt_s, "strategies": {}}
    proxy_settings, sim_settings = run_settings(config, "proxy_real"), run_settings(config)
    with RolloutPool(args.workers) as pool:
        for name, policy in policies.items():
            m = evaluate_policy(policy, proxy_settings, pool, args.episodes, 0, seed=1000, domain="proxy_real")
            row = {"proxy_real": m["eval"]["heldout_objects"], "val": results[name]["val"]}
            if args.sim_episodes:
                row["sim"] = evaluate_policy(policy, sim_settings, pool, args.sim_episodes, 0,
                                             seed=1000)["eval"]["heldout_objects"]
            out["strategies"][name] = row
            r = row["proxy_real"]
            print(f"{name:<10} proxy-real {r['success_rate']:.1%} ({r['ci95'][0]:.1%}-{r['ci95'][1]:.1%}, "
                  f"n={r['episodes']})" + (f"  sim {row['sim']['success_rate']:.1%}" if "sim" in row else ""),
                  flush=True)
    out["wall_time_s"] = time.perf_counter() - t0
    (args.out / "bench_transfer.json").write_text(json.dumps(out, indent=2))
    lines = ["| strategy | proxy-real success (95% CI, n) | ratio to in-sim | held-out grasp error, cm |",
             "|---|---|---|---|"]
    for name, row in out["strategies"].items():
        r = row["proxy_real"]
        ratio = f"{r['success_rate'] / in_sim['success_rate']:.2f}" if in_sim and in_sim["success_rate"] else "n/a"
        lines.append(f"| {name} | {r['success_rate']:.1%} ({r['ci95'][0]:.1%}-{r['ci95'][1]:.1%}, {r['episodes']}) | "
                     f"{ratio} | {row['val']['xy_err_cm']:.2f} |")
    (args.out / "bench_transfer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
