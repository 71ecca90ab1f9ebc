"""The proxy-real domain: a stand-in "real camera" that training randomization never samples.

Without a robot, transfer learning still needs a target domain that is genuinely *outside* the
source distribution, or adaptation has nothing to fix. ``EnvConfig(domain="proxy_real")`` keeps the
physics, objects and task of the simulator and changes how the world looks, in ways the training
randomization (``envs.randomization``) never draws:

- **renderer**: PyBullet's OpenGL (EGL) renderer instead of TinyRenderer: other shading, no
  per-episode light coefficients, different anti-aliasing and gripper appearance;
- **surfaces and objects**: photographs from scikit-image's bundled data (brick, gravel, grass,
  coffee, ...), none of which is in the training texture pool, on the table, tray, floor and on
  about half the objects;
- **camera rig**: mounted 2.5 cm and ~2.5 degrees away from its calibration, beyond the training
  jitter (3 cm per axis is the bound, but the training jitter is uniform and zero-mean: a fixed bias
  of this size is at the edge of what the encoder has seen);
- **sensor** (``RealCameraModel``): barrel lens distortion, vignetting, a warm white balance,
  gamma, and signal-dependent (shot) plus read noise -- a noise model unlike the training's
  additive Gaussian.

Every episode also gets a small amount of its own variation (light direction, white balance, which
photo goes where), the way a real lab changes between days.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from envs.camera import Camera
from envs.corruptions import Compose, Corruption, Jpeg
from envs.textures import write_once

# scikit-image's bundled photographs (shipped in the wheel, no download): colour ones as they are,
# grey ones tinted like real materials.
COLOUR_PHOTOS = ("coffee.png", "chelsea.png", "astronaut.png", "motorcycle_left.png", "rocket.jpg",
                 "hubble_deep_field.jpg", "retina.jpg", "ihc.png")
GREY_PHOTOS = ("brick.png", "gravel.png", "grass.png", "moon.png", "camera.png", "page.png")
TINTS = ((0.82, 0.62, 0.42), (0.55, 0.55, 0.58), (0.45, 0.6, 0.4), (0.9, 0.85, 0.75))
TEXTURE_SIZE = 256
CACHE_VERSION = "v1"
# The rig's fixed error with respect to its calibration: translation (m, base frame) and rotation
# vector (rad, optical frame).
CAMERA_OFFSET = (0.015, -0.015, 0.012)
CAMERA_TILT = (0.03, -0.025, 0.02)


def _skimage_data() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the proxy-real domain needs scikit-image's photographs: pip install scikit-image")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _proxy_texture(src: Path, k: int, grey: bool) -> np.ndarray | None:
    """The ``k``-th pool photograph ``src`` as a TEXTURE_SIZE square BGR texture (a grey one tinted
    with ``TINTS``); None if it does not decode."""
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if img is None:
        return None
    if grey:
        tone = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)[..., None]
        img = (tone * np.array(TINTS[k % len(TINTS)][::-1], np.float32)).clip(0, 255).astype(np.uint8)
    side = min(img.shape[:2])
    return cv2.resize(img[:side, :side], (TEXTURE_SIZE, TEXTURE_SIZE), interpolation=cv2.INTER_AREA)


@functools.lru_cache(maxsize=1)
def texture_files() -> list[str]:
    """Paths of the proxy-real texture pool (RGB PNGs, TEXTURE_SIZE square), cached on disk."""
    data = _skimage_data()
    cache = Path(os.environ.get("SIM2REAL_CACHE", tempfile.gettempdir())) / f"sim2real_proxy_{CACHE_VERSION}"
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for k, name in enumerate(COLOUR_PHOTOS + GREY_PHOTOS):
        src = data / name
        if not src.exists():
            continue
        make = functools.partial(_proxy_texture, src, k, name in GREY_PHOTOS)
        path = write_once(cache / f"{Path(name).stem}.png", make, "a proxy-real texture (texture cache)")
        if path is not None:  # (an unreadable photograph is left out)
            out.append(path)
    if not out:
        raise ImportError(f"no photographs found in {data}; reinstall scikit-image")
    return out


@dataclass
class RealCameraModel(Corruption):
    """What a cheap real camera does to a clean frame, on uint8 (H, W, 3) RGB.

    k1: radial distortion coefficient on normalized image coordinates (negative = barrel);
    vignetting: brightness lost at the corners (0-1); white_balance: per-channel RGB gains;
    gamma: exponent on [0, 1] intensities; shot: Poisson-like noise std at full scale (the noise grows
    with sqrt(intensity)); read: signal-independent noise std, 0-255 scale.
    """

    k1: float = -0.18
    vignetting: float = 0.45
    white_balance: tuple[float, float, float] = (1.15, 1.0, 0.78)
    gamma: float = 0.8
    shot: float = 10.0
    read: float = 2.0

    def __call__(self, image, rng):
        h, w = image.shape[:2]
        mx, my, fall = _lens_maps(h, w, self.k1)
        img = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).astype(np.float32) / 255.0
        img = img * np.asarray(self.white_balance, np.float32) * (1.0 - self.vignetting * fall)[..., None]
        img = np.clip(img, 0, 1) ** self.gamma
        noise = rng.normal(0.0, 1.0, img.shape).astype(np.float32)
        img = img * 255.0 + noise * (self.shot * np.sqrt(img) + self.read)
        return np.clip(img, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _lens_maps(h: int, w: int, k1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remap tables for radial distortion and the vignetting fall-off (0 at the centre, 1 at the corners)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    nx, ny = (x - cx) / cx, (y - cy) / cy
    r2 = nx * nx + ny * ny
    # The output pixel at radius r shows the scene at radius r (1 - k1 r^2), the first-order inverse of
    # r_d = r_u (1 + k1 r_u^2): with k1 < 0 the periphery is squeezed towards the centre (barrel).
    scale = 1.0 - k1 * r2
    return (nx * scale * cx + cx).astype(np.float32), (ny * scale * cy + cy).astype(np.float32), (r2 / 2.0)


class ProxyRealDomain:
    """Restyles one episode of a ``GraspEnv`` as the proxy-real domain (module docstring).

    without: parts (``envs.config.PROXY_PARTS``) left as the simulator's own: "textures", "light",
    "camera", "sensor" keep what the training randomization drew for them ("renderer" is the env's
    choice). Every random number is drawn either way, so an episode differs only in those parts.
    """

    def __init__(self, without: tuple[str, ...] = ()) -> None:
        self.without = frozenset(without)
        self.textures = texture_files()
        grey = {Path(g).stem for g in GREY_PHOTOS}
        self.materials = [i for i, p in enumerate(self.textures) if Path(p).stem in grey]

    def load_textures(self, scene) -> None:
        for i, path in enumerate(self.textures):
            scene.sim.load_texture(f"real_{i}", path)

    def camera(self, base: Camera) -> Camera:
        """The rig as mounted: the calibrated camera moved by the fixed offset."""
        return base.perturbed(np.asarray(CAMERA_OFFSET), np.asarray(CAMERA_TILT), 1.0)

    def restyle(self, params, scene, objects: list[str], base_camera: Camera, rng: np.random.Generator) -> None:
        """Overwrite the appearance, camera and sensor of ``params`` (an ``EpisodeParams``) in place.

        Physics and control randomization are kept: the real world is one more random sample of them.
        """
        import math

        from envs.sim import Light

        n = len(self.textures)
        textures, colors = {}, {}
        for surface in ("tray", "table", "floor"):
            # The tray is lined with a material (tinted grey photos); the room around it can be anything.
            pick = int(rng.choice(self.materials)) if surface == "tray" and self.materials else int(rng.integers(n))
            textures[surface], colors[surface] = f"real_{pick}", (1.0, 1.0, 1.0, 1.0)
        for name in objects:
            if rng.random() < 0.5:
                textures[name], colors[name] = f"real_{int(rng.integers(n))}", (1.0, 1.0, 1.0, 1.0)
            else:  # plain colour: replace a photo left from an earlier episode
                textures[name] = "white"
        azimuth, elevation = rng.uniform(2.0, 2.6), rng.uniform(0.9, 1.1)  # a lamp behind-left, one side only
        wb = np.array([1.15, 1.0, 0.78]) * rng.uniform(0.95, 1.05, 3)
        if "textures" not in self.without:
            params.textures.update(textures)
            params.colors.update(colors)
        if "light" not in self.without:
            params.light = Light(direction=(math.cos(elevation) * math.cos(azimuth),
                                            math.cos(elevation) * math.sin(azimuth), math.sin(elevation)),
                                 color=(1.0, 1.0, 1.0), ambient=0.6, diffuse=0.35, specular=0.05)
        if "camera" not in self.without:
            params.camera = self.camera(base_camera)
        if "sensor" not in self.without:
            params.sensor = Compose([RealCameraModel(white_balance=tuple(float(v) for v in wb)), Jpeg(85)])
