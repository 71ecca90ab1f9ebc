"""Sensor corruptions: small composable pieces that map one RGB frame to another.

Each piece is a callable ``piece(image, rng) -> image`` on uint8 (H, W, 3) RGB arrays, with
``reset()`` for pieces that remember past frames. They do not depend on the simulator, so the
same pipeline can wrap a real camera stream::

    pipeline = Compose([GaussianBlur(0.8), GaussianNoise(4.0), Jpeg(60)])
    rng = np.random.default_rng(0)
    for frame in camera:
        frame = pipeline(frame, rng)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np


class Corruption:
    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget past frames (start of an episode or of a new stream)."""


@dataclass
class GaussianNoise(Corruption):
    """Additive i.i.d. Gaussian pixel noise; std on the 0-255 scale."""

    std: float

    def __call__(self, image, rng):
        if self.std <= 0:
            return image
        noisy = image.astype(np.float32) + rng.normal(0.0, self.std, image.shape).astype(np.float32)
        return np.clip(noisy, 0, 255).astype(np.uint8)


@dataclass
class GaussianBlur(Corruption):
    """Defocus / motion-free blur with a Gaussian kernel of the given sigma in pixels."""

    sigma: float

    def __call__(self, image, rng):
        if self.sigma <= 0.05:
            return image
        return cv2.GaussianBlur(image, (0, 0), sigmaX=self.sigma, borderType=cv2.BORDER_REFLECT)


@dataclass
class ColorJitter(Corruption):
    """Brightness (additive, fraction of 255), contrast and saturation (multipliers), hue shift
    (fraction of the hue circle): a fixed camera / white-balance response for one stream."""

    brightness: float = 0.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0

    def __call__(self, image, rng):
        if (self.brightness, self.contrast, self.saturation, self.hue) == (0.0, 1.0, 1.0, 0.0):
            return image
        img = image.astype(np.float32)
        if self.hue != 0.0 or self.saturation != 1.0:
            hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
            hsv[..., 0] = (hsv[..., 0] + self.hue * 256.0) % 256.0
            hsv[..., 1] = np.clip(hsv[..., 1] * self.saturation, 0, 255)
            img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB_FULL).astype(np.float32)
        mean = img.mean()
        img = (img - mean) * self.contrast + mean + self.brightness * 255.0
        return np.clip(img, 0, 255).astype(np.uint8)


@dataclass
class Jpeg(Corruption):
    """JPEG compression artefacts at the given quality (1-100)."""

    quality: int

    def __call__(self, image, rng):
        if self.quality >= 100:
            return image
        ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(self.quality)])
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
            return image
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


@dataclass
class FrameDrop(Corruption):
    """With the given probability, a frame is lost and the previous one is delivered again."""

    probability: float
    _last: np.ndarray | None = field(default=None, repr=False)

    def __call__(self, image, rng):
        if self._last is not None and self.probability > 0 and rng.random() < self.probability:
            return self._last
        self._last = image
        return image

    def reset(self):
        self._last = None


@dataclass
class FrameDelay(Corruption):
    """Deliver the frame captured ``steps`` calls ago (the first frames repeat the oldest)."""

    steps: int
    _queue: deque = field(default_factory=deque, repr=False)

    def __call__(self, image, rng):
        if self.steps <= 0:
            return image
        self._queue.append(image)
        while len(self._queue) > self.steps + 1:
            self._queue.popleft()
        return self._queue[0]

    def reset(self):
        self._queue.clear()


@dataclass
class Compose(Corruption):
    """Apply pieces in order; ``reset`` resets them all."""

    pieces: Sequence[Corruption] = ()

    def __call__(self, image, rng):
        for piece in self.pieces:
            image = piece(image, rng)
        return image

    def reset(self):
        for piece in self.pieces:
            piece.reset()


def sample_pipeline(sensor, rng: np.random.Generator) -> Compose:
    """A pipeline whose parameters are drawn from a ``SensorRandomization`` config for one
    episode: delay and drops first (they act on whole frames, as in the camera driver), then the
    optics (blur), the camera's colour response, sensor noise, and compression last."""
    pieces: list[Corruption] = []
    delay = int(round(sensor.delay.sample(rng)))
    if delay > 0:
        pieces.append(FrameDelay(delay))
    drop = sensor.drop_probability.sample(rng)
    if drop > 0:
        pieces.append(FrameDrop(drop))
    blur = sensor.blur_sigma.sample(rng)
    if blur > 0.05:
        pieces.append(GaussianBlur(blur))
    jitter = ColorJitter(sensor.brightness.sample(rng), sensor.contrast.sample(rng),
                         sensor.saturation.sample(rng), sensor.hue_shift.sample(rng))
    if (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) != (0.0, 1.0, 1.0, 0.0):
        pieces.append(jitter)
    noise = sensor.noise_std.sample(rng)
    if noise > 0:
        pieces.append(GaussianNoise(noise))
    quality = int(round(sensor.jpeg_quality.sample(rng)))
    if quality < 100:
        pieces.append(Jpeg(quality))
    return Compose(pieces)
