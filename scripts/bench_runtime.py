"""Latency of an exported policy on one CPU thread, through sim2real.runtime (onnxruntime, no torch),
next to the same policy in torch in the same run (machines are noisy: read the ratio).

    python scripts/bench_runtime.py runs/default-dagger-seed0 --steps 2000

Times one observation at a time (as a controller calls it), 64x64 image, after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _time(fn, steps: int) -> np.ndarray:
    for _ in range(min(50, steps)):
        fn()
    out = np.empty(steps)
    for k in range(steps):
        t0 = time.perf_counter()
        fn()
        out[k] = time.perf_counter() - t0
    return out * 1000.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", type=Path, help="folder with policy.onnx + policy.json (an exported run)")
    p.add_argument("--steps", type=int, default=2000)
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps: must be at least 1")

    from sim2real.runtime import OnnxPolicy, PolicyFileError

    try:
        runtime = OnnxPolicy(args.policy, threads=1)
    except PolicyFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (runtime.size, runtime.size, 3), dtype=np.uint8)
    proprio = np.array([0.55, 0.0, 0.2, 0.0, 0.08], np.float32)
    onnx_ms = _time(lambda: runtime.act(image, proprio), args.steps)
    result = {"onnxruntime_ms": {"median": float(np.median(onnx_ms)), "p99": float(np.percentile(onnx_ms, 99))},
              "steps": args.steps, "threads": 1}
    if (args.policy / "policy.pt").is_file():
        import torch

        from policies.policy import GraspPolicy

        torch.set_num_threads(1)
        policy = GraspPolicy.load(args.policy / "policy.pt")
        torch_ms = _time(lambda: policy.act(image, proprio), args.steps)
        result["torch_ms"] = {"median": float(np.median(torch_ms)), "p99": float(np.percentile(torch_ms, 99))}
        result["speedup_median"] = result["torch_ms"]["median"] / result["onnxruntime_ms"]["median"]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
