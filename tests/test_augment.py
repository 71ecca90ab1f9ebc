"""Batch augmentation: random shift moves content by at most pad pixels; jitter stays in range."""

import torch

from policies.augment import augment, color_jitter, random_shift


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
