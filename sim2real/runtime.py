"""Run an exported policy on the robot's computer: onnxruntime + numpy (+ OpenCV to resize), no torch.

    from sim2real.runtime import OnnxPolicy
    policy = OnnxPolicy("runs/adapted")            # the folder with policy.onnx + policy.json
    action = policy.act(camera_rgb, proprio)       # uint8 (H, W, 3) RGB, float (5,) -> float32 (5,)

Loading checks the ONNX file against the sha256 in policy.json and the graph's inputs and outputs
against the spec, and refuses a mismatched or tampered file (``PolicyFileError``). Every call checks
its inputs (``InputError``): wrong dtype, channel count or proprio shape, non-finite values.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

FORMAT = "sim2real-policy"


class PolicyFileError(ValueError):
    """policy.onnx / policy.json missing, unreadable, tampered with or inconsistent."""


class InputError(ValueError):
    """An observation that does not match the policy's input spec."""


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class OnnxPolicy:
    """An exported policy. ``threads``: onnxruntime intra-op threads (1 keeps latency predictable)."""

    def __init__(self, folder: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        spec_path = folder / "policy.json" if folder.is_dir() else folder
        folder = spec_path.parent
        try:
            self.spec = json.loads(spec_path.read_text())
        except FileNotFoundError:
            raise PolicyFileError(f"{spec_path}: missing (export the run with scripts/export_policy.py)") from None
        except json.JSONDecodeError as e:
            raise PolicyFileError(f"{spec_path}: not valid JSON ({e})") from None
        if self.spec.get("format") != FORMAT:
            raise PolicyFileError(f"{spec_path}: not a {FORMAT} spec (format={self.spec.get('format')!r})")
        onnx_path = folder / self.spec.get("onnx", "policy.onnx")
        if not onnx_path.is_file():
            raise PolicyFileError(f"{onnx_path}: missing")
        digest = sha256(onnx_path)
        if digest != self.spec.get("sha256"):
            raise PolicyFileError(f"{onnx_path}: sha256 {digest[:16]}... does not match policy.json "
                                  f"({str(self.spec.get('sha256'))[:16]}...): the file was changed or belongs to "
                                  f"another export; refusing to run it")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise PolicyFileError(f"{onnx_path}: onnxruntime cannot load it ({e})") from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        image_spec = self.spec["inputs"]["image"]
        self.size = int(image_spec["shape"][1])
        if set(inputs) != {"image", "proprio"} or inputs["image"].type != "tensor(uint8)" \
                or list(inputs["image"].shape[1:]) != [self.size, self.size, 3]:
            raise PolicyFileError(f"{onnx_path}: graph inputs {[(i.name, i.type, i.shape) for i in inputs.values()]} "
                                  f"do not match policy.json (image uint8 {self.size}x{self.size}x3, proprio)")
        self.control_hz = float(self.spec["control_hz"])
        self.action_scale = self.spec["action_scale"]

    def _image(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise InputError(f"image: expected uint8 RGB, got {image.dtype}")
        if image.ndim != 4 or image.shape[-1] != 3 or image.shape[1] < 8 or image.shape[2] < 8:
            raise InputError(f"image: expected (H, W, 3) RGB, got shape {image.shape[1:]}")
        if image.shape[1:3] != (self.size, self.size):
            import cv2

            image = np.stack([cv2.resize(im, (self.size, self.size), interpolation=cv2.INTER_AREA) for im in image])
        return np.ascontiguousarray(image)

    def act(self, image: np.ndarray, proprio: np.ndarray) -> np.ndarray:
        """One observation (uint8 (H, W, 3) RGB, any size: resized here; proprio (5,) in the units of
        policy.json) or a batch -> float32 action(s) (5,) / (N, 5) in [-1, 1]."""
        single = np.asarray(image).ndim == 3
        image = np.asarray(image)[None] if single else np.asarray(image)
        proprio = np.asarray(proprio, dtype=np.float32).reshape(-1, 5) if np.size(proprio) % 5 == 0 else None
        if proprio is None or len(proprio) != len(image):
            raise InputError(f"proprio: expected 5 values per image (ee_x, ee_y, ee_z, ee_yaw, gripper), got "
                             f"{np.shape(proprio)} for {len(image)} image(s)")
        if not np.isfinite(proprio).all():
            raise InputError(f"proprio: not finite: {proprio.tolist()}")
        action = self.session.run(["action"], {"image": self._image(image), "proprio": proprio})[0]
        return action[0] if single else action
