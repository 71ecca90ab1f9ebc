"""Training speed of one fit step, channels-last (NHWC, the default) against PyTorch's NCHW, on a
run's own data, alternating the two layouts in one process (machines are noisy: read the ratio).

    python scripts/bench_fit.py runs/default-dagger-seed0 --steps 100 --rounds 6

Each round fits ``--steps`` behaviour-cloning steps (the run's ``bc`` settings: batch, losses,
augmentation) once in each layout, from the run's pretrained policy, the order swapped every
round so a machine that speeds up or slows down during the run favours neither. Prints the median
milliseconds per step of each layout and the NCHW / NHWC ratio of every round.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a training run directory (config.json, data/expert, pretrained_policy.pt)")
    p.add_argument("--steps", type=int, default=100, help="fit steps per layout and round (default 100)")
    p.add_argument("--rounds", type=int, default=6, help="rounds, each fitting both layouts (default 6)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the CPU count)")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = p.parse_args(argv)
    for name in ("steps", "rounds", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name}: must be at least 1")
    config_path, data_dir = args.run / "config.json", args.run / "data" / "expert"
    policy_path = args.run / "pretrained_policy.pt"
    for path in (config_path, data_dir, policy_path):
        if not path.exists():
            print(f"error: {args.run}: not a training run with its data ({path.name} is missing)", file=sys.stderr)
            return 2

    import torch

    from policies.imitation import Buffer, fit
    from policies.policy import GraspPolicy
    from policies.train import TrainConfig
    from sim2real.data.episodes import read_dataset
    from sim2real.runs import RunDir, RunError

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    try:  # a corrupt config.json or checkpoint is named, not a traceback
        config = RunDir(args.run).read_json("config.json")
        if not isinstance(config, dict) or "train" not in config:
            raise RunError(f"{config_path}: no training settings (\"train\"); not a training run")
        cfg = TrainConfig.from_dict(config["train"])
        policy = GraspPolicy.load(policy_path)
    except (RunError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fit_cfg = dataclasses.replace(cfg.bc, steps=args.steps)
    buffer = Buffer()
    buffer.add_dataset(read_dataset(data_dir, image_size=cfg.image_size))
    fit(policy, buffer, dataclasses.replace(fit_cfg, steps=5), seed=0)  # warm-up (oneDNN primitives)
    ms: dict[str, list[float]] = {"nchw": [], "nhwc": []}
    for r in range(args.rounds):
        for layout in ("nchw", "nhwc") if r % 2 == 0 else ("nhwc", "nchw"):
            t0 = time.perf_counter()
            fit(policy, buffer, fit_cfg, seed=r, layout=layout)
            ms[layout].append((time.perf_counter() - t0) / args.steps * 1000.0)
        print(f"round {r + 1}/{args.rounds}: NCHW {ms['nchw'][-1]:.1f} ms/step, NHWC {ms['nhwc'][-1]:.1f} ms/step",
              flush=True)
    ratios = [a / b for a, b in zip(ms["nchw"], ms["nhwc"], strict=True)]
    result = {"run": str(args.run), "threads": threads, "batch": fit_cfg.batch, "steps": args.steps,
              "rounds": args.rounds, "rows": len(buffer),
              "ms_per_step": {k: {"median": float(np.median(v)), "rounds": [round(x, 2) for x in v]}
                              for k, v in ms.items()},
              "ratio_nchw_over_nhwc": {"median": float(np.median(ratios)), "rounds": [round(x, 3) for x in ratios]}}
    print(f"NCHW {result['ms_per_step']['nchw']['median']:.1f} ms/step, NHWC "
          f"{result['ms_per_step']['nhwc']['median']:.1f} ms/step (medians over {args.rounds} rounds, batch "
          f"{fit_cfg.batch}, {threads} threads): NHWC is {result['ratio_nchw_over_nhwc']['median']:.2f}x as fast "
          f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
