"""Supervised training of ``GraspPolicy``: encoder pretraining, behaviour cloning and DAgger's
retraining all run through ``fit`` with different loss weights.

Losses (each averaged over the rows that have its label):
    action      BC: MSE between tanh(movement) and the expert's dx, dy, dz, dyaw, plus binary
                cross-entropy of the gripper logit against the expert's open/close command.
    grasp       where the expert's grasp is relative to the hand (Huber on the offset in 5 cm
                units, 1 cm quadratic zone, and on cos/sin of twice the yaw still to turn): what
                the servo control law acts on (see ``policies.policy``). A multi-hypothesis head
                is trained winner-takes-all (``grasp_loss``).
    object      privileged regression from the image alone (Huber): target object position
                (normalized; objects off the tray are ignored) and grasp yaw as (cos 2psi, sin 2psi).
    outcome     binary cross-entropy: does this episode end in a grasp?
    keypoints   where the named keypoint maps should peak: cross-entropy between each map's softmax
                and a Gaussian (sigma = 1 cell) around the pixel where the camera sees the grasp
                point / the gripper (projected with the dataset's nominal camera; rows whose point
                is outside the image are ignored). Dense, well-conditioned supervision of *where*
                things are, which base-frame regression alone learned far too slowly.
    objects     the grasp-point map's evidence (its logits before the prior) as a per-cell object
                detector: binary cross-entropy against "an object is here" at every object's
                recorded image point (``objects_loss``; encoders whose prior picks the nearest object).
    invariance  paired renders of one world state under two randomizations: 1 - cosine similarity
                of their encoder features.
Images are augmented (random shift, colour jitter) per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from envs.config import check_int, check_number, check_probability
from policies.augment import amplitude_spectra, augment, style_mix
from policies.encoders import KEYPOINTS, STRIDE, images_to_tensor
from policies.policy import GraspPolicy, grasp_targets, object_targets
from sim2real.data.episodes import MAX_OBJECT_POINTS, Dataset, Episode

FIELDS = ("images", "proprio", "expert_action", "object", "grasp", "success", "images_alt", "has_alt", "keypoints",
          "object_pixels")
LOSSES = ("action", "grasp", "object", "keypoints", "objects", "outcome", "invariance")
OBJECTS_SCALE = 10.0  # objects_loss: its per-row sum over map cells is divided by this
GRASP_HUBER_BETA = 0.2  # grasp-head units (5 cm): quadratic within 1 cm, linear beyond
WTA_SPREAD, WTA_CHOICE = 0.05, 0.5  # multi-hypothesis grasp head: see grasp_loss


@dataclass
class FitConfig:
    """One supervised training stage.

    steps: gradient steps; batch: batch size; lr: learning rate of the heads; encoder_lr: of the
    encoder (lower when it is pretrained); weights: loss weights by name (see module docstring);
    shift: random-shift pad, pixels; jitter: colour-jitter strength; weight_decay: AdamW;
    style / style_band: probability that a training image takes on a target camera's style, and the
    frequency band it comes from (``policies.augment.style_mix``; only with ``fit(style_images=...)``).
    """

    steps: int = 1000
    batch: int = 128
    lr: float = 1e-3
    encoder_lr: float = 1e-3
    weights: dict[str, float] = field(default_factory=lambda: {
        "action": 1.0, "grasp": 1.0, "keypoints": 0.5, "object": 0.5, "outcome": 0.1, "invariance": 0.1})
    shift: int = 4
    jitter: float = 0.2
    weight_decay: float = 1e-4
    style: float = 0.0
    style_band: int = 2

    def __post_init__(self) -> None:
        check_int("fit steps", self.steps, 0)
        check_int("fit style_band", self.style_band, 0)
        check_probability("fit style", self.style)
        check_int("fit batch", self.batch, 1)
        for name in ("lr", "encoder_lr"):
            # 0 is allowed: encoder_lr=0 fits the heads on a frozen encoder.
            check_number(f"fit {name}", getattr(self, name), non_negative=True)
        unknown = set(self.weights) - set(LOSSES)
        if unknown:
            raise ValueError(f"fit weights: unknown losses {sorted(unknown)}")

    def to_dict(self) -> dict:
        return asdict(self)


def keypoint_pixels(camera: dict | None, image_size: int, grasp: np.ndarray, proprio: np.ndarray) -> np.ndarray:
    """Pixel coordinates (N, len(KEYPOINTS), 2) in the policy's S x S image of the grasp point
    (grasp[:, :3], base frame, m) and of the gripper (proprio[:, :3]), seen by ``camera`` (a
    ``Camera.to_dict()``; its image is resized, not cropped, to S x S). NaN where unknown."""
    n = len(grasp)
    out = np.full((n, len(KEYPOINTS), 2), np.nan, np.float32)
    if camera is None or n == 0:
        return out
    from envs.camera import Camera

    cam = Camera.from_dict(camera).with_image_size(image_size, image_size)
    for k, points in enumerate((grasp[:, :3], proprio[:, :3])):
        ok = np.isfinite(points).all(axis=1)
        if ok.any():
            out[ok, k] = cam.project(points[ok].astype(np.float64))
    return out


def dataset_keypoints(ds) -> np.ndarray:
    """Keypoint targets (N, len(KEYPOINTS), 2), pixels of the dataset's (square) images: the
    recorded image points where a row has them (simulation: the frame's own randomized camera),
    else projected through the dataset's camera (``keypoint_pixels``)."""
    out = keypoint_pixels(ds.meta.get("camera"), ds.images.shape[1], ds.grasp, ds.proprio)
    recorded = recorded_pixels(ds.image_points, ds.images)
    ok = np.isfinite(recorded).all(axis=2)
    out[:, :2][ok] = recorded[ok]
    return out


def recorded_pixels(image_points: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Recorded image points (N, 2K: fractions u, v per point, e.g. the grasp point and the end
    effector) -> pixels (N, K, 2) of ``images`` (N, H, W, 3): u scales by the width, v by the height."""
    height, width = images.shape[1:3]
    return np.asarray(image_points, np.float32).reshape(len(images), -1, 2) * np.array([width, height], np.float32)


def object_pixels(object_points: np.ndarray | None, images: np.ndarray) -> np.ndarray:
    """Recorded object points (N, 2 x K fractions, or None) -> pixels (N, K, 2) of ``images``
    (NaN where unknown)."""
    if object_points is None:
        return np.full((len(images), MAX_OBJECT_POINTS, 2), np.nan, np.float32)
    return recorded_pixels(object_points, images)


class Buffer:
    """Aggregated training rows (DAgger's growing dataset) as flat numpy arrays."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {k: [] for k in FIELDS}
        self._cat: dict[str, np.ndarray] | None = None

    def add_episode(self, ep: Episode) -> None:
        n = len(ep)
        nan4 = np.full((n, 4), np.nan, np.float32)
        self.parts["images"].append(ep.images)
        self.parts["proprio"].append(ep.proprio)
        self.parts["expert_action"].append(ep.expert_action if ep.expert_action is not None
                                           else np.full((n, 5), np.nan, np.float32))
        self.parts["object"].append(ep.object if ep.object is not None else nan4)
        self.parts["grasp"].append(ep.grasp if ep.grasp is not None else nan4)
        self.parts["success"].append(np.full(n, np.nan if ep.success is None else float(ep.success), np.float32))
        alt = ep.images_alt if ep.images_alt is not None else np.zeros_like(ep.images)
        self.parts["images_alt"].append(alt)
        self.parts["has_alt"].append(ep.has_alt if ep.has_alt is not None else np.zeros(n, bool))
        kp = np.full((n, len(KEYPOINTS), 2), np.nan, np.float32)
        if ep.image_points is not None:  # recorded with the frame's own camera (fractions of the image)
            kp[:, :2] = recorded_pixels(ep.image_points, ep.images)
        self.parts["keypoints"].append(kp)
        self.parts["object_pixels"].append(object_pixels(ep.object_points, ep.images))
        self._cat = None

    def add_dataset(self, ds: Dataset) -> None:
        for name in FIELDS[:-2]:  # Dataset carries every field but the pixel targets under the same name
            self.parts[name].append(getattr(ds, name))
        self.parts["keypoints"].append(dataset_keypoints(ds))
        self.parts["object_pixels"].append(object_pixels(ds.object_points, ds.images))
        self._cat = None

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._cat is None:
            self._cat = {k: np.concatenate(v) for k, v in self.parts.items()}
            self.parts = {k: [v] for k, v in self._cat.items()}
        return self._cat

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts["images"])


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.float()
    return (x * m).sum() / m.sum().clamp(min=1.0)


def losses(policy: GraspPolicy, batch: dict[str, torch.Tensor], weights: dict[str, float]) -> dict[str, torch.Tensor]:
    """Per-name losses (scalars) for one batch; ``total`` is their weighted sum."""
    out = policy.heads(batch["images"], batch["proprio"])
    result: dict[str, torch.Tensor] = {}
    label = batch["expert_action"]
    if weights.get("action", 0) > 0:
        has = torch.isfinite(label).all(dim=1)
        lab = torch.nan_to_num(label)
        move = ((torch.tanh(out["action"][:, :4]) - lab[:, :4]) ** 2).mean(dim=1)
        grip = F.binary_cross_entropy_with_logits(out["action"][:, 4], (lab[:, 4] > 0).float(), reduction="none")
        result["action"] = _masked_mean(move + 0.5 * grip, has)
    if weights.get("grasp", 0) > 0:
        has = torch.isfinite(batch["grasp"]).all(dim=1) & torch.isfinite(batch["proprio"]).all(dim=1)
        target = grasp_targets(torch.nan_to_num(batch["grasp"]), torch.nan_to_num(batch["proprio"]))
        result["grasp"] = _masked_mean(grasp_loss(out["grasp_hypotheses"], out["grasp_logits"], target), has)
    if weights.get("object", 0) > 0:
        target = object_targets(torch.nan_to_num(batch["object"]), torch.nan_to_num(batch["grasp"]))
        # Only objects in view of the tray count: a student may knock one off the table, and its
        # far-away position would swamp the loss.
        has = (torch.isfinite(batch["object"]).all(dim=1) & torch.isfinite(batch["grasp"]).all(dim=1)
               & (target[:, :3].abs() < 3).all(dim=1))
        huber = F.smooth_l1_loss(out["object"], target, reduction="none", beta=0.5).mean(dim=1)
        result["object"] = _masked_mean(huber, has)
    if weights.get("keypoints", 0) > 0:
        result["keypoints"] = keypoint_loss(policy, out["keypoint_logits"], batch["keypoints"])
    prior = policy.encoder.prior
    if weights.get("objects", 0) > 0 and prior is not None and prior.choice == "nearest_object":
        # (Only there is the evidence a per-cell detector; under "distance" it is a softmax's logits.)
        result["objects"] = objects_loss(out["grasp_point_evidence"], batch["object_pixels"])
    if weights.get("outcome", 0) > 0:
        s = batch["success"]
        has = torch.isfinite(s)
        bce = F.binary_cross_entropy_with_logits(out["outcome"], torch.nan_to_num(s), reduction="none")
        result["outcome"] = _masked_mean(bce, has)
    if weights.get("invariance", 0) > 0 and bool(batch["has_alt"].any()):
        idx = batch["has_alt"].nonzero().squeeze(1)
        f_alt = policy.encoder(batch["images_alt"][idx], batch["proprio"][idx])
        cos = F.cosine_similarity(out["features"][idx], f_alt, dim=1)
        result["invariance"] = (1 - cos).mean()
    total = sum(weights.get(k, 0) * v for k, v in result.items())
    result["total"] = total if isinstance(total, torch.Tensor) else torch.zeros(())
    return result


def grasp_loss(hypotheses: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row grasp loss: Huber of the hypotheses (N, M, 5) against the target (N, 5).

    One hypothesis: plain Huber. Several: winner-takes-all - only the closest hypothesis learns
    the row (plus WTA_SPREAD of the others' mean, so none is left untrained), and the logits
    (N, M) learn which one was closest (cross-entropy, weight WTA_CHOICE)."""
    huber = F.smooth_l1_loss(hypotheses, target[:, None].expand_as(hypotheses), reduction="none",
                             beta=GRASP_HUBER_BETA).mean(dim=2)  # (N, M)
    if hypotheses.shape[1] == 1:
        return huber[:, 0]
    best = huber.detach().argmin(dim=1)
    won = huber.gather(1, best[:, None])[:, 0]
    return won + WTA_SPREAD * huber.mean(dim=1) + WTA_CHOICE * F.cross_entropy(logits, best, reduction="none")


def gaussian_targets(pixels: torch.Tensor, h: int, w: int, sigma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel points (N, K, 2) -> per-point target distributions over the (h, w) map cells
    (N, K, h*w), a Gaussian of ``sigma`` cells each, and which points are finite and in the map (N, K)."""
    # Map cell j is centred on input pixel STRIDE * j (+0.5 in continuous pixel coordinates).
    cells = (pixels - 0.5) / STRIDE
    valid = (torch.isfinite(cells).all(dim=2) & (cells[..., 0] > -0.5) & (cells[..., 0] < w - 0.5)
             & (cells[..., 1] > -0.5) & (cells[..., 1] < h - 0.5))
    cells = torch.nan_to_num(cells)
    xs = torch.arange(w, dtype=pixels.dtype).view(1, 1, 1, w)
    ys = torch.arange(h, dtype=pixels.dtype).view(1, 1, h, 1)
    d2 = (xs - cells[..., 0, None, None]) ** 2 + (ys - cells[..., 1, None, None]) ** 2
    return torch.softmax(-d2.flatten(2) / (2 * sigma**2), dim=-1), valid


def keypoint_loss(policy: GraspPolicy, logits: torch.Tensor, pixels: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Cross-entropy of the named keypoint maps (N, C, h, w) against Gaussians (sigma in cells)
    around ``pixels`` (N, K, 2), averaged over the finite in-image targets."""
    k = min(policy.spec.keypoints, pixels.shape[1])
    if k == 0:
        return logits.sum() * 0.0
    target, valid = gaussian_targets(pixels[:, :k].to(logits.dtype), *logits.shape[2:], sigma)
    logp = policy.encoder.keypoints.log_probs(logits[:, :k])
    ce = -(target * logp).sum(dim=-1)
    return _masked_mean(ce, valid)


def objects_loss(evidence: torch.Tensor, pixels: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Binary cross-entropy of the grasp-point map's evidence (N, h, w: its logits before the
    prior, a sigmoid per cell) against "an object is here": 1 at the cell of *every* object's point
    (``pixels`` (N, K, 2), NaN = none), falling off as a Gaussian of ``sigma`` cells, 0 elsewhere.
    Summed over cells, averaged over rows with at least one object in view (rows without recorded
    object points, e.g. real recordings, are unknown, not empty).

    Why: the grasp-point map trained only towards the expert's choice is told that the other
    objects of a scene are *not* grasp points, and which one is chosen depends on the gripper,
    which the map could only guess from the image (it learned to follow the hand). With every
    object a target, the evidence is a detector, and ``GraspPointPrior`` makes the choice."""
    target, valid = gaussian_targets(pixels.to(evidence.dtype), *evidence.shape[1:], sigma)
    peaked = target / target.amax(dim=-1, keepdim=True).clamp(min=1e-12)  # 1 at each point's own cell
    presence = (peaked * valid[..., None]).amax(dim=1)  # (N, h*w)
    bce = F.binary_cross_entropy_with_logits(evidence.flatten(1), presence, reduction="none").sum(dim=1)
    # / OBJECTS_SCALE: a sum over 256 cells, brought to the size of the other losses.
    return _masked_mean(bce / OBJECTS_SCALE, valid.any(dim=1))


@contextmanager
def channels_last(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Hold ``module``'s convolution weights in channels-last (NHWC) memory format inside the block
    and give them back in the default (NCHW) layout on exit, so checkpoints, export and the
    batch-of-one rollouts see the layout they always had. Feed it ``nhwc(batch)``.

    Why: oneDNN's convolutions on a CPU run faster in NHWC, and ``fit`` trains this way by default.
    ``python scripts/bench_fit.py RUN`` alternates the two layouts in one process: 169 against 159 ms
    per default training step on 2 threads, 1.07x (README, "Speed"). Only the memory layout changes,
    not the values: losses and gradients agree to float rounding (the convolutions sum in another
    order).
    """
    module.to(memory_format=torch.channels_last)
    try:
        yield module
    finally:
        module.to(memory_format=torch.contiguous_format)


def nhwc(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``batch`` with its image tensors (N, 3, S, S) laid out channels-last (see ``channels_last``)."""
    return {k: v.contiguous(memory_format=torch.channels_last) if k.startswith("images") else v
            for k, v in batch.items()}


def make_batch(arrays: dict[str, np.ndarray], idx: np.ndarray, cfg: FitConfig,
               generator: torch.Generator | None = None,
               spectra: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """A training batch of rows ``idx``: images augmented (N, 3, S, S), labels as float32 tensors,
    keypoint and object pixels moved with the random shift. ``spectra``: a target camera's amplitude
    spectra, whose style the images take on with probability ``cfg.style`` (``style_mix``), before
    the shift and jitter."""
    def styled(images: np.ndarray) -> torch.Tensor:
        return style_mix(images_to_tensor(images), spectra, cfg.style, cfg.style_band, generator)

    images, shift = augment(styled(arrays["images"][idx]), cfg.shift, cfg.jitter, generator, return_shift=True)
    def f32(name: str) -> torch.Tensor:
        return torch.as_tensor(arrays[name][idx], dtype=torch.float32)

    batch = {"images": images, "proprio": f32("proprio"), "expert_action": f32("expert_action"),
             "object": f32("object"), "grasp": f32("grasp"), "success": f32("success"),
             "keypoints": f32("keypoints") + shift[:, None, :],
             "object_pixels": f32("object_pixels") + shift[:, None, :],
             "has_alt": torch.as_tensor(arrays["has_alt"][idx], dtype=torch.bool)}
    if batch["has_alt"].any():
        batch["images_alt"] = augment(styled(arrays["images_alt"][idx]), cfg.shift, cfg.jitter, generator)
    return batch


def fit(policy: GraspPolicy, data: Buffer, cfg: FitConfig, seed: int = 0,
        progress: str | None = None, log: Callable[[int, dict[str, float]], None] | None = None,
        log_every: int | None = None, layout: str = "nhwc",
        style_images: np.ndarray | None = None) -> list[dict[str, float]]:
    """Train ``policy`` in place for ``cfg.steps`` steps; returns logged loss rows. ``layout``:
    "nhwc" (default, faster on a CPU; see ``channels_last``) or "nchw" (PyTorch's default).
    ``style_images``: (M, S, S, 3) uint8 RGB frames of a target camera, at the rows' image size,
    whose style the training images take on with probability ``cfg.style`` (``style_mix``)."""
    from tqdm.auto import tqdm

    arrays = data.arrays
    n = len(arrays["images"])
    log_every = log_every or max(1, min(50, cfg.steps // 20))
    if n == 0:
        raise ValueError("fit: no training rows")
    if layout not in ("nhwc", "nchw"):
        raise ValueError(f"fit: layout must be 'nhwc' or 'nchw', not {layout!r}")
    spectra = None
    if cfg.style > 0:
        if style_images is None or not len(style_images):
            # Silently training without it would record a style that no image took on.
            raise ValueError(f"fit: style={cfg.style} needs style_images (a target camera's frames); "
                             "give them, or set style to 0")
        if np.shape(style_images)[1:] != arrays["images"].shape[1:]:
            raise ValueError(f"fit: style images of shape {np.shape(style_images)[1:]} do not match the rows' "
                             f"images {arrays['images'].shape[1:]}")
        spectra = amplitude_spectra(images_to_tensor(np.asarray(style_images)))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    enc_params = [p for p in policy.encoder.parameters() if p.requires_grad]
    enc_ids = {id(p) for p in policy.encoder.parameters()}
    other = [p for p in policy.parameters() if id(p) not in enc_ids and p.requires_grad]
    groups = [{"params": other, "lr": cfg.lr}]
    if enc_params and cfg.encoder_lr > 0:
        groups.append({"params": enc_params, "lr": cfg.encoder_lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=max(cfg.steps, 1),
                                                pct_start=0.1)
    policy.train()
    history: list[dict[str, float]] = []
    running: dict[str, float] = {}
    bar = tqdm(range(cfg.steps), desc=progress, disable=progress is None, leave=False, unit="step")
    with channels_last(policy) if layout == "nhwc" else nullcontext(policy):
        for step in bar:
            idx = rng.integers(0, n, cfg.batch)
            batch = make_batch(arrays, idx, cfg, gen, spectra)
            if layout == "nhwc":
                batch = nhwc(batch)
            out = losses(policy, batch, cfg.weights)
            opt.zero_grad(set_to_none=True)
            out["total"].backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 5.0)
            opt.step()
            sched.step()
            for k, v in out.items():
                running[k] = 0.9 * running.get(k, v.item()) + 0.1 * v.item()
            if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
                row = {"step": step + 1, **{k: round(v, 5) for k, v in running.items()}}
                history.append(row)
                bar.set_postfix(loss=f"{running['total']:.4f}")
                if log is not None:
                    log(step + 1, row)
    policy.eval()
    return history
