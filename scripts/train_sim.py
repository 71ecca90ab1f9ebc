"""Learn to grasp in simulation from pixels: expert demonstrations, encoder pretraining, behaviour
cloning, DAgger (and optionally SB3 PPO/SAC), then evaluation on held-out objects.

    python scripts/train_sim.py                       # default preset, ~11 min on a 2-core CPU
    python scripts/train_sim.py --preset smoke        # whole pipeline in about a minute
    python scripts/train_sim.py --camera my_cam.yaml  # train with your calibrated camera
    python scripts/train_sim.py --out runs/x --resume # continue an interrupted run
    python scripts/train_sim.py --out runs/ablation --set control=direct --set bc.steps=400 \
        --data-from runs/default-dagger-seed0        # an ablation on the same collected data

The run directory (``--out``) gets config.json, encoder.pt, policy.pt, metrics.json,
learning_curve.png, rollout.gif and the collected data in the episode format (data/).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    from policies.train import ALGOS, PRESETS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default", help=f"one of {', '.join(PRESETS)} (default: default)")
    p.add_argument("--algo", default="dagger", help=f"one of {', '.join(ALGOS)}: dagger = BC then DAgger "
                   "(default); bc = BC only; ppo / sac = SB3 RL on the pretrained encoder, warm-started")
    p.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    p.add_argument("--out", type=Path, help="run directory (default runs/<preset>-<algo>-seed<seed>)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="rollout worker processes (default: min(2, CPUs))")
    p.add_argument("--camera", type=Path, help="ROS camera_info YAML of your camera, with its pose in the "
                   "robot base frame (see README, Camera); default: the built-in camera")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the preset (JSON value; dotted keys for nested settings, "
                   "e.g. bc.steps=400, encoder.width=24, control=direct); repeatable; saved in config.json")
    p.add_argument("--data-from", type=Path, metavar="RUN_DIR",
                   help="reuse the expert demonstrations and views another run collected with the same "
                   "collection settings (ablations of the learning stages on identical data)")
    args = p.parse_args(argv)
    if args.preset not in PRESETS:
        p.error(f"--preset: unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    if args.algo not in ALGOS:
        p.error(f"--algo: unknown algorithm {args.algo!r}; choose one of {', '.join(ALGOS)}")
    if args.workers < 1:
        p.error(f"--workers: must be at least 1, got {args.workers}")
    if args.camera is not None and not args.camera.is_file():
        p.error(f"--camera: no such file {args.camera}")
    out = args.out or Path("runs") / f"{args.preset}-{args.algo}-seed{args.seed}"

    import torch

    from policies.train import TrainConfig, Trainer, apply_overrides, reuse_collected, start_run
    from sim2real.runs import RunError

    # One process per machine by default; OMP_NUM_THREADS (if set) wins, e.g. for two runs side by side.
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, os.cpu_count() or 1))
    try:
        if args.camera is not None:
            from envs.camera import Camera, distortion_warning
            Camera.from_camera_info(args.camera)  # fail now, naming the file, not in a worker later
            if warning := distortion_warning(args.camera):
                print(f"WARNING {warning}", file=sys.stderr)
        cfg = TrainConfig.preset_config(args.preset, algo=args.algo, seed=args.seed, workers=args.workers,
                                        camera=str(args.camera) if args.camera else None)
        if args.set:
            cfg = apply_overrides(cfg, args.set)
        cfg, run = start_run(cfg, out, overwrite=args.overwrite, resume=args.resume)
        if args.data_from is not None:
            copied = reuse_collected(run, cfg, args.data_from)
            print(f"reusing {', '.join(copied) or 'nothing'} from {args.data_from}")
    except (RunError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"run directory: {run.path}  (preset {cfg.preset}, algo {cfg.algo}, seed {cfg.seed}, "
          f"{cfg.workers} workers{', resuming' if args.resume else ''})")
    try:
        metrics = Trainer(cfg, run).run_all()
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished stages are kept. Continue with: python scripts/train_sim.py "
              f"--out {run.path} --resume", file=sys.stderr)
        return 130
    held, train = metrics["eval"].get("heldout_objects"), metrics["eval"].get("train_objects")
    for name, m in (("held-out objects", held), ("training objects", train)):
        if m:
            print(f"{name}: {m['success_rate']:.1%} success over {m['episodes']} episodes "
                  f"(95% CI {m['ci95'][0]:.1%}-{m['ci95'][1]:.1%})")
    print(f"wall time {metrics['wall_time_s']:.0f} s; results in {run.path}/metrics.json, learning_curve.png, "
          f"rollout.gif")
    return 0


if __name__ == "__main__":
    sys.exit(main())
