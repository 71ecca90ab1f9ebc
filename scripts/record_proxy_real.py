"""Record a ``real_grasps/``-style dataset in the proxy-real domain, the way you would on a robot:
demonstrations (the scripted expert stands in for a teleoperator), interventions and runs of your
trained policy,
saved in the native episode format with only what a real robot knows (image, proprio, executed
action, executed grasp pose, success).

    python scripts/record_proxy_real.py --run runs/default-dagger-seed0 --out real_grasps/
    python scripts/record_proxy_real.py --run RUN --out real_grasps/ --demos 5 --interventions 12 --policy-runs 3
    python scripts/record_proxy_real.py --run RUN --out real_grasps/ --rig-calibration rig.yaml  # + a re-calibration

Interventions (HG-DAgger style): the policy drives, the operator takes over after 3-15 steps and
finishes; the policy's own states then carry the executed grasp as their label.

The proxy-real domain (envs/proxy_real.py) renders with EGL, photographs from scikit-image, a
mis-mounted camera and a real-camera noise model: nothing the training randomization samples.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="trained run directory (its camera, image size, policy)")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    p.add_argument("--demos", type=int, default=5, help="expert demonstrations (default 5)")
    p.add_argument("--interventions", type=int, default=12,
                   help="policy episodes the operator takes over after 3-15 steps (default 12)")
    p.add_argument("--policy-runs", type=int, default=3, help="episodes driven by the run's policy alone (default 3)")
    p.add_argument("--every", type=int, default=3, help="keep every k-th step of an episode (default 3)")
    p.add_argument("--objects", choices=("train", "heldout"), default="train",
                   help="object split on the table (default train: evaluation uses held-out objects)")
    p.add_argument("--seed", type=int, default=50_000, help="first episode seed (default 50000)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--rig-calibration", type=Path, metavar="YAML",
                   help="also write the proxy-real rig's true camera_info (its pose in the base frame): what "
                        "re-calibrating the mis-mounted camera would give, for adapt_real.py --camera-info")
    args = p.parse_args(argv)
    for name in ("demos", "interventions", "policy_runs"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')}: must be >= 0")
    if args.every < 1:
        p.error("--every: must be >= 1")
    if args.demos + args.interventions + args.policy_runs == 0:
        p.error("nothing to record: --demos, --interventions and --policy-runs are all 0")
    if not (args.run / "config.json").is_file() or not (args.run / "policy.pt").is_file():
        print(f"error: {args.run}: not a finished run directory (needs config.json and policy.pt)", file=sys.stderr)
        return 2
    if args.out.exists() and any(args.out.iterdir()):
        if not args.overwrite:
            print(f"error: {args.out}: already exists; pass --overwrite to replace it", file=sys.stderr)
            return 2
        import shutil

        shutil.rmtree(args.out)

    from sim2real.data.record import record_proxy_real

    summary = record_proxy_real(args.out, args.run, args.demos, args.policy_runs, seed=args.seed,
                                objects=args.objects, every=args.every,
                                interventions=args.interventions)
    if args.rig_calibration is not None:
        from envs.proxy_real import ProxyRealDomain
        from policies.train import run_camera

        train = json.loads((args.run / "config.json").read_text())["train"]
        rig = ProxyRealDomain().camera(run_camera(train.get("camera")))
        rig.to_camera_info(args.rig_calibration, name="proxy_real_rig")
        summary["rig_calibration"] = str(args.rig_calibration)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
