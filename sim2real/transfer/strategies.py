"""Adaptation strategies: which parts of a sim-trained ``GraspPolicy`` learn from real data, how fast,
and with which extra objective. Every strategy trains on the same real rows with the same losses
(``sim2real.transfer.adapt``); only what is listed here differs, so their results compare.

    zero_shot  the sim policy as it is (the baseline every strategy must beat)
    probe      feature extraction: encoder frozen (weights *and* BatchNorm statistics), heads retrained
    partial    the top ``top_k`` conv blocks and everything above them fine-tuned, lower blocks frozen
    full       everything fine-tuned; pretrained encoder at ``encoder_lr_scale`` x the heads' rate
    gradual    gradual unfreezing (ULMFiT): heads first, then one more layer group top-down at equal
               intervals until the whole encoder trains
    l2sp       full fine-tuning plus alpha/2 * ||w - w_sim||^2 on the encoder (L2-SP): a pull towards
               the sim weights against catastrophic forgetting
    adabn      AdaBN: BatchNorm statistics re-estimated on the real images (labelled or not), then the
               heads retrained on the frozen, re-normalized encoder
    dann       full fine-tuning plus a domain discriminator on the encoder features behind a
               gradient-reversal layer (sim images vs all real images), with the sim task loss kept
    coral      full fine-tuning plus CORAL: the distance between sim and real feature covariances,
               with the sim task loss kept
    scratch    same architecture, random initialization, real data only (no sim pretraining): the
               control that tells whether pretraining helped at all
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from policies.policy import GraspPolicy


@dataclass(frozen=True)
class Strategy:
    """What one strategy trains (module docstring).

    encoder: "frozen", "top" (top ``top_k`` blocks), "all" or "gradual"; encoder_lr_scale: encoder
    learning rate relative to the heads'; l2sp: L2-SP coefficient alpha; adabn: re-estimate BatchNorm
    statistics on real images first; uda: "dann" or "coral" (needs sim source images); scratch:
    random initialization; trains: False = no gradient steps (zero-shot); steps_scale: its training
    steps as a multiple of ``AdaptConfig.steps``.
    """

    name: str
    encoder: str = "all"
    top_k: int = 0
    encoder_lr_scale: float = 0.1
    l2sp: float = 0.0
    adabn: bool = False
    uda: str | None = None
    scratch: bool = False
    trains: bool = True
    steps_scale: float = 1.0

    def steps(self, base: int) -> int:
        """Its training steps when every strategy is given ``base`` (``AdaptConfig.steps``)."""
        return max(1, round(base * self.steps_scale))

    def to_dict(self) -> dict:
        return asdict(self)


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("zero_shot", encoder="frozen", trains=False),
    Strategy("probe", encoder="frozen"),
    Strategy("partial", encoder="top", top_k=2, encoder_lr_scale=0.3),
    Strategy("full", encoder="all", encoder_lr_scale=0.1),
    Strategy("gradual", encoder="gradual", encoder_lr_scale=0.3),
    Strategy("l2sp", encoder="all", encoder_lr_scale=0.3, l2sp=0.01),
    Strategy("adabn", encoder="frozen", adabn=True),
    Strategy("dann", encoder="all", encoder_lr_scale=0.1, uda="dann"),
    Strategy("coral", encoder="all", encoder_lr_scale=0.1, uda="coral"),
    # Twice the steps: it starts from random weights, and a baseline trained short would flatter
    # the others (at 150 steps its held-out grasp loss was 0.314, at 300 0.300; README).
    Strategy("scratch", encoder="all", encoder_lr_scale=1.0, scratch=True, steps_scale=2.0),
)}


def layer_groups(policy: GraspPolicy) -> list[list[nn.Module]]:
    """The policy's layers from the top (heads) down to the first conv block, in the order gradual
    unfreezing releases them."""
    enc = policy.encoder
    heads = [policy.action_head, policy.grasp_head, policy.object_head, policy.outcome_head, policy.fusion.proprio]
    top = [enc.head, enc.keypoint_maps, enc.keypoints] + ([enc.prior] if enc.prior is not None else [])
    return [heads, top] + [[block] for block in reversed(enc.blocks)]


def trainable_encoder_modules(policy: GraspPolicy, strategy: Strategy, progress: float = 1.0) -> list[nn.Module]:
    """Encoder modules that learn under ``strategy`` at ``progress`` in [0, 1] of the schedule
    (only gradual unfreezing depends on it)."""
    groups = layer_groups(policy)[1:]  # encoder groups, top-down
    if strategy.encoder == "frozen":
        return []
    if strategy.encoder == "all":
        return [m for g in groups for m in g]
    if strategy.encoder == "top":
        return [m for g in groups[: 1 + strategy.top_k] for m in g]
    if strategy.encoder == "gradual":
        # Heads alone for the first 1/(G+1) of the steps, then one more group per interval.
        released = min(len(groups), int(progress * (len(groups) + 1)))
        return [m for g in groups[:released] for m in g]
    raise ValueError(f"strategy {strategy.name}: unknown encoder mode {strategy.encoder!r}")


def set_trainable(policy: GraspPolicy, strategy: Strategy, progress: float = 1.0) -> None:
    """requires_grad per parameter, and BatchNorm modes: a frozen conv block also keeps its running
    statistics (eval mode), or "frozen" would still drift with every real batch."""
    enc = policy.encoder
    learn = {id(p) for m in trainable_encoder_modules(policy, strategy, progress) for p in m.parameters()}
    for p in enc.parameters():
        p.requires_grad_(id(p) in learn)
    for m in layer_groups(policy)[0]:
        for p in m.parameters():
            p.requires_grad_(True)
    policy.train()
    for block in enc.blocks:
        if not any(id(p) in learn for p in block.parameters()):
            block.eval()


@torch.no_grad()
def adabn(policy: GraspPolicy, images: torch.Tensor, batch: int = 128) -> None:
    """AdaBN: replace every BatchNorm's running mean/variance in the encoder by the population
    statistics of ``images`` (float (N, 3, S, S) in [0, 1]); no weight changes.

    One BatchNorm at a time, in forward order, with the encoder in eval mode: its input is summed
    over *all* images (float64 count, sum, sum of squares) before its statistics are set, so deeper
    layers see inputs normalized as they will be at test time, and the variance includes the
    differences between batches (averaging per-batch variances would miss them, and real data comes
    in episode order).
    """
    encoder = policy.encoder
    bns = [m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    modes = [m.training for m in encoder.modules()]
    encoder.eval()
    try:
        for bn in bns:
            acc = {"n": 0, "s": 0.0, "s2": 0.0}

            def hook(_module, inputs, acc=acc):
                x = inputs[0].double()
                acc["n"] += x.numel() // x.shape[1]
                acc["s"] = acc["s"] + x.sum(dim=(0, 2, 3))
                acc["s2"] = acc["s2"] + (x * x).sum(dim=(0, 2, 3))

            handle = bn.register_forward_pre_hook(hook)
            try:
                for i in range(0, len(images), batch):
                    encoder.feature_map(images[i:i + batch])
            finally:
                handle.remove()
            n = acc["n"]
            mean = acc["s"] / n
            var = (acc["s2"] - n * mean * mean) / max(n - 1, 1)
            bn.running_mean.copy_(mean.float())
            bn.running_var.copy_(var.clamp(min=0).float())
    finally:
        for m, mode in zip(encoder.modules(), modes, strict=True):
            m.training = mode


class GradReverse(torch.autograd.Function):
    """Identity forward; gradient times -lambda backward (DANN's gradient-reversal layer)."""

    @staticmethod
    def forward(ctx, x, lam: float):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None


class DomainDiscriminator(nn.Module):
    """Encoder features (N, D) -> logit that they come from the real camera."""

    def __init__(self, features_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor, lam: float) -> torch.Tensor:
        return self.net(GradReverse.apply(features, lam)).squeeze(1)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CORAL (Sun & Saenko 2016): squared Frobenius distance between the feature covariances of two
    batches (N, D), divided by 4 D^2."""
    d = source.shape[1]

    def cov(x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=0, keepdim=True)
        return x.T @ x / max(len(x) - 1, 1)

    return ((cov(source) - cov(target)) ** 2).sum() / (4 * d * d)


def l2sp_penalty(policy: GraspPolicy, reference: dict[str, torch.Tensor]) -> torch.Tensor:
    """sum ||w - w_sim||^2 over the encoder's trainable weights (``reference``: name -> sim weight)."""
    total = torch.zeros(())
    for name, p in policy.encoder.named_parameters():
        if p.requires_grad and name in reference:
            total = total + ((p - reference[name]) ** 2).sum()
    return total
