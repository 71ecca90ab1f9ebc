"""The procedural texture pool: every kind renders, is reproducible, and the pool is varied."""

from __future__ import annotations

import numpy as np
import pytest

from envs import textures
from envs.textures import KINDS, NUM_PROCEDURAL, TEXTURE_SIZE, _procedural


@pytest.mark.parametrize("index", range(len(KINDS)))
def test_every_kind_is_an_rgb_image_with_structure(index):
    img = _procedural(index)
    assert img.shape == (TEXTURE_SIZE, TEXTURE_SIZE, 3) and img.dtype == np.uint8
    # Not flat: a texture shows a pattern (the grey-level spread is well above sensor noise).
    assert img.astype(float).std() > 5, KINDS[index]
    # Same index, same image (every worker process builds the same pool).
    assert np.array_equal(img, _procedural(index))


def test_pool_covers_every_kind_with_distinct_textures():
    assert NUM_PROCEDURAL % len(KINDS) == 0 and NUM_PROCEDURAL >= 2 * len(KINDS)
    a, b = _procedural(4), _procedural(4 + len(KINDS))  # the same kind, two draws
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 10


@pytest.mark.parametrize("kind", ["fractal", "cells"])
def test_periodic_kinds_tile_without_a_seam(kind):
    """Surfaces repeat their texture: across the wrap-around the step between neighbouring pixels
    is no larger than inside the image."""
    img = _procedural(KINDS.index(kind)).astype(float)
    inside = np.abs(np.diff(img, axis=1)).mean()
    seam = np.abs(img[:, 0] - img[:, -1]).mean()
    assert seam < 2.5 * inside + 1.0, (seam, inside)


def test_texture_files_are_written_once_and_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("SIM2REAL_CACHE", str(tmp_path))
    textures.texture_files.cache_clear()
    try:
        files = textures.texture_files()
        assert len(files["procedural"]) == NUM_PROCEDURAL
        stamp = {p: (tmp_path / p).stat().st_mtime_ns for p in files["procedural"]}
        textures.texture_files.cache_clear()
        assert textures.texture_files() == files
        assert {p: (tmp_path / p).stat().st_mtime_ns for p in files["procedural"]} == stamp
    finally:
        textures.texture_files.cache_clear()
