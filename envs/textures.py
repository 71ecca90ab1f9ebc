"""Texture pool for visual randomization: procedural patterns and photographs.

Procedural textures are generated from fixed seeds (so every process gets identical images) and
written once to a cache folder; photographs are the images that ship inside ``pybullet_data``.
Textures stay loaded for the life of a world: PyBullet frees texture memory only on a full reset.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pybullet_data

NUM_PROCEDURAL = 16
TEXTURE_SIZE = 128
CACHE_VERSION = "v1"

# Photographs shipped with pybullet: wood, fabric, printed and metal surfaces.
PHOTOS = ("tray/tray.jpg", "table/table.png", "laikago/laikago_tex.jpg", "domino/domino.jpg",
          "quadruped/t-motor.jpg", "jenga/jenga.png")


def _procedural(index: int) -> np.ndarray:
    """One RGB uint8 texture: stripes, checkers, blotchy noise or a gradient, by index."""
    rng = np.random.default_rng(10_000 + index)
    n = TEXTURE_SIZE
    y, x = np.mgrid[0:n, 0:n] / n
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    kind = index % 4
    if kind == 0:  # stripes at a random angle and frequency
        angle, freq = rng.uniform(0, np.pi), rng.uniform(3, 12)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (x * np.cos(angle) + y * np.sin(angle)))
    elif kind == 1:  # checkerboard
        k = int(rng.integers(2, 10))
        t = ((np.floor(x * k) + np.floor(y * k)) % 2).astype(float)
    elif kind == 2:  # smooth blotches: upsampled noise
        coarse = rng.uniform(0, 1, (int(rng.integers(3, 9)),) * 2).astype(np.float32)
        t = cv2.resize(coarse, (n, n), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    else:  # gradient with fine grain
        t = (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1)) % 1.0
        t = (t + rng.normal(0, 0.08, t.shape)).clip(0, 1)
    img = c1[None, None] * t[..., None] + c2[None, None] * (1 - t[..., None])
    return img.clip(0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def texture_files() -> dict[str, list[str]]:
    """Paths of the texture pool: {"procedural": [...], "photo": [...]}."""
    cache = Path(os.environ.get("SIM2REAL_CACHE", tempfile.gettempdir())) / f"sim2real_textures_{CACHE_VERSION}"
    cache.mkdir(parents=True, exist_ok=True)
    procedural = []
    for i in range(NUM_PROCEDURAL):
        path = cache / f"procedural_{i:02d}.png"
        if not path.exists():
            # Write under a unique name, then rename: parallel workers never see half a file.
            tmp = cache / f".{path.name}.{os.getpid()}.png"
            cv2.imwrite(str(tmp), _procedural(i)[:, :, ::-1])
            os.replace(tmp, path)
        procedural.append(str(path))
    root = Path(pybullet_data.getDataPath())
    photos = [str(root / p) for p in PHOTOS if (root / p).exists()]
    return {"procedural": procedural, "photo": photos}
