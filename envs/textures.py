"""Texture pool for visual randomization: procedural patterns and photographs.

Procedural textures are generated from fixed seeds (so every process gets identical images) and
written once to a cache folder; photographs are the images that ship inside ``pybullet_data``,
shrunk once into the same folder (``PHOTO_MAX_SIDE``). Textures stay loaded for the life of a
world: PyBullet frees texture memory only on a full reset.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pybullet_data

NUM_PROCEDURAL = 48  # six of each kind (KINDS)
TEXTURE_SIZE = 128
CACHE_VERSION = "v2"
# Longest side (px) of the photographs as the simulator loads them. PyBullet copies a texture's
# pixels on every ``changeVisualShape`` that names it, and randomization swaps textures at every
# paired render and view pose: at their shipped sizes (up to 2048 x 2048) the copies took 54 % of
# view collection and 23 % of expert collection (one appearance with one photograph: about 24 ms
# to apply, 1.9 ms at 512 px). Shrunk by keeping every k-th texel (nearest neighbour), not by
# averaging: TinyRenderer looks up the nearest texel too, so the rendered surface keeps its
# fine-scale content (the images' high-frequency energy within 1 % of the originals'). Five
# default runs trained with them grasp 73.9 % of 400 fresh held-out episodes on average against
# 72.9 % for the same seeds with the shipped sizes (+1.0 points, -1.8 to +3.8), and their
# collection took 38 % less time side by side (README, "Where collection time goes").
PHOTO_MAX_SIDE = 512

# Photographs shipped with pybullet: wood, fabric, printed and metal surfaces.
PHOTOS = ("tray/tray.jpg", "table/table.png", "laikago/laikago_tex.jpg", "domino/domino.jpg",
          "quadruped/t-motor.jpg", "jenga/jenga.png")


# Kinds of procedural texture, by index % len(KINDS). The first four are simple patterns; the rest
# have the statistics of natural surfaces (edges and occlusions at every scale, 1/f spectra, grain),
# which plain patterns lack. Added because the grasp-point map lost the objects on a photographed
# tray in the proxy-real domain; two seeds per pool showed no measurable change there or in sim
# (README, "A richer texture pool"), so this is a wider randomization, not a proven fix.
KINDS = ("stripes", "checkers", "blotches", "gradient", "dead_leaves", "fractal", "cells", "grain")


def _procedural(index: int) -> np.ndarray:
    """One RGB uint8 texture (TEXTURE_SIZE square) of kind ``KINDS[index % len(KINDS)]``."""
    rng = np.random.default_rng(10_000 + index)
    n = TEXTURE_SIZE
    y, x = np.mgrid[0:n, 0:n] / n
    kind = KINDS[index % len(KINDS)]
    if kind in ("stripes", "checkers", "blotches", "gradient"):
        c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if kind == "stripes":  # at a random angle and frequency
            angle, freq = rng.uniform(0, np.pi), rng.uniform(3, 12)
            t = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (x * np.cos(angle) + y * np.sin(angle)))
        elif kind == "checkers":
            k = int(rng.integers(2, 10))
            t = ((np.floor(x * k) + np.floor(y * k)) % 2).astype(float)
        elif kind == "blotches":  # smooth: upsampled noise
            coarse = rng.uniform(0, 1, (int(rng.integers(3, 9)),) * 2).astype(np.float32)
            t = cv2.resize(coarse, (n, n), interpolation=cv2.INTER_CUBIC).clip(0, 1)
        else:  # gradient with fine grain
            t = (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1)) % 1.0
            t = (t + rng.normal(0, 0.08, t.shape)).clip(0, 1)
        img = c1[None, None] * t[..., None] + c2[None, None] * (1 - t[..., None])
    elif kind == "dead_leaves":
        img = _dead_leaves(rng, n)
    elif kind == "fractal":
        img = _fractal(rng, n)
    elif kind == "cells":
        img = _cells(rng, n)
    else:
        img = _grain(rng, n)
    return img.clip(0, 255).astype(np.uint8)


def _dead_leaves(rng: np.random.Generator, n: int) -> np.ndarray:
    """Overlapping discs and ellipses with power-law radii from a small palette (the "dead leaves"
    model, whose edge and scale statistics resemble natural images'): clutter, pebbles, print."""
    img = np.zeros((n, n, 3), np.float32) + rng.uniform(0, 255, 3)
    palette = rng.uniform(0, 255, (int(rng.integers(3, 7)), 3))
    for _ in range(int(rng.integers(600, 1200))):
        r = max(1, int(min(0.02 * n / rng.uniform(0.02, 1.0) ** 0.5, 0.2 * n)))  # many small, few large
        centre = (int(rng.integers(0, n)), int(rng.integers(0, n)))
        colour = (palette[rng.integers(len(palette))] * rng.uniform(0.7, 1.3)).clip(0, 255).tolist()
        axes = (r, max(1, int(r * rng.uniform(0.3, 1.0))))
        cv2.ellipse(img, centre, axes, rng.uniform(0, 180), 0, 360, colour, -1, lineType=cv2.LINE_AA)
    return img


def _fractal(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise with a 1/f^beta power spectrum (periodic, so it tiles without seams): beta near 1 looks
    like gravel or sand, near 2 like clouds or stained concrete; tinted grey or three-channel."""
    fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    beta = rng.uniform(1.0, 2.2)
    channels = []
    for _ in range(3 if rng.random() < 0.4 else 1):
        spectrum = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) / f ** (beta / 2)
        t = np.real(np.fft.ifft2(spectrum))
        channels.append(np.clip(0.5 + 0.18 * (t - t.mean()) / (t.std() + 1e-9), 0, 1))
    if len(channels) == 1:
        return channels[0][..., None] * rng.uniform(0.3, 1.0, 3) * 255
    return np.stack(channels, axis=-1) * 255


def _cells(rng: np.random.Generator, n: int) -> np.ndarray:
    """Voronoi cells of similar tones with dark joints (stones, tiles, brick-like paving), periodic."""
    k = int(rng.integers(12, 80))
    points = rng.uniform(0, n, (k, 2))
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    dist = np.empty((k, n, n), np.float32)
    for i, (px, py) in enumerate(points):
        dx, dy = np.abs(x - px), np.abs(y - py)
        dist[i] = np.hypot(np.minimum(dx, n - dx), np.minimum(dy, n - dy))
    order = np.partition(dist, 1, axis=0)  # [0] nearest and [1] second-nearest distance per pixel
    colours = rng.uniform(0, 255, 3) * rng.uniform(0.6, 1.3, (k, 1))
    img = colours[dist.argmin(axis=0)]
    img[(order[1] - order[0]) < rng.uniform(1.0, 3.0)] = rng.uniform(0, 128, 3)
    return img


def _grain(rng: np.random.Generator, n: int) -> np.ndarray:
    """Many small specks of a few tones on a base colour, slightly blurred: gravel, sand, carpet."""
    base = rng.uniform(40, 200, 3)
    img = np.zeros((n, n, 3), np.float32) + base
    tones = (base * rng.uniform(0.5, 1.5, (4, 1))).clip(0, 255)
    for _ in range(int(rng.integers(600, 1500))):
        centre = (int(rng.integers(0, n)), int(rng.integers(0, n)))
        cv2.circle(img, centre, int(rng.integers(1, 4)), tones[rng.integers(4)].tolist(), -1)
    return cv2.GaussianBlur(img, (3, 3), 0.6)


def texture_kind(key: str) -> str:
    """What a surface wears, from its texture key (``EpisodeParams.textures``): "plain" (no
    texture), "photo", a procedural kind (``KINDS``), "target" (a patch of the target camera's
    images) or "proxy" (the proxy-real domain's photographs). Evaluations record it for the tray,
    so success can be read by surface (``scripts/compare_evals.py``): the natural-statistics kinds
    are where today's default student misses most (README, "Where the misses are: the tray")."""
    name, _, index = key.rpartition("_")
    if key == "white":
        return "plain"
    if name == "procedural" and index.isdigit():
        return KINDS[int(index) % len(KINDS)]
    if name in ("photo", "target") and index.isdigit():
        return name
    if name == "real" and index.isdigit():
        return "proxy"
    raise ValueError(f"texture_kind: unknown texture key {key!r}")


@functools.lru_cache(maxsize=1)
def texture_files() -> dict[str, list[str]]:
    """Paths of the texture pool: {"procedural": [...], "photo": [...]}."""
    cache = Path(os.environ.get("SIM2REAL_CACHE", tempfile.gettempdir())) / f"sim2real_textures_{CACHE_VERSION}"
    cache.mkdir(parents=True, exist_ok=True)
    procedural = []
    for i in range(NUM_PROCEDURAL):
        procedural.append(write_once(cache / f"procedural_{i:02d}.png", lambda i=i: _procedural(i)[:, :, ::-1]))
    root = Path(pybullet_data.getDataPath())
    photos = [_shrunk(root / p, cache) for p in PHOTOS if (root / p).exists()]
    return {"procedural": procedural, "photo": photos}


def write_once(path: Path, make_bgr: Callable[[], np.ndarray | None], what: str = "a texture (texture cache)"
               ) -> str | None:
    """Write the BGR image ``make_bgr()`` to ``path`` unless it is already there; the path, or None
    when ``make_bgr`` returns None (a source to skip). Atomic (``write_image``): parallel workers
    never see half a file. ``what``: named in the error if the write fails."""
    if not path.exists():
        image = make_bgr()
        if image is None:
            return None
        write_image(path, image, what)
    return str(path)


def write_image(path: str | Path, bgr: np.ndarray, what: str, atomic: bool = True) -> None:
    """``cv2.imwrite`` that fails loudly: OSError naming ``path`` and ``what`` it is (OpenCV only
    returns False, and a full disk or a missing folder would otherwise show up later, elsewhere).
    ``atomic``: written under a unique name in the same folder, then renamed over ``path``, so a
    reader (or a parallel worker) sees the old file or the new one, never half of one."""
    path = Path(path)
    target = path.with_name(f".{path.name}.{os.getpid()}{path.suffix}") if atomic else path
    try:
        ok = cv2.imwrite(str(target), bgr)
    except cv2.error as e:  # e.g. an extension OpenCV has no writer for
        target.unlink(missing_ok=True)
        raise OSError(f"{path}: could not write {what}: {e}") from e
    if not ok:
        target.unlink(missing_ok=True)
        raise OSError(f"{path}: could not write {what}")
    if atomic:
        os.replace(target, path)


def _shrunk(source: Path, cache: Path) -> str:
    """``source`` with its longest side at most ``PHOTO_MAX_SIDE`` (nearest-neighbour: every k-th
    texel), written once into ``cache``; the path to load."""

    def make() -> np.ndarray:
        image = cv2.imread(str(source), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{source}: not a readable image (texture pool)")
        scale = PHOTO_MAX_SIDE / max(image.shape[:2])
        if scale < 1:
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)
        return image

    return write_once(cache / f"photo_{PHOTO_MAX_SIDE}_{source.parent.name}_{source.stem}.png", make)


def cut_textures(images: np.ndarray, count: int, rng: np.random.Generator,
                 side: tuple[float, float] = (0.25, 0.6)) -> np.ndarray:
    """``count`` square patches cut at random places of random ``images`` ((N, H, W, 3) uint8 RGB: the
    target camera's own frames), each ``side`` (a fraction of the shorter image side, uniform in the
    range) across, resized to TEXTURE_SIZE: (count, TEXTURE_SIZE, TEXTURE_SIZE, 3) uint8 RGB.

    Why: a real camera's table, tray and floor are one particular set of surfaces, and a few hundred of
    its frames show them. Worn by the simulator's surfaces (``EnvConfig.target_textures``), they teach
    the policy that this look is background. The patches also catch bits of objects and gripper, as a
    printed or cluttered surface would."""
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(f"cut_textures: need (N, H, W, 3) images with N >= 1, got shape {images.shape}")
    lo, hi = side
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"cut_textures: side must be fractions 0 < low <= high <= 1, got {side!r}")
    out = np.empty((count, TEXTURE_SIZE, TEXTURE_SIZE, 3), np.uint8)
    h, w = images.shape[1:3]
    for k in range(count):
        s = max(2, int(rng.uniform(lo, hi) * min(h, w)))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        patch = images[int(rng.integers(len(images))), y:y + s, x:x + s]
        out[k] = cv2.resize(patch, (TEXTURE_SIZE, TEXTURE_SIZE), interpolation=cv2.INTER_LINEAR)
    return out


def write_textures(textures: np.ndarray, folder: str | Path) -> list[str]:
    """Write (K, S, S, 3) uint8 RGB textures as ``folder``/texture_NNN.png (the folder must not hold
    any yet); returns their paths, the form ``EnvConfig.target_textures`` reads. OSError naming the
    file when one cannot be written (a full disk would otherwise leave a silently short pool); the
    textures this call wrote before it are then removed, so the folder is as it was and a re-run
    is not refused."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.glob("*.png")):
        raise FileExistsError(f"{folder}: already holds textures; refusing to mix or overwrite them")
    paths: list[str] = []
    try:
        for k, texture in enumerate(textures):
            paths.append(str(folder / f"texture_{k:03d}.png"))
            write_image(paths[-1], np.ascontiguousarray(texture[:, :, ::-1]), "a texture", atomic=False)
    except BaseException:  # a failed write or an interrupt: take back what this call wrote
        for written in paths:  # only ours: the folder held no PNG when we started
            Path(written).unlink(missing_ok=True)
        raise
    return paths


def target_texture_files(folder: str | Path) -> list[str]:
    """The PNG textures in ``folder`` (``EnvConfig.target_textures``), sorted; ValueError naming the
    folder when it is missing or holds none."""
    paths = sorted(str(p) for p in Path(folder).glob("*.png"))
    if not paths:
        raise ValueError(f"target_textures: {folder}: no PNG textures there"
                         + ("" if Path(folder).is_dir() else " (no such folder)"))
    return paths
