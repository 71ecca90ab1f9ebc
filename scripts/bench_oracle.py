"""What limits a trained servo policy: closed-loop success on the same episodes with parts of what
it acts on replaced by the simulator's truth (``policies.diagnosis``, "oracle attribution").

    python scripts/bench_oracle.py runs/default-dagger-seed0 --episodes 100
    python scripts/bench_oracle.py RUN --law expert            # the same under the expert's constants
    python scripts/bench_oracle.py RUN --rows ,xy,xy+holding   # chosen rows ("" = as deployed)

Rows: the student as deployed; with the true horizontal grasp offset (xy), yaw still to turn (yaw),
grasp height (height); with the expert's finger contacts deciding when the hand holds something
(holding); combinations; and the scripted expert itself. Every row runs the same seeds on held-out
objects under the run's evaluation randomization, so differences are paired. A row far above the
deployed student names what to improve; the gap between the all-true row and the expert is the
control law's own.

Writes ``<out>/oracle.json`` and ``oracle.png`` (default out: ``RUN/oracle-<law>[-<domain>]``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_WORKER: dict = {}


def _init(run: str, law: str, objects: str, domain: str) -> None:
    import gymnasium as gym
    import torch

    import envs  # noqa: F401  (registers the env ids)
    from envs.expert import ScriptedExpert
    from policies.policy import GraspPolicy, ServoLaw
    from policies.train import eval_env_kwargs, run_settings

    torch.set_num_threads(1)
    policy = GraspPolicy.load(Path(run) / "policy.pt")
    if law == "expert":
        policy.servo = ServoLaw.expert()
    config = run_settings(json.loads((Path(run) / "config.json").read_text()), domain)
    kwargs = eval_env_kwargs(config, objects, domain)
    kwargs["image_size"] = policy.spec.image_size
    env = gym.make("PandaGrasp-v0", disable_env_checker=True, **kwargs)
    _WORKER.update(policy=policy, env=env, expert=ScriptedExpert(env))


def _chunk(job: tuple[str, list[int]]) -> tuple[str, list[bool]]:
    from policies.diagnosis import oracle_successes

    row, seeds = job
    return row, oracle_successes(_WORKER["env"], _WORKER["expert"], _WORKER["policy"], seeds, row)


def main(argv: list[str] | None = None) -> int:
    from envs.config import DOMAINS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="run directory of a servo policy (policy.pt and config.json)")
    p.add_argument("--episodes", type=int, default=100, help="episodes per row (default 100)")
    p.add_argument("--rows", default=None,
                   help="comma-separated rows: parts (xy, yaw, height, holding) joined by '+', '' for the "
                        "student as deployed, 'expert' (default: the standard set)")
    p.add_argument("--law", choices=("policy", "expert"), default="policy",
                   help="servo-law constants: the policy's own (default) or the expert's")
    p.add_argument("--objects", choices=("train", "heldout"), default="heldout", help="object split")
    p.add_argument("--domain", choices=DOMAINS, default="sim",
                   help="sim (default) or proxy_real: what limits the policy in the proxy-real target domain")
    p.add_argument("--seed", type=int, default=1000, help="seed of the first episode (default 1000)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    p.add_argument("--out", type=Path, default=None, help="output folder (default RUN/oracle-<law>[-<domain>])")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result in --out")
    args = p.parse_args(argv)
    if args.episodes <= 0:
        p.error(f"--episodes must be positive, got {args.episodes}")
    if args.workers <= 0:
        p.error(f"--workers must be positive, got {args.workers}")
    for name in ("policy.pt", "config.json"):
        if not (args.run / name).is_file():
            p.error(f"{args.run}: no {name} (not a run directory)")

    from tqdm import tqdm

    from policies.diagnosis import ORACLE_ROWS, oracle_label, parse_oracle_row, plot_oracle, result_dir
    from policies.policy import GraspPolicy, ServoLaw
    from sim2real.stats import success_summary

    rows = list(ORACLE_ROWS) if args.rows is None else [r.strip() for r in args.rows.split(",")]
    try:
        for r in rows:
            parse_oracle_row(r)
        policy = GraspPolicy.load(args.run / "policy.pt")
    except ValueError as e:
        p.error(str(e))
    if policy.control != "servo":
        p.error(f"{args.run}: a '{policy.control}' policy; oracle parts replace a servo policy's grasp estimate")
    out = args.out or result_dir(args.run, f"oracle-{args.law}", args.domain)
    if (out / "oracle.json").exists() and not args.overwrite:
        p.error(f"{out / 'oracle.json'} exists; pass --overwrite to replace it or choose another --out")

    seeds = list(range(args.seed, args.seed + args.episodes))
    size = max(1, -(-len(seeds) // (2 * args.workers)))  # a few chunks per worker keep both busy
    jobs = [(r, seeds[i:i + size]) for r in rows for i in range(0, len(seeds), size)]
    results: dict[str, list[bool]] = {r: [] for r in rows}
    bar = tqdm(total=len(rows) * len(seeds), desc="oracle rows", unit="ep")
    init = (str(args.run), args.law, args.objects, args.domain)
    with ProcessPoolExecutor(args.workers, initializer=_init, initargs=init) as pool:
        # Collected in submission order, so each row's successes come out in seed order.
        for fut in [pool.submit(_chunk, job) for job in jobs]:
            row, wins = fut.result()
            results[row].extend(wins)
            bar.update(len(wins))
    bar.close()

    table = [{"row": r, "label": oracle_label(r), **success_summary(sum(results[r]), len(results[r])),
              "successes": [int(w) for w in results[r]]} for r in rows]
    print(f"{args.run.name}, {args.law}'s law, {args.objects} objects, {args.domain}, seeds {seeds[0]}-{seeds[-1]}:")
    for t in table:
        lo, hi = t["ci95"]
        print(f"  {t['label']:<46} {t['success_rate']:6.1%}  ({lo:.1%}-{hi:.1%}, n = {t['episodes']})")
    out.mkdir(parents=True, exist_ok=True)
    law = ServoLaw.expert() if args.law == "expert" else policy.servo
    result = {"run": str(args.run), "law": args.law, "servo": law.to_dict(), "objects": args.objects,
              "domain": args.domain, "seed": args.seed, "episodes": args.episodes, "rows": table}
    (out / "oracle.json").write_text(json.dumps(result, indent=1))
    plot_oracle(result, out / "oracle.png",
                title=f"{args.run.name}: what limits it ({args.law}'s servo law, {args.domain})")
    print(f"results in {out / 'oracle.json'} and oracle.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
