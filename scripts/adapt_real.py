"""Adapt a sim-trained policy to your real camera with a small real dataset.

    python scripts/adapt_real.py --data real_grasps/                          # newest run in runs/
    python scripts/adapt_real.py --run runs/default-dagger-seed0 --data real_grasps/ --out runs/adapted
    python scripts/adapt_real.py --data my_lerobot_dataset/ --strategy full
    python scripts/adapt_real.py --data session.bag --format rosbag1 --image-topic /camera/color/image_raw
    python scripts/adapt_real.py --data real_grasps/ --camera-info real_camera.yaml   # re-calibrated camera

Formats (detected from marker files, --format overrides): native episode folder (dataset.json),
LeRobot v2.1/v3 (meta/info.json), rosbag2 (metadata.yaml, .db3, .mcap) and ROS 1 (.bag).
Every strategy (zero-shot, probe, partial, full, gradual, l2sp, adabn, dann, coral, scratch) is
trained on the same labelled rows and compared on a held-out split of episodes; --strategy auto picks
the best there, if it beats zero-shot by more than the split's noise (else zero-shot). With a
--camera-info that disagrees with the run's camera, the policy is first fine-tuned in simulation
seen through the real calibration (no real labels needed; by default three independent draws of it,
averaged: --sim-tune-draws).
The adapted run directory (default <run>-adapted) holds policy.pt, encoder.pt, the
exported policy.onnx + policy.json, config.json, metrics.json, report.md and report.png, and works
with scripts/evaluate.py.
Bad input stops before anything is written (exit status 2) unless --skip-bad.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _latest_run() -> Path | None:
    import json

    runs = [p.parent for p in Path("runs").glob("*/policy.pt")] if Path("runs").is_dir() else []

    def is_sim_run(r: Path) -> bool:
        try:
            return "adapt" not in json.loads((r / "config.json").read_text())
        except (OSError, ValueError):
            return False

    runs = [r for r in runs if is_sim_run(r)]
    return max(runs, key=lambda r: (r / "policy.pt").stat().st_mtime) if runs else None


def main(argv: list[str] | None = None) -> int:
    from sim2real.transfer.adapt import AdaptConfig
    from sim2real.transfer.strategies import STRATEGIES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="real data: a folder or a bag file")
    p.add_argument("--run", type=Path, help="sim run directory to adapt (default: the newest run in runs/)")
    p.add_argument("--out", type=Path, help="adapted run directory (default: <run>-adapted)")
    p.add_argument("--format", default="auto", choices=("auto", "native", "lerobot", "rosbag2", "rosbag1"))
    p.add_argument("--strategy", default="auto", help=f"auto (default) or one of {', '.join(STRATEGIES)}")
    p.add_argument("--compare", help="comma-separated strategies to compare (default: all)")
    p.add_argument("--steps", type=int, default=AdaptConfig.steps,
                   help=f"training steps per strategy (default {AdaptConfig.steps}; scratch trains twice as many)")
    p.add_argument("--max-samples", type=int, help="use at most this many labelled rows (train + held-out)")
    p.add_argument("--budgets", default="10,25,50,100",
                   help="data-efficiency curve: labelled training rows (comma-separated; '' to skip)")
    p.add_argument("--camera-info", type=Path, help="ROS camera_info YAML of the real camera, with its pose in the "
                   "base frame (compared with the camera the run was trained with; when they disagree the policy "
                   "is first fine-tuned in simulation seen through it, about 2 min per draw (--sim-tune-draws) on "
                   "2 cores)")
    p.add_argument("--sim-tune-draws", type=int, default=AdaptConfig.sim_tune_draws,
                   help="independent draws of the fine-tuning in simulation (with a --camera-info that disagrees "
                        "with the run's camera), averaged weight by weight (default: %(default)s; 1 for the "
                        "quickest run, about 4 min less)")
    p.add_argument("--sim-tune-source-weight", type=float, default=AdaptConfig.sim_tune_source_weight,
                   help="share of the run's untuned weights mixed back into the fine-tuning in simulation's "
                        "result, in [0, 1] (default: %(default)s; 0 for the draws' average alone)")
    p.add_argument("--no-sim-tune", action="store_true", help="do not fine-tune in simulation for a --camera-info "
                   "that disagrees with the run's camera (only report the difference)")
    p.add_argument("--image-topic", help="bags: the image topic; LeRobot: the image feature key")
    p.add_argument("--skip-bad", action="store_true", help="skip and report bad rows instead of stopping")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (kept aside until done)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=min(AdaptConfig.workers, os.cpu_count() or 1),
                   help="processes training strategies side by side, one torch thread each (default: "
                        f"{AdaptConfig.workers}, or the CPU count if smaller); the results do not depend on it")
    args = p.parse_args(argv)
    for name in ("steps", "workers", "sim_tune_draws"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(args, name)}")
    if not 0 <= args.sim_tune_source_weight <= 1:  # (NaN fails too)
        p.error(f"--sim-tune-source-weight: must be in [0, 1], got {args.sim_tune_source_weight}")
    try:
        budgets = tuple(int(b) for b in args.budgets.split(",") if b.strip())
    except ValueError:
        p.error(f"--budgets: expected comma-separated integers, got {args.budgets!r}")
    run = args.run or _latest_run()
    if run is None:
        p.error("--run: no run given and none found in runs/; train one with scripts/train_sim.py")
    out = args.out or run.with_name(f"{run.name}-adapted")

    import torch

    from sim2real.data.episodes import DatasetError
    from sim2real.runs import RunError
    from sim2real.transfer.run import adapt_run

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    reader_options = {}
    if args.image_topic:
        fmt = args.format
        if fmt == "auto":
            from sim2real.data.formats import detect_format

            try:
                fmt = detect_format(args.data)
            except DatasetError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
        reader_options = {"image_key" if fmt == "lerobot" else "image_topic": args.image_topic}
    try:
        kwargs = {"strategy": args.strategy, "steps": args.steps, "max_samples": args.max_samples,
                  "budgets": budgets, "seed": args.seed, "sim_tune": not args.no_sim_tune, "workers": args.workers,
                  "sim_tune_draws": args.sim_tune_draws, "sim_tune_source_weight": args.sim_tune_source_weight}
        if args.compare:
            kwargs["compare"] = tuple(s.strip() for s in args.compare.split(",") if s.strip())
        cfg = AdaptConfig(**kwargs)
    except ValueError as e:
        p.error(str(e))
    try:
        adapt_run(run, args.data, out, cfg, fmt=args.format, camera_info=args.camera_info, skip_bad=args.skip_bad,
                  overwrite=args.overwrite, reader_options=reader_options)
    except (DatasetError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
