"""``GraspPolicy``: the deployable pixel policy, image + proprio -> action.

Input: image uint8 (N, S, S, 3) RGB (or float (N, 3, S, S) in [0, 1]) and proprio float32 (N, 5)
(end effector x, y, z in m and yaw in rad in the base frame, gripper opening in m).
Output: action (N, 5) in [-1, 1] following the env's action contract: dx, dy, dz, dyaw from a tanh
head and the gripper from a logit (open when p(open) > 0.5, i.e. +1 / -1).

The same network carries two auxiliary heads used for encoder pretraining and as regularizers:
``object`` (target object position in the base frame and grasp yaw as cos 2psi, sin 2psi, from the
image alone) and ``outcome`` (logit that the episode ends in a grasp, from image + proprio). They are
never part of an exported policy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from policies.encoders import Encoder, EncoderSpec, Fusion, images_to_tensor

# Normalization of the object-position regression target (m, base frame).
OBJECT_OFFSET = (0.55, 0.0, 0.05)
OBJECT_SCALE = (0.15, 0.15, 0.05)


def mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, out))


class GraspPolicy(nn.Module):
    def __init__(self, spec: EncoderSpec | None = None, hidden: int = 256) -> None:
        super().__init__()
        self.fusion = Fusion(Encoder(spec or EncoderSpec()))
        self.hidden = hidden
        self.action_head = mlp(self.fusion.out_dim, hidden, 5)
        self.object_head = mlp(self.encoder.features_dim, hidden // 2, 5)
        self.outcome_head = mlp(self.fusion.out_dim, hidden // 2, 1)

    @property
    def encoder(self) -> Encoder:
        return self.fusion.encoder

    @property
    def spec(self) -> EncoderSpec:
        return self.encoder.spec

    def forward(self, image: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """Raw head output (N, 5): tanh-space movement pre-activations and the gripper logit."""
        return self.action_head(self.fusion(image, proprio))

    def heads(self, image: torch.Tensor, proprio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every head at once (training): action (N, 5) raw, object (N, 5), outcome (N,) logit."""
        feats = self.encoder(image)
        fused = self.fusion.combine(feats, proprio)
        return {"action": self.action_head(fused), "object": self.object_head(feats),
                "outcome": self.outcome_head(fused).squeeze(1), "features": feats}

    @staticmethod
    def to_action(raw: torch.Tensor) -> torch.Tensor:
        """Raw head output -> action in [-1, 1] (gripper thresholded to +-1)."""
        return torch.cat([torch.tanh(raw[:, :4]), torch.where(raw[:, 4:] > 0, 1.0, -1.0)], dim=1)

    @torch.no_grad()
    def act(self, image: np.ndarray, proprio: np.ndarray) -> np.ndarray:
        """One observation (image uint8 (S, S, 3), proprio (5,)) or a batch -> float32 action(s)."""
        single = image.ndim == 3
        if single:
            image, proprio = image[None], proprio[None]
        was_training = self.training
        self.eval()
        raw = self(images_to_tensor(image), torch.as_tensor(proprio, dtype=torch.float32))
        self.train(was_training)
        out = self.to_action(raw).numpy().astype(np.float32)
        return out[0] if single else out

    # -------------------------------------------------------------------- save / load
    def checkpoint(self, extra: dict | None = None) -> dict:
        return {"kind": "sim2real-policy", "spec": self.spec.to_dict(), "hidden": self.hidden,
                "state_dict": self.state_dict(), "extra": extra or {}}

    @classmethod
    def from_checkpoint(cls, blob: dict, where: str = "checkpoint") -> GraspPolicy:
        if not isinstance(blob, dict) or blob.get("kind") != "sim2real-policy":
            raise ValueError(f"{where}: not a sim2real policy checkpoint")
        policy = cls(EncoderSpec.from_dict(blob["spec"]), hidden=int(blob.get("hidden", 256)))
        policy.load_state_dict(blob["state_dict"])
        policy.eval()
        return policy

    def save(self, path, extra: dict | None = None) -> None:
        from sim2real.runs import atomic_torch_save

        atomic_torch_save(self.checkpoint(extra), path)

    @classmethod
    def load(cls, path) -> GraspPolicy:
        from sim2real.runs import safe_torch_load

        return cls.from_checkpoint(safe_torch_load(path), str(path))


def object_targets(obj: torch.Tensor, grasp: torch.Tensor) -> torch.Tensor:
    """Labels (N, 4) object x, y, z, yaw and (N, 4) grasp pose -> regression target (N, 5):
    normalized object position and the grasp yaw as (cos 2psi, sin 2psi) (a half turn is the same grasp)."""
    pos = (obj[:, :3] - torch.tensor(OBJECT_OFFSET)) / torch.tensor(OBJECT_SCALE)
    psi = grasp[:, 3]
    return torch.cat([pos, torch.cos(2 * psi)[:, None], torch.sin(2 * psi)[:, None]], dim=1)
