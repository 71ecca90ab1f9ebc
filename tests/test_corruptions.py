"""Sensor corruption pieces on synthetic images: no simulator involved."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from envs.corruptions import (
    ColorJitter,
    Compose,
    Corruption,
    FrameDelay,
    FrameDrop,
    GaussianBlur,
    GaussianNoise,
    Jpeg,
)


def _textured(seed: int = 0, size: int = 64) -> np.ndarray:
    """A uint8 RGB image with smooth structure plus fine detail, away from 0 and 255."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = 128 + 50 * np.sin(2 * np.pi * 3 * x)[..., None] * np.array([1.0, 0.6, -0.4])
    detail = rng.uniform(-40, 40, (size, size, 3))
    return np.clip(base + detail * (y[..., None] > 0.3), 20, 235).astype(np.uint8)


def _checkerboard(size: int = 64, cell: int = 1) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    board = (((x // cell) + (y // cell)) % 2).astype(np.uint8) * 200 + 28
    return np.repeat(board[..., None], 3, axis=2)


def _high_frequency_energy(image: np.ndarray) -> float:
    """Energy of the upper half of the spatial spectrum (per channel, summed)."""
    f = image.astype(np.float64)
    f -= f.mean(axis=(0, 1))
    spec = np.abs(np.fft.fft2(f, axes=(0, 1))) ** 2
    h, w = image.shape[:2]
    fy = np.abs(np.fft.fftfreq(h))[:, None]
    fx = np.abs(np.fft.fftfreq(w))[None, :]
    high = np.maximum(fx, fy) >= 0.25
    return float(spec[high].sum())


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _frames(n: int, size: int = 8) -> list[np.ndarray]:
    """n distinguishable frames: frame k is filled with the value 10 * (k + 1)."""
    return [np.full((size, size, 3), 10 * (k + 1), np.uint8) for k in range(n)]


# ----------------------------------------------------------------------------- GaussianNoise
def test_gaussian_noise_has_the_requested_std(rng):
    image = np.full((128, 128, 3), 128, np.uint8)  # mid grey: no clipping at std 10
    out = GaussianNoise(10.0)(image, rng)
    assert out.dtype == np.uint8 and out.shape == image.shape
    diff = out.astype(np.float64) - image
    assert abs(diff.std() - 10.0) < 0.5
    # Zero-mean up to the uint8 conversion (which truncates: a bias of about -0.5 grey level).
    assert abs(diff.mean()) < 0.75
    assert not np.array_equal(out, image)


def test_gaussian_noise_scales_with_std(rng):
    image = np.full((96, 96, 3), 128, np.uint8)
    small = GaussianNoise(2.0)(image, rng).astype(np.float64) - image
    large = GaussianNoise(20.0)(image, rng).astype(np.float64) - image
    assert 1.6 < small.std() < 2.4
    assert 18.5 < large.std() < 21.5


def test_gaussian_noise_zero_std_is_identity(rng):
    image = _textured()
    assert np.array_equal(GaussianNoise(0.0)(image, rng), image)


def test_gaussian_noise_clips_to_uint8_range(rng):
    image = np.zeros((32, 32, 3), np.uint8)
    image[:16] = 255
    out = GaussianNoise(50.0)(image, rng)
    assert out.dtype == np.uint8
    # Half the noise at a 0 pixel is negative and must clip to 0, not wrap around to ~255.
    assert (out[16:] == 0).mean() > 0.4
    assert (out[:16] == 255).mean() > 0.4


# ------------------------------------------------------------------------------ GaussianBlur
def test_gaussian_blur_reduces_high_frequency_energy(rng):
    image = _checkerboard(cell=1)
    out = GaussianBlur(1.5)(image, rng)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert _high_frequency_energy(out) < 0.05 * _high_frequency_energy(image)
    # Blur preserves the mean brightness.
    assert abs(out.astype(float).mean() - image.astype(float).mean()) < 2.0


def test_gaussian_blur_stronger_sigma_removes_more(rng):
    image = _textured()
    weak = _high_frequency_energy(GaussianBlur(0.6)(image, rng))
    strong = _high_frequency_energy(GaussianBlur(2.0)(image, rng))
    assert strong < weak < _high_frequency_energy(image)


def test_gaussian_blur_tiny_sigma_is_identity(rng):
    image = _textured()
    assert np.array_equal(GaussianBlur(0.0)(image, rng), image)


# ------------------------------------------------------------------------------- ColorJitter
def test_color_jitter_brightness_raises_mean(rng):
    image = _textured()
    out = ColorJitter(brightness=0.1)(image, rng)
    # Additive 0.1 of full scale = +25.5 on every pixel; the textured image never reaches 230.
    assert out.astype(float).mean() == pytest.approx(image.astype(float).mean() + 25.5, abs=1.0)
    darker = ColorJitter(brightness=-0.1)(image, rng)
    assert darker.astype(float).mean() < image.astype(float).mean() - 20


def test_color_jitter_contrast_scales_spread_around_mean(rng):
    image = _textured()
    low = ColorJitter(contrast=0.5)(image, rng).astype(float)
    high = ColorJitter(contrast=1.5)(image, rng).astype(float)
    std = image.astype(float).std()
    assert low.std() == pytest.approx(0.5 * std, rel=0.05)
    assert high.std() > 1.3 * std
    assert low.mean() == pytest.approx(image.astype(float).mean(), abs=1.0)


def test_color_jitter_zero_saturation_gives_grey(rng):
    image = _textured()
    assert np.abs(np.diff(image.astype(int), axis=2)).mean() > 10
    grey = ColorJitter(saturation=0.0)(image, rng).astype(int)
    assert np.abs(np.diff(grey, axis=2)).max() <= 1


def test_color_jitter_hue_shift_rotates_colours(rng):
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 220
    # A third of the hue circle turns red into green.
    out = ColorJitter(hue=1 / 3)(red, rng).astype(int)
    r, g, b = out[..., 0].mean(), out[..., 1].mean(), out[..., 2].mean()
    assert g > 180 and r < 40 and b < 40


def test_color_jitter_identity_parameters(rng):
    image = _textured()
    assert np.array_equal(ColorJitter()(image, rng), image)


# ---------------------------------------------------------------------------------- Jpeg
def test_jpeg_low_quality_changes_image(rng):
    image = _textured()
    out = Jpeg(10)(image, rng)
    assert out.shape == image.shape and out.dtype == np.uint8
    err10 = np.abs(out.astype(int) - image).mean()
    err90 = np.abs(Jpeg(90)(image, rng).astype(int) - image).mean()
    assert err10 > 3.0
    assert err90 < err10


def test_jpeg_keeps_channel_order(rng):
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 200
    out = Jpeg(50)(red, rng).astype(int)
    assert out[..., 0].mean() > 150 and out[..., 2].mean() < 50


def test_jpeg_quality_100_is_identity(rng):
    image = _textured()
    assert np.array_equal(Jpeg(100)(image, rng), image)


# ------------------------------------------------------------------------- FrameDrop / Delay
def test_frame_drop_probability_one_returns_previous_frame(rng):
    drop = FrameDrop(1.0)
    f = _frames(4)
    # Nothing to repeat yet: the first frame passes.
    assert np.array_equal(drop(f[0], rng), f[0])
    for frame in f[1:]:
        assert np.array_equal(drop(frame, rng), f[0])


def test_frame_drop_probability_zero_passes_every_frame(rng):
    drop = FrameDrop(0.0)
    for frame in _frames(5):
        assert np.array_equal(drop(frame, rng), frame)


def test_frame_drop_rate_matches_probability(rng):
    drop = FrameDrop(0.3)
    frames = [np.full((2, 2, 3), k % 256, np.uint8) for k in range(2001)]
    drop(frames[0], rng)
    dropped = sum(not np.array_equal(drop(f, rng), f) for f in frames[1:])
    assert 0.25 < dropped / 2000 < 0.35


def test_frame_drop_reset_forgets_last_frame(rng):
    drop = FrameDrop(1.0)
    f = _frames(3)
    drop(f[0], rng)
    drop.reset()
    assert np.array_equal(drop(f[1], rng), f[1])
    assert np.array_equal(drop(f[2], rng), f[1])


def test_frame_delay_two_returns_frame_t_minus_2(rng):
    delay = FrameDelay(2)
    f = _frames(6)
    out = [delay(frame, rng) for frame in f]
    # The first frames repeat the oldest one, then frame t - 2.
    assert np.array_equal(out[0], f[0])
    assert np.array_equal(out[1], f[0])
    for t in range(2, 6):
        assert np.array_equal(out[t], f[t - 2]), t


def test_frame_delay_zero_is_identity(rng):
    delay = FrameDelay(0)
    for frame in _frames(3):
        assert np.array_equal(delay(frame, rng), frame)


def test_frame_delay_reset_clears_queue(rng):
    delay = FrameDelay(2)
    f = _frames(6)
    for frame in f[:4]:
        delay(frame, rng)
    delay.reset()
    assert np.array_equal(delay(f[4], rng), f[4])
    assert np.array_equal(delay(f[5], rng), f[4])


# ---------------------------------------------------------------------------------- Compose
class _Record(Corruption):
    def __init__(self, tag: str, log: list[str]) -> None:
        self.tag, self.log, self.resets = tag, log, 0

    def __call__(self, image, rng):
        self.log.append(self.tag)
        return image

    def reset(self):
        self.resets += 1


def test_compose_applies_pieces_in_order(rng):
    log: list[str] = []
    pieces = [_Record("a", log), _Record("b", log), _Record("c", log)]
    Compose(pieces)(np.zeros((4, 4, 3), np.uint8), rng)
    assert log == ["a", "b", "c"]

    # Order matters for non-commuting pieces: black-then-brighten versus brighten-then-black.
    image = _textured()
    black, brighten = ColorJitter(brightness=-1.0), ColorJitter(brightness=0.5)
    first = Compose([black, brighten])(image, rng)
    second = Compose([brighten, black])(image, rng)
    assert np.all(second == 0)
    assert np.all(np.abs(first.astype(int) - 127) <= 1)


def test_compose_matches_manual_chain():
    image = _textured()
    pieces = [GaussianBlur(0.8), ColorJitter(brightness=0.05, contrast=1.1), GaussianNoise(4.0), Jpeg(60)]
    out = Compose(pieces)(image, np.random.default_rng(5))
    manual, rng = image, np.random.default_rng(5)
    for p in pieces:
        manual = p(manual, rng)
    assert np.array_equal(out, manual)


def test_compose_reset_resets_every_piece(rng):
    log: list[str] = []
    rec = _Record("r", log)
    delay = FrameDelay(1)
    pipe = Compose([delay, rec])
    f = _frames(3)
    pipe(f[0], rng)
    assert np.array_equal(pipe(f[1], rng), f[0])
    pipe.reset()
    assert rec.resets == 1
    # After reset no stale frame from the previous stream comes out.
    assert np.array_equal(pipe(f[2], rng), f[2])


def test_empty_compose_is_identity(rng):
    image = _textured()
    assert np.array_equal(Compose()(image, rng), image)


def test_corruptions_are_deterministic_given_rng():
    frames = [_textured(k) for k in range(5)]
    pipe = Compose([FrameDrop(0.5), GaussianNoise(6.0), Jpeg(40)])

    def run():
        pipe.reset()
        rng = np.random.default_rng(3)
        return [pipe(f, rng) for f in frames]

    a, b = run(), run()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    pipe.reset()
    rng = np.random.default_rng(4)
    c = [pipe(f, rng) for f in frames]
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_pieces_work_on_a_real_camera_like_stream():
    """The pipeline wraps any uint8 RGB stream (what a real camera driver delivers)."""
    rng = np.random.default_rng(0)
    stream = [cv2.resize(_textured(k), (48, 36)) for k in range(4)]
    pipe = Compose([FrameDelay(1), GaussianBlur(0.8), GaussianNoise(4.0), Jpeg(60)])
    out = [pipe(frame, rng) for frame in stream]
    assert all(o.shape == (36, 48, 3) and o.dtype == np.uint8 for o in out)
    # Output t is a corrupted version of input t - 1: closer to it than to input t.
    for t in range(1, 4):
        to_prev = np.abs(out[t].astype(int) - stream[t - 1]).mean()
        to_now = np.abs(out[t].astype(int) - stream[t]).mean()
        assert to_prev < to_now
