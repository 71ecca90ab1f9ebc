"""Vision encoders in plain torch, and their SB3 features-extractor adapter.

An encoder maps a float image batch (N, 3, H, W) in [0, 1] to features (N, features_dim). The
per-channel normalization it expects lives *inside* it (buffers ``mean`` and ``std``), so a saved
encoder carries its input spec with it and export needs no outside preprocessing beyond resize.

Architectures (``ENCODERS``):
    "cnn"     (default) four 3x3 conv layers, 64 -> 16 px, BatchNorm, then spatial-softmax keypoints
              (where things are) concatenated with global average pooling (what is there).
    "resnet"  a deeper residual net: stem + three stages of two basic blocks (32, 64, 128 channels),
              same keypoint + pooling head.
Both expose ``blocks`` (input to output) so transfer can freeze or fine-tune the top k of them.
BatchNorm is deliberate: re-estimating its statistics on target images is AdaBN.

The first ``spec.keypoints`` keypoint maps are *named* (``KEYPOINTS``: the grasp point, then the
gripper) and can be supervised with the pixels where the simulator projects those points
(``Encoder.encode`` returns the maps' logits for that loss). Their image coordinates are also
appended verbatim to the features, so a policy head sees "where the object is relative to the
gripper" without having to dig it out of a mixed projection. Both nets downsample by
``STRIDE`` = 4, so the maps are (S/4) x (S/4).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from envs.config import check_int

ENCODERS = ("cnn", "resnet")
KEYPOINTS = ("grasp_point", "gripper")
GRASP_CHOICES = ("nearest_object", "distance")  # GraspPointPrior
STRIDE = 4  # input pixels per keypoint-map cell (both architectures)


@dataclass
class EncoderSpec:
    """What an encoder is and what it expects.

    arch: one of ``ENCODERS``; image_size: side of the square RGB input, pixels (resize outside);
    features_dim: output width; mean, std: per-channel RGB normalization applied inside to [0, 1]
    inputs; width: channel multiplier; keypoints: how many of ``KEYPOINTS`` are named (supervisable)
    keypoint maps whose coordinates are appended to the features (0 = none); camera: the nominal
    camera the encoder was trained with (``Camera.to_dict()``), which turns on the grasp-point
    prior (see ``GraspPointPrior``); None = no prior; grasp_choice: how that prior picks the object
    to grasp, one of ``GRASP_CHOICES`` (encoders saved before the field existed used "distance").
    """

    arch: str = "cnn"
    image_size: int = 64
    features_dim: int = 128
    width: int = 16
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    keypoints: int = 2
    camera: dict | None = None
    grasp_choice: str = "nearest_object"

    def __post_init__(self) -> None:
        if self.arch not in ENCODERS:
            raise ValueError(f"encoder arch: must be one of {ENCODERS}, got {self.arch!r}")
        if self.grasp_choice not in GRASP_CHOICES:
            raise ValueError(f"encoder grasp_choice: must be one of {GRASP_CHOICES}, got {self.grasp_choice!r}")
        for name in ("image_size", "features_dim", "width"):
            check_int(f"encoder {name}", getattr(self, name), 1)
        if not isinstance(self.keypoints, int) or not 0 <= self.keypoints <= len(KEYPOINTS):
            raise ValueError(f"encoder keypoints: must be an integer in 0..{len(KEYPOINTS)}, got {self.keypoints!r}")
        if self.features_dim <= 2 * self.keypoints:
            raise ValueError(f"encoder features_dim: must exceed 2 x keypoints, got {self.features_dim}")
        if self.image_size % 16:
            raise ValueError(f"encoder image_size: must be a multiple of 16, got {self.image_size}")
        self.mean, self.std = tuple(map(float, self.mean)), tuple(map(float, self.std))
        if self.camera is not None:
            from envs.camera import Camera

            try:
                Camera.from_dict(self.camera)
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"encoder camera: not a camera description ({e})") from None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EncoderSpec:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"encoder spec: unknown fields {sorted(unknown)}")
        return cls(**{"grasp_choice": "distance", **data})  # saved before the field: the old choice


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x), inplace=True)


class SpatialSoftmax(nn.Module):
    """Per channel, the expected (x, y) image coordinate in [-1, 1] under a softmax over pixels:
    (N, C, H, W) -> (N, 2C). A learned temperature sharpens it."""

    def __init__(self) -> None:
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the per-channel distribution over pixels (N, C, H*W) that ``forward`` averages."""
        return torch.log_softmax(x.flatten(2) / self.log_temperature.exp(), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
        p = torch.softmax(x.reshape(n, c, h * w) / self.log_temperature.exp(), dim=-1).reshape(n, c, h, w)
        ex = (p.sum(dim=2) * xs).sum(dim=-1)
        ey = (p.sum(dim=3) * ys).sum(dim=-1)
        return torch.cat([ex, ey], dim=1)


class GraspPointPrior(nn.Module):
    """Which object to grasp, made local: the expert grasps the object nearest the gripper
    (horizontally), and this turns the grasp-point map's own logits (its *evidence*, what the image
    alone says) into the map of that choice, given the gripper's position.

    Each map cell's centre is back-projected through the nominal camera onto the plane
    ``PRIOR_PLANE_Z`` (m, base frame), which gives its horizontal distance to the gripper. Two ways:

    "nearest_object" (default): the evidence is a per-cell object detector (sigmoid p_i = "an object
        is here", trained towards every object of the scene, ``policies.imitation.objects_loss``)
        and the map is the log-probability that a cell holds the *nearest* object: log p_i plus
        log(1 - p_j) over every cell j nearer the gripper by more than ``NEAREST_MARGIN``. A lone
        object is the nearest however far it is; another object in front of it takes its place.
        (The margin keeps an object's own cells from shadowing each other, which would pull the
        estimate to its near edge.)
    "distance": the evidence plus a penalty alpha x squared distance (alpha 1/m^2, learned,
        log-parametrized). A far lone object then loses to any weak evidence near the gripper: in
        the default student's one-object failures the map's peak went to tray edges near the hand
        (README, "The horizontal estimate").
    """

    def __init__(self, camera: dict, image_size: int, choice: str = "nearest_object") -> None:
        super().__init__()
        from envs.camera import Camera

        if choice not in GRASP_CHOICES:
            raise ValueError(f"grasp choice: must be one of {GRASP_CHOICES}, got {choice!r}")
        cam = Camera.from_dict(camera).with_image_size(image_size, image_size)
        i, n = cam.intrinsics, image_size // STRIDE
        centres = (np.arange(n) + 0.5) * STRIDE  # continuous pixel coordinates of cell centres
        u, v = np.meshgrid(centres, centres)  # (n, n), row = v
        rays = np.stack([(u - i.cx) / i.fx, (v - i.cy) / i.fy, np.ones_like(u)], axis=-1) @ cam.rotation.T
        origin = np.asarray(cam.position)
        # Rays that never reach the plane (above the horizon) get a far-away point: no object there.
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (PRIOR_PLANE_Z - origin[2]) / rays[..., 2]
        xy = origin[:2] + s[..., None] * rays[..., :2]
        xy[~(s > 0)] = 10.0
        self.side, self.choice = n, choice
        self.register_buffer("cell_xy", torch.tensor(xy.reshape(-1, 2), dtype=torch.float32))
        if choice == "distance":
            self.log_alpha = nn.Parameter(torch.tensor(float(np.log(300.0))))

    def forward(self, evidence: torch.Tensor, proprio: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        """Evidence logits (N, n, n), raw proprio (N, 5) and the keypoint softmax temperature ->
        the grasp-point map's logits (N, 1, n, n)."""
        d2 = ((self.cell_xy[None] - proprio[:, None, :2]) ** 2).sum(dim=-1)  # (N, n*n), m^2
        if self.choice == "distance":
            return evidence[:, None] - (self.log_alpha.exp() * d2).reshape(-1, 1, self.side, self.side)
        e = evidence.flatten(1)
        log_nearest = F.logsigmoid(e) + self.shadow(d2.sqrt(), F.logsigmoid(-e))
        # Times the temperature, which the map's softmax divides by: it is then the distribution itself.
        return (temperature * log_nearest).reshape(-1, 1, self.side, self.side)

    @staticmethod
    def shadow(d: torch.Tensor, log_miss: torch.Tensor) -> torch.Tensor:
        """Per cell i, the sum of ``log_miss`` (N, M) over the cells j with d_j < d_i - margin
        (``d`` (N, M): each cell's distance to the gripper, m).

        Sorted by distance, that is a prefix sum read where ``searchsorted`` puts d_i - margin:
        O(M log M) per row: 2.5-4 ms forward and backward for a batch of 128 against 26 ms for the
        pairwise (N, M, M) "nearer than" matrix it replaced. ONNX has no searchsorted, so the export
        (batch 1, where M x M is cheap) keeps the matrix; ``tests/test_encoders.py`` checks that the
        two agree."""
        if torch.onnx.is_in_onnx_export():
            nearer = (d[:, None, :] < d[:, :, None] - NEAREST_MARGIN).to(log_miss.dtype)  # (N, i, j): j nearer than i
            return torch.bmm(nearer, log_miss[..., None])[..., 0]
        d_sorted, order = d.sort(dim=1)
        prefix = F.pad(log_miss.gather(1, order).cumsum(dim=1), (1, 0))  # prefix[k]: the k nearest cells
        return prefix.gather(1, torch.searchsorted(d_sorted, (d - NEAREST_MARGIN).contiguous()))


NEAREST_MARGIN = 0.03  # m: cells nearer the gripper by less than this do not hide a cell (about an object's radius)
PRIOR_PLANE_Z = 0.03  # m: about where grasp points are (tray floor at 0.01 m plus half a small object)


class Encoder(nn.Module):
    """Image (N, 3, S, S) float in [0, 1] -> features (N, features_dim). See the module docstring."""

    def __init__(self, spec: EncoderSpec | None = None) -> None:
        super().__init__()
        self.spec = spec = spec or EncoderSpec()
        w = spec.width
        if spec.arch == "cnn":
            self.blocks = nn.ModuleList([conv_bn(3, w, 2), conv_bn(w, w, 2), conv_bn(w, 2 * w), conv_bn(2 * w, 2 * w)])
            channels = 2 * w
        else:
            self.blocks = nn.ModuleList([
                conv_bn(3, w, 2),
                nn.Sequential(BasicBlock(w, w), BasicBlock(w, w)),
                nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w)),
                nn.Sequential(BasicBlock(2 * w, 4 * w), BasicBlock(4 * w, 4 * w)),
            ])
            channels = 4 * w
        # Keypoint maps are a linear read-out of the last features (no ReLU), so a softmax over
        # pixels can become peaked where a detector fires; one keypoint = two coordinates.
        self.keypoint_maps = nn.Conv2d(channels, channels, 1)
        self.keypoints = SpatialSoftmax()
        head_dim = spec.features_dim - 2 * spec.keypoints
        self.head = nn.Sequential(nn.Linear(3 * channels, head_dim), nn.LayerNorm(head_dim), nn.ReLU(inplace=True))
        self.prior = (GraspPointPrior(spec.camera, spec.image_size, spec.grasp_choice)
                      if spec.camera and spec.keypoints else None)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))

    @property
    def features_dim(self) -> int:
        return self.spec.features_dim

    def feature_map(self, image: torch.Tensor) -> torch.Tensor:
        x = (image - self.mean) / self.std
        for block in self.blocks:
            x = block(x)
        return x

    def encode(self, image: torch.Tensor, proprio: torch.Tensor | None = None,
               with_evidence: bool = False) -> tuple[torch.Tensor, ...]:
        """Features (N, features_dim) and the keypoint-map logits (N, C, S/4, S/4); the first
        ``spec.keypoints`` maps are the named ones. With raw ``proprio`` (N, 5) and a camera in
        the spec, the grasp-point map goes through the prior (``GraspPointPrior``).
        ``with_evidence`` also returns the grasp-point map's logits before the prior (N, S/4, S/4):
        what the image alone says."""
        x = self.feature_map(image)
        logits = self.keypoint_maps(x)
        evidence = logits[:, 0]
        if self.prior is not None and proprio is not None:
            chosen = self.prior(evidence, proprio, self.keypoints.log_temperature.exp())
            logits = torch.cat([chosen, logits[:, 1:]], dim=1)
        points = self.keypoints(logits)  # (N, 2C): all x, then all y
        c, k = logits.shape[1], self.spec.keypoints
        named = torch.cat([points[:, :k], points[:, c:c + k]], dim=1)
        feats = torch.cat([self.head(torch.cat([points, x.mean(dim=(2, 3))], dim=1)), named], dim=1)
        return (feats, logits, evidence) if with_evidence else (feats, logits)

    def forward(self, image: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(image, proprio)[0]


# --------------------------------------------------------------------------- proprio
# Fixed affine normalization of proprio (x, y, z m; yaw rad; opening m) to roughly [-1, 1] over the
# workspace: part of the policy's input spec, written into policy.json at export.
PROPRIO_OFFSET = (0.55, 0.0, 0.15, 0.0, 0.04)
PROPRIO_SCALE = (0.2, 0.2, 0.12, 1.57, 0.04)


class ProprioNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("offset", torch.tensor(PROPRIO_OFFSET))
        self.register_buffer("scale", torch.tensor(PROPRIO_SCALE))

    def forward(self, proprio: torch.Tensor) -> torch.Tensor:
        return (proprio - self.offset) / self.scale


class Fusion(nn.Module):
    """Image features and normalized proprio -> one vector (N, encoder dim + 64)."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.proprio_norm = ProprioNorm()
        self.proprio = nn.Sequential(nn.Linear(5, 64), nn.ReLU(inplace=True))
        self.out_dim = encoder.features_dim + 64

    def forward(self, image: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        return self.combine(self.encoder(image, proprio), proprio)

    def combine(self, features: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """Already computed image features (N, encoder dim) and raw proprio -> the fused vector."""
        return torch.cat([features, self.proprio(self.proprio_norm(proprio))], dim=1)


# ----------------------------------------------------------------------- save / load
def save_encoder(path, encoder: Encoder, extra: dict | None = None) -> None:
    """Save the encoder alone: weights + spec (+ optional provenance). Atomic."""
    from sim2real.runs import atomic_torch_save

    atomic_torch_save({"kind": "sim2real-encoder", "spec": encoder.spec.to_dict(),
                       "state_dict": encoder.state_dict(), "extra": extra or {}}, path)


def load_encoder(path) -> Encoder:
    """Load an encoder saved by ``save_encoder`` (no code executed: ``weights_only=True``)."""
    from sim2real.runs import safe_torch_load

    blob = safe_torch_load(path)
    if not isinstance(blob, dict) or blob.get("kind") != "sim2real-encoder":
        raise ValueError(f"{path}: not a sim2real encoder checkpoint")
    encoder = Encoder(EncoderSpec.from_dict(blob["spec"]))
    encoder.load_state_dict(blob["state_dict"])
    return encoder


def images_to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> float (N, 3, H, W) in [0, 1]."""
    t = torch.as_tensor(images)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


# ------------------------------------------------------------------------------ SB3
try:
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
except ImportError:  # pragma: no cover - SB3 is a dependency
    BaseFeaturesExtractor = nn.Module


class GraspExtractor(BaseFeaturesExtractor):
    """SB3 features extractor for the ``{image, proprio}`` observation.

    Use with ``policy_kwargs=dict(features_extractor_class=GraspExtractor,
    features_extractor_kwargs=dict(encoder=..., freeze=...))``. SB3 hands it images already
    transposed to (N, 3, H, W) and scaled to [0, 1].

    Args:
        encoder: path to a saved encoder, an ``Encoder``, an ``EncoderSpec`` or None (random "cnn").
        freeze: keep the encoder's weights and BatchNorm statistics fixed (feature extraction).
    """

    def __init__(self, observation_space, encoder=None, freeze: bool = False) -> None:
        if isinstance(encoder, Encoder):
            enc = encoder
        elif isinstance(encoder, EncoderSpec) or encoder is None:
            size = observation_space["image"].shape[-2]
            enc = Encoder(encoder or EncoderSpec(image_size=size))
        else:
            enc = load_encoder(encoder)
        fusion = Fusion(enc)
        super().__init__(observation_space, fusion.out_dim)
        self.fusion = fusion
        self.freeze = freeze
        # SB3's ActorCriticPolicy re-initialises every Linear/Conv2d of its features extractor
        # (orthogonal init) *after* building it, which would silently replace a pretrained encoder by a
        # random one: keep its weights so ``restore_pretrained`` can put them back.
        self.pretrained_encoder = None if encoder is None or isinstance(encoder, EncoderSpec) else \
            {k: v.detach().clone() for k, v in enc.state_dict().items()}
        if freeze:
            for p in enc.parameters():
                p.requires_grad_(False)

    def restore_pretrained(self) -> None:
        """Put the pretrained encoder weights back (after SB3's orthogonal initialisation)."""
        if self.pretrained_encoder is not None:
            self.fusion.encoder.load_state_dict(self.pretrained_encoder)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.fusion.encoder.eval()  # frozen BatchNorm statistics too
        return self

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        image = observations["image"]
        if image.shape[1] != 3 and image.shape[-1] == 3:  # channel-last (no VecTransposeImage)
            image = image.permute(0, 3, 1, 2)
        return self.fusion(image, observations["proprio"])
