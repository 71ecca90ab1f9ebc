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


def _contrast(image: np.ndarray) -> float:
    """Mean absolute step between horizontally neighbouring pixels (fine-scale contrast)."""
    return float(np.abs(np.diff(image.astype(int), axis=1)).mean())


def test_photos_are_shrunk_copies_of_the_shipped_images(tmp_path, monkeypatch):
    """PyBullet copies a texture's pixels at every swap, so the photographs are loaded shrunk: the
    same picture (texels of the original, not averages), longest side PHOTO_MAX_SIDE, aspect kept,
    written once."""
    import cv2
    import pybullet_data

    monkeypatch.setenv("SIM2REAL_CACHE", str(tmp_path))
    textures.texture_files.cache_clear()
    try:
        photos = textures.texture_files()["photo"]
        assert len(photos) == len(textures.PHOTOS)
        for path, name in zip(photos, textures.PHOTOS, strict=True):
            assert path.startswith(str(tmp_path))
            small = cv2.imread(path)
            shipped = cv2.imread(f"{pybullet_data.getDataPath()}/{name}")
            assert max(small.shape[:2]) == min(textures.PHOTO_MAX_SIDE, max(shipped.shape[:2])), name
            assert abs(small.shape[0] / small.shape[1] - shipped.shape[0] / shipped.shape[1]) < 0.02, name
            # The same picture, and its own texels: decimating the shipped image gives it exactly,
            # and it keeps the fine-scale contrast that averaging would smooth away.
            ref = cv2.resize(shipped, small.shape[1::-1], interpolation=cv2.INTER_NEAREST)
            assert np.array_equal(ref, small), name
            if max(shipped.shape[:2]) > textures.PHOTO_MAX_SIDE:
                smooth = cv2.resize(shipped, small.shape[1::-1], interpolation=cv2.INTER_AREA)
                assert _contrast(small) > _contrast(smooth), name
        stamp = [(tmp_path / p).stat().st_mtime_ns for p in photos]
        textures.texture_files.cache_clear()
        assert textures.texture_files()["photo"] == photos
        assert [(tmp_path / p).stat().st_mtime_ns for p in photos] == stamp
    finally:
        textures.texture_files.cache_clear()


