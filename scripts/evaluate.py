"""Re-evaluate a trained run exactly as training did: closed loop from pixels under the full
randomization preset, on held-out objects and on training objects, with 95% intervals.

    python scripts/evaluate.py runs/default-dagger-seed0 --episodes 200
    python scripts/evaluate.py runs/adapted --domain proxy_real     # in the proxy-real target domain
    python scripts/evaluate.py RUN --domain proxy_real --proxy-without camera   # less the rig's mount error

Works on sim runs and on adapted runs (``scripts/adapt_real.py``) alike. An adapted run that was
fine-tuned in simulation for a calibrated camera (``--camera-info``) is evaluated in simulation through
that calibration, the camera its geometry assumes; in the proxy-real domain the rig stays mounted off
the training camera, as it was recorded.
Writes ``<run>/eval-<episodes>ep-seed<seed>[-<domain>][-without-<parts>].json`` (``metrics.json`` is left
as training wrote it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="run directory written by scripts/train_sim.py")
    p.add_argument("--episodes", type=int, default=200, help="episodes on held-out objects (default 200)")
    p.add_argument("--train-episodes", type=int, help="episodes on training objects (default: --episodes)")
    p.add_argument("--seed", type=int, default=1000, help="evaluation seed (default 1000, what training used)")
    from envs.config import DOMAINS

    p.add_argument("--domain", choices=DOMAINS, default="sim",
                   help="sim (default) or proxy_real: the proxy-real target domain (envs/proxy_real.py)")
    from envs.config import PROXY_PARTS

    p.add_argument("--proxy-without", default="", metavar="PARTS",
                   help=f"proxy_real only: comma-separated parts of the domain to leave as in simulation "
                        f"({', '.join(PROXY_PARTS)}), to measure each one's share of the transfer gap")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    args = p.parse_args(argv)
    asked = {part.strip() for part in args.proxy_without.split(",") if part.strip()}
    unknown = sorted(asked - set(PROXY_PARTS))
    without = tuple(part for part in PROXY_PARTS if part in asked)  # one name per evaluation, whatever the order
    if unknown:
        p.error(f"--proxy-without: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PROXY_PARTS)}")
    if without and args.domain != "proxy_real":
        p.error("--proxy-without: only with --domain proxy_real")
    if args.episodes < 1:
        p.error(f"--episodes: must be at least 1, got {args.episodes}")
    if not (args.run / "config.json").is_file() or not (args.run / "policy.pt").is_file():
        print(f"error: {args.run}: not a finished run directory (needs config.json and policy.pt)", file=sys.stderr)
        return 2

    from policies.train import evaluate_run
    from sim2real.runs import RunError, atomic_write_json

    try:
        metrics = evaluate_run(args.run, args.episodes, args.train_episodes, args.workers, args.seed,
                               domain=args.domain, proxy_without=without)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    suffix = ("" if args.domain == "sim" else f"-{args.domain}") + ("-without-" + "-".join(without) if without else "")
    out = args.run / f"eval-{args.episodes}ep-seed{args.seed}{suffix}.json"
    atomic_write_json(out, metrics)
    camera = metrics["eval_protocol"]["camera"]
    if isinstance(camera, dict):  # an adapted run fine-tuned in simulation for a calibrated camera
        print(f"in simulation through the calibration it was fine-tuned for (camera at {camera['position']} m)")
    for name, m in metrics["eval"].items():
        print(f"{name}: {m['success_rate']:.1%} over {m['episodes']} episodes "
              f"(95% CI {m['ci95'][0]:.1%}-{m['ci95'][1]:.1%})")
    print(json.dumps({"written": str(out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
