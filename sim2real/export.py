"""Export a run's policy as one self-contained file: ``policy.onnx`` + ``policy.json``.

The ONNX graph goes from the raw camera image (uint8 (N, S, S, 3) RGB, already resized to S x S) and
proprio (float32 (N, 5)) to the action (float32 (N, 5) in [-1, 1]); scaling to [0, 1], the encoder's
normalization and (for servo control) the control law are inside. ``policy.json`` holds the input and
output spec with units, the action scale and control rate, the camera the policy expects, package
versions and the sha256 of the ONNX file; ``sim2real.runtime`` refuses a file that does not match it.

The exporter is pinned: the TorchScript-based ``torch.onnx.export(..., dynamo=False)`` at opset
``OPSET`` (recent torch switched its default to the dynamo exporter, whose graphs differ). Every export
is checked: onnxruntime and torch must agree to ``PARITY_TOL`` on a batch of images, or export fails.
"""

from __future__ import annotations

import json
import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from envs.robot import MAX_OPENING
from policies.policy import GraspPolicy
from sim2real.runtime import FORMAT, sha256

VERSION = 1
OPSET = 17
PARITY_TOL = 1e-5


class ExportError(RuntimeError):
    """Export failed (the message says why); nothing half-written is left behind."""


class _RawPolicy(nn.Module):
    """uint8 (N, S, S, 3) image + proprio -> action: the policy with its preprocessing inside."""

    def __init__(self, policy: GraspPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, image: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        return self.policy(x, proprio)


def parity_batch(run_dir: Path | None, image_size: int, n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images and proprio to compare torch and onnxruntime on: rows of the run's collected data when it
    kept some (real observations of the task), else seeded synthetic images and workspace proprio."""
    rng = np.random.default_rng(seed)
    data = run_dir / "data" if run_dir is not None else None
    if data is not None and data.is_dir():
        from sim2real.data.episodes import DatasetError, read_dataset

        for sub in sorted(p for p in data.iterdir() if p.is_dir()):
            try:
                ds = read_dataset(sub, image_size=image_size, load_alt=False)
            except DatasetError:
                continue
            idx = rng.choice(len(ds), min(n, len(ds)), replace=False)
            proprio = np.nan_to_num(ds.proprio[idx]).astype(np.float32)
            return ds.images[idx], proprio
    images = rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8)
    proprio = np.column_stack([rng.uniform(0.4, 0.7, n), rng.uniform(-0.15, 0.15, n), rng.uniform(0.02, 0.3, n),
                               rng.uniform(-1.5, 1.5, n), rng.uniform(0.0, 0.08, n)]).astype(np.float32)
    return images, proprio


def export_policy(run_dir: str | Path, out_dir: str | Path | None = None, control_hz: float | None = None,
                  log=print, observations: tuple[np.ndarray, np.ndarray] | None = None,
                  torchscript: bool = False) -> dict[str, Any]:
    """Export ``run_dir/policy.pt`` to ``out_dir`` (default: the run directory). Returns policy.json's
    content. Raises ExportError (with the reason) when the parity check fails. ``observations``:
    (images uint8 (N, S, S, 3), proprio (N, 5)) for the parity check, e.g. the real images an adapted
    run was trained on; default ``parity_batch`` (the run's own data, else synthetic). ``torchscript``:
    also write ``policy.ts`` (``torch.jit.trace`` of the same graph, parity-checked the same way; for
    C++ / libtorch controllers), named with its sha256 in policy.json."""
    import onnxruntime as ort

    from envs.config import EnvConfig
    from policies.encoders import PROPRIO_OFFSET, PROPRIO_SCALE
    from policies.policy import MAX_ROTATION, MAX_TRANSLATION
    from sim2real.runs import atomic_write_bytes, atomic_write_json, environment_info

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    policy_path = run_dir / "policy.pt"
    if not policy_path.is_file():
        raise ExportError(f"{run_dir}: no policy.pt (not a finished run directory)")
    policy = GraspPolicy.load(policy_path)
    size = policy.spec.image_size
    config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
    wrapper = _RawPolicy(policy).eval()
    images, proprio = observations if observations is not None else parity_batch(run_dir, size)

    import io

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (pinned, see the module docstring); torch >= 2.9
        # warns that it is no longer the default.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(wrapper, (torch.from_numpy(images[:2]), torch.from_numpy(proprio[:2])), buf,
                          input_names=["image", "proprio"], output_names=["action"], opset_version=OPSET,
                          dynamic_axes={"image": {0: "batch"}, "proprio": {0: "batch"}, "action": {0: "batch"}},
                          dynamo=False)
    model = buf.getvalue()
    # Parity before anything is written.
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    onnx_out = session.run(["action"], {"image": images, "proprio": proprio})[0]
    with torch.no_grad():
        torch_out = wrapper(torch.from_numpy(images), torch.from_numpy(proprio)).numpy()
    err = np.abs(onnx_out - torch_out)
    if not err.max() <= PARITY_TOL:
        rows = np.flatnonzero(err.max(axis=1) > PARITY_TOL).tolist()
        raise ExportError(f"parity check failed: onnxruntime and torch differ by up to {err.max():.2e} "
                          f"(> {PARITY_TOL:.0e}) on rows {rows[:10]} of {len(images)}; nothing was written")
    script = None
    if torchscript:
        with torch.no_grad():
            script = torch.jit.trace(wrapper, (torch.from_numpy(images[:2]), torch.from_numpy(proprio[:2])))
            traced = script(torch.from_numpy(images), torch.from_numpy(proprio)).numpy()
            ts_err = float(np.abs(traced - torch_out).max())
        if not ts_err <= PARITY_TOL:
            raise ExportError(f"TorchScript parity check failed: traced and eager torch differ by {ts_err:.2e} "
                              f"(> {PARITY_TOL:.0e}); nothing was written")
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "policy.onnx"
    atomic_write_bytes(onnx_path, model)
    env = EnvConfig()
    train = config.get("train", {})
    spec = {
        "format": FORMAT, "version": VERSION, "onnx": onnx_path.name, "sha256": sha256(onnx_path),
        "inputs": {
            "image": {"dtype": "uint8", "shape": ["batch", size, size, 3], "layout": "NHWC, RGB",
                      "preprocessing": f"resize the camera image to {size}x{size} (cv2.INTER_AREA) outside the "
                                       f"graph; scaling and normalization are inside"},
            "proprio": {"dtype": "float32", "shape": ["batch", 5],
                        "fields": ["ee_x", "ee_y", "ee_z", "ee_yaw", "gripper"],
                        "units": "m, m, m (robot base frame), rad, m (opening)",
                        "normalization_inside": {"offset": list(PROPRIO_OFFSET), "scale": list(PROPRIO_SCALE)}}},
        "outputs": {"action": {"dtype": "float32", "shape": ["batch", 5], "range": [-1.0, 1.0],
                               "fields": ["dx", "dy", "dz", "dyaw", "gripper"],
                               "meaning": "end-effector delta in the base frame per control step: "
                                          "dx, dy, dz x max_translation_m, dyaw x max_rotation_rad; "
                                          "gripper: target opening (g + 1) / 2 x gripper.max_opening_m "
                                          "(+1 open, -1 closed)"}},
        "action_scale": {"max_translation_m": MAX_TRANSLATION, "max_rotation_rad": MAX_ROTATION},
        "gripper": {"max_opening_m": MAX_OPENING},
        "control_hz": float(control_hz or env.control_hz),
        "control": policy.control,
        # The servo law's constants are baked into the graph; stated here so a controller author
        # can see what the policy does near the object (m, rad; ``policies.policy.ServoLaw``).
        "servo_law": policy.servo.to_dict() if policy.control == "servo" else None,
        "camera": policy.spec.camera,
        "source_run": str(run_dir), "adapted": "adapt" in config, "seed": train.get("seed"),
        "exporter": {"api": "torch.onnx.export(dynamo=False)", "opset": OPSET, "parity_max_abs_err": float(err.max()),
                     "parity_rows": int(len(images))},
        "versions": {**environment_info().get("versions", {}), "python": platform.python_version(),
                     "onnxruntime": ort.__version__},
    }
    if script is not None:
        ts_buf = io.BytesIO()
        torch.jit.save(script, ts_buf)
        atomic_write_bytes(out_dir / "policy.ts", ts_buf.getvalue())
        spec["torchscript"] = {"file": "policy.ts", "sha256": sha256(out_dir / "policy.ts"),
                               "api": "torch.jit.trace", "parity_max_abs_err": ts_err}
    atomic_write_json(out_dir / "policy.json", spec)
    log(f"wrote {onnx_path} ({len(model) / 1024:.0f} kB) and policy.json; parity max |diff| {err.max():.1e} "
        f"on {len(images)} observations")
    return spec
