"""Export a trained or adapted run as one self-contained policy: policy.onnx + policy.json.

    python scripts/export_policy.py runs/default-dagger-seed0            # writes into the run directory
    python scripts/export_policy.py runs/adapted --out deploy/            # or elsewhere

The ONNX graph takes the raw uint8 camera image (resized to the policy's size) and proprio and returns
the action; policy.json holds the spec, units, scales, control rate, camera, versions and the ONNX
file's sha256. Export fails (exit status 2, nothing written) unless onnxruntime and torch agree to
1e-5 on a batch of the run's own observations. Run it with sim2real.runtime.OnnxPolicy (no torch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="run directory (scripts/train_sim.py or scripts/adapt_real.py)")
    p.add_argument("--out", type=Path, help="output folder (default: the run directory)")
    p.add_argument("--control-hz", type=float, help="control rate written to policy.json (default: the env's, 10)")
    p.add_argument("--torchscript", action="store_true",
                   help="also write policy.ts (TorchScript, for libtorch controllers), parity-checked")
    args = p.parse_args(argv)
    if args.control_hz is not None and not args.control_hz > 0:
        p.error(f"--control-hz: must be positive, got {args.control_hz}")

    from sim2real.export import ExportError, export_policy

    try:
        export_policy(args.run, args.out, control_hz=args.control_hz, torchscript=args.torchscript)
    except (ExportError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