def _frames(n: int = 3, size: int = 48) -> np.ndarray:
    """Frames whose every pixel says where it came from: R = column, G = row, B = frame index."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([np.stack([x * 5, y * 5, np.full_like(x, 40 * k)], axis=-1) for k in range(n)]).astype(np.uint8)


def test_cut_textures_are_patches_of_the_given_frames():
    frames = _frames()
    cut = textures.cut_textures(frames, 12, np.random.default_rng(0), side=(0.25, 0.5))
    assert cut.shape == (12, TEXTURE_SIZE, TEXTURE_SIZE, 3) and cut.dtype == np.uint8
    for patch in cut:
        # One frame (constant blue), a square window 12-24 px across (columns and rows span that range).
        assert patch[..., 2].min() == patch[..., 2].max() and patch[0, 0, 2] in (0, 40, 80)
        cols = (patch[..., 0].max() - patch[..., 0].min()) / 5 + 1
        rows = (patch[..., 1].max() - patch[..., 1].min()) / 5 + 1
        assert 11 <= cols <= 25 and abs(cols - rows) <= 1.5, (cols, rows)
    # Seeded: the same generator gives the same patches; another gives others, from more than one frame.
    assert np.array_equal(cut, textures.cut_textures(frames, 12, np.random.default_rng(0), side=(0.25, 0.5)))
    assert len({int(p[0, 0, 2]) for p in cut}) > 1


@pytest.mark.parametrize("images, side, message", [
    (np.zeros((0, 8, 8, 3), np.uint8), (0.25, 0.5), "N >= 1"), (np.zeros((8, 8, 3), np.uint8), (0.25, 0.5), "shape"),
    (np.zeros((2, 8, 8, 3), np.uint8), (0.0, 0.5), "side"), (np.zeros((2, 8, 8, 3), np.uint8), (0.6, 0.5), "side")])
def test_cut_textures_refuses_bad_input(images, side, message):
    with pytest.raises(ValueError, match=message):
        textures.cut_textures(images, 2, np.random.default_rng(0), side=side)


def test_written_target_textures_read_back_and_are_never_overwritten(tmp_path):
    cut = textures.cut_textures(_frames(), 3, np.random.default_rng(1))
    paths = textures.write_textures(cut, tmp_path / "t")
    assert textures.target_texture_files(tmp_path / "t") == paths and len(paths) == 3
    import cv2

    assert np.array_equal(cv2.imread(paths[1])[:, :, ::-1], cut[1])  # RGB in, the same RGB back
    with pytest.raises(FileExistsError, match="already holds textures"):
        textures.write_textures(cut, tmp_path / "t")
    with pytest.raises(ValueError, match="no such folder"):
        textures.target_texture_files(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no PNG textures"):
        textures.target_texture_files(tmp_path / "empty")


def test_a_texture_that_cannot_be_written_is_an_error_naming_it(tmp_path, monkeypatch):
    cut = textures.cut_textures(_frames(), 2, np.random.default_rng(1))
    calls = []
    real_imwrite = textures.cv2.imwrite

    def second_fails(path, image):  # the first texture is really written, the second is not
        calls.append(path)
        return len(calls) < 2 and real_imwrite(path, image)

    monkeypatch.setattr(textures.cv2, "imwrite", second_fails)
    with pytest.raises(OSError, match="texture_001.png: could not write"):
        textures.write_textures(cut, tmp_path / "t")
    assert (tmp_path / "t" / "texture_000.png").exists() is False  # taken back: the folder is as it was
    monkeypatch.setattr(textures.cv2, "imwrite", real_imwrite)
    assert len(textures.write_textures(cut, tmp_path / "t")) == 2  # so a re-run is not refused


def test_write_image_is_atomic_and_names_what_failed(tmp_path, monkeypatch):
    out = tmp_path / "grid.png"
    textures.write_image(out, np.zeros((4, 4, 3), np.uint8), "the grid")
    textures.write_image(out, np.full((4, 4, 3), 7, np.uint8), "the grid")  # replaces: the caller's output
    import cv2

    assert int(cv2.imread(str(out))[0, 0, 0]) == 7 and [p.name for p in tmp_path.iterdir()] == ["grid.png"]
    monkeypatch.setattr(textures.cv2, "imwrite", lambda path, image: False)
    with pytest.raises(OSError, match="grid.png: could not write the grid"):
        textures.write_image(out, np.zeros((4, 4, 3), np.uint8), "the grid")
    assert int(cv2.imread(str(out))[0, 0, 0]) == 7 and [p.name for p in tmp_path.iterdir()] == ["grid.png"]
    with pytest.raises(OSError, match="no_such_folder/x.png: could not write"):
        monkeypatch.undo()
        textures.write_image(tmp_path / "no_such_folder" / "x.png", np.zeros((4, 4, 3), np.uint8), "x")


def test_write_once_writes_a_missing_file_only_and_skips_a_source_that_gives_nothing(tmp_path):
    calls = []

    def make():
        calls.append(1)
        return np.full((4, 4, 3), 7, np.uint8)

    path = tmp_path / "t.png"
    assert textures.write_once(path, make) == str(path) and path.is_file()
    assert textures.write_once(path, make) == str(path) and len(calls) == 1  # there already: not made again
    skipped = tmp_path / "unreadable.png"
    assert textures.write_once(skipped, lambda: None) is None and not skipped.exists()


def test_texture_kind_names_what_a_surface_wears():
    from envs.textures import texture_kind

    assert texture_kind("white") == "plain"
    assert [texture_kind(f"procedural_{i}") for i in range(len(KINDS))] == list(KINDS)
    assert texture_kind(f"procedural_{len(KINDS) + 5}") == KINDS[5]  # the pool cycles through the kinds
    assert texture_kind("photo_3") == "photo" and texture_kind("target_0") == "target"
    assert texture_kind("real_2") == "proxy"
    for bad in ("photo", "procedural_x", "marble_1", ""):
        with pytest.raises(ValueError, match="unknown texture key"):
            texture_kind(bad)
