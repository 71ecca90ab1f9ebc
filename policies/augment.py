"""Image augmentation on a training batch (float (N, 3, H, W) in [0, 1]), in torch.

``random_shift``: DrQ-style: pad by ``pad`` pixels (edge replicate) and crop back at a random
offset per image, i.e. translate by up to +-pad pixels. ``color_jitter``: per image brightness,
contrast and saturation factors and a small per-channel gain. Both are no-ops at strength 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(images: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None,
                 return_shift: bool = False):
    """Translate each image by up to +-pad pixels. With ``return_shift`` also the (N, 2) pixel
    translation (x, y) applied, so labels given in pixels can follow the image."""
    n, _, h, w = images.shape
    if pad <= 0:
        return (images, torch.zeros(n, 2)) if return_shift else images
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    # A Python loop of slices beats gather-style indexing by ~10x at these batch sizes.
    out = torch.stack([padded[i, :, y:y + h, x:x + w]
                       for i, (x, y) in enumerate(zip(dx.tolist(), dy.tolist(), strict=True))])
    if return_shift:  # output pixel p shows input pixel p + d - pad
        return out, torch.stack([pad - dx, pad - dy], dim=1).float()
    return out


def color_jitter(images: torch.Tensor, strength: float = 0.2,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    if strength <= 0:
        return images
    n, c, h, w = images.shape

    def factor(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return 1.0 + scale * strength * (2 * torch.rand(n, *shape, generator=generator) - 1)

    brightness, contrast, saturation = factor(1, 1), factor(1, 1), factor(1, 1)
    gain = factor(3, scale=0.5)
    # brightness, contrast (about the image mean), saturation (about the pixel's grey) and channel
    # gain are all affine in the pixel, so they fold into one 3x3 matrix + offset per image: one
    # batched matmul instead of a dozen full-size elementwise passes.
    mix = saturation * torch.eye(3) + (1 - saturation) / 3.0 * torch.ones(3, 3)
    matrix = gain.unsqueeze(2) * mix * (contrast * brightness)
    mean = images.mean(dim=(1, 2, 3)).view(n, 1, 1)
    offset = (1 - contrast) * brightness * mean * gain.unsqueeze(2)
    out = torch.baddbmm(offset, matrix, images.reshape(n, c, h * w))
    return out.clamp_(0.0, 1.0).view(n, c, h, w)


def augment(images: torch.Tensor, pad: int = 4, jitter: float = 0.2,
            generator: torch.Generator | None = None, return_shift: bool = False):
    """Random shift then colour jitter; with ``return_shift`` also the (N, 2) pixel translation."""
    shifted, shift = random_shift(images, pad, generator, return_shift=True)
    out = color_jitter(shifted, jitter, generator)
    return (out, shift) if return_shift else out
