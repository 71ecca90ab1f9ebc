"""Batch augmentation: random shift moves content by at most pad pixels; jitter stays in range;
style mixing moves only the low frequencies towards a target camera's."""

import pytest
import torch

from policies.augment import amplitude_spectra, augment, color_jitter, low_band, random_shift, style_mix


def test_random_shift_is_a_translation_within_pad():
    torch.manual_seed(0)
    img = torch.zeros(8, 3, 32, 32)
    img[:, :, 16, 16] = 1.0  # one bright pixel
    out = random_shift(img, pad=4, generator=torch.Generator().manual_seed(1))
    assert out.shape == img.shape
    for i in range(8):
        ys, xs = torch.nonzero(out[i, 0], as_tuple=True)
        assert len(ys) == 1 and abs(int(ys[0]) - 16) <= 4 and abs(int(xs[0]) - 16) <= 4
    moved = [torch.nonzero(out[i, 0]).tolist() != [[16, 16]] for i in range(8)]
    assert any(moved)


def test_random_shift_reports_the_translation_it_applied():
    img = torch.zeros(6, 3, 32, 32)
    img[:, :, 10, 20] = 1.0  # y = 10, x = 20
    out, shift = random_shift(img, pad=3, generator=torch.Generator().manual_seed(2), return_shift=True)
    for i in range(6):
        ys, xs = torch.nonzero(out[i, 0], as_tuple=True)
        assert (int(xs[0]), int(ys[0])) == (20 + int(shift[i, 0]), 10 + int(shift[i, 1]))


def test_color_jitter_changes_colour_but_stays_in_range():
    img = torch.rand(16, 3, 8, 8)
    out = color_jitter(img, 0.4, torch.Generator().manual_seed(0))
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, img)
    assert torch.equal(color_jitter(img, 0.0), img)


def test_zero_strength_augment_is_identity():
    img = torch.rand(4, 3, 16, 16)
    assert torch.equal(augment(img, pad=0, jitter=0.0), img)


def test_low_band_holds_the_frequencies_near_zero_on_both_axes():
    assert low_band(16, 16, 0).sum() == 1 and low_band(16, 16, 0)[0, 0]
    mask = low_band(16, 16, 2)
    assert mask.shape == (16, 9) and mask.sum() == 5 * 3
    assert mask[15, 2] and mask[14, 0] and not mask[13, 0] and not mask[0, 3] and not mask[3, 0]


def test_style_mix_takes_a_targets_colour_and_keeps_the_content():
    gen = torch.Generator().manual_seed(0)
    images = 0.4 + 0.2 * torch.rand(16, 3, 32, 32, generator=gen)
    # Its own spectrum as the target: nothing to move towards, so the image comes back.
    same = images[:1].repeat(4, 1, 1, 1)
    own = style_mix(same, amplitude_spectra(images[:1]), 1.0, 2, torch.Generator().manual_seed(1))
    torch.testing.assert_close(own, same, rtol=0, atol=1e-5)
    # A warm, dim target (red high, blue low): the overall colour moves towards it, never away.
    target = torch.zeros(1, 3, 32, 32)
    target[:, 0], target[:, 1], target[:, 2] = 0.7, 0.45, 0.2
    out = style_mix(images, amplitude_spectra(target), 1.0, 2, torch.Generator().manual_seed(2))
    before, after = images.mean(dim=(2, 3)), out.mean(dim=(2, 3))
    assert (after[:, 0] >= before[:, 0] - 1e-4).all() and (after[:, 2] <= before[:, 2] + 1e-4).all()
    assert (after[:, 0] - before[:, 0]).mean() > 0.05 and (before[:, 2] - after[:, 2]).mean() > 0.05
    # The content (what is left after the low band) is kept: the detail of each image is unchanged.
    def detail(x: torch.Tensor) -> torch.Tensor:
        f = torch.fft.rfft2(x)
        f[..., low_band(32, 32, 2)] = 0
        return torch.fft.irfft2(f, s=(32, 32))
    torch.testing.assert_close(detail(out), detail(images), rtol=0, atol=1e-4)
    assert out.min() >= 0 and out.max() <= 1


def test_style_mix_is_off_without_a_target_or_chance_and_picks_images_at_its_probability():
    images = torch.rand(64, 3, 16, 16)
    spectra = amplitude_spectra(torch.rand(3, 3, 16, 16))
    assert style_mix(images, None, 1.0) is images and style_mix(images, spectra, 0.0) is images
    out = style_mix(images, spectra, 0.5, 1, torch.Generator().manual_seed(0))
    changed = (out != images).flatten(1).any(dim=1)
    assert 16 < int(changed.sum()) < 48  # about half
    with pytest.raises(ValueError, match="do not match"):
        style_mix(images, amplitude_spectra(torch.rand(3, 3, 32, 32)), 1.0)
