"""The episode format: round trip, interrupted appends, and clear errors naming file and row."""

import csv

import cv2
import numpy as np
import pytest

from sim2real.data.episodes import DatasetError, Episode, EpisodeWriter, read_dataset


def make_episode(t=3, size=16, seed=0, success=True, alt=True):
    rng = np.random.default_rng(seed)
    return Episode(
        images=rng.integers(0, 255, (t, size, size, 3), dtype=np.uint8),
        proprio=rng.normal(size=(t, 5)).astype(np.float32),
        action=rng.uniform(-1, 1, (t, 5)).astype(np.float32),
        expert_action=rng.uniform(-1, 1, (t, 5)).astype(np.float32),
        object=rng.normal(size=(t, 4)).astype(np.float32), grasp=rng.normal(size=(t, 4)).astype(np.float32),
        images_alt=rng.integers(0, 255, (t, size, size, 3), dtype=np.uint8) if alt else None,
        has_alt=np.array([True, False, True][:t]) if alt else None, success=success, seed=seed, objects="1,2")


def test_round_trip_keeps_every_field(tmp_path):
    w = EpisodeWriter(tmp_path / "d", meta={"source": "test"})
    eps = [make_episode(seed=0), make_episode(seed=1, success=False)]
    for ep in eps:
        w.append(ep)
    ds = read_dataset(tmp_path / "d")
    assert len(ds) == 6 and ds.meta["source"] == "test"
    np.testing.assert_array_equal(ds.images[:3], eps[0].images)  # PNG is lossless
    np.testing.assert_allclose(ds.proprio[3:], eps[1].proprio, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.expert_action[:3], eps[0].expert_action, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ds.success, [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(ds.has_alt, [True, False, True] * 2)
    np.testing.assert_array_equal(ds.images_alt[2], eps[0].images_alt[2])
    assert [e["objects"] for e in ds.episodes] == ["1,2", "1,2"]
    assert np.isnan(ds.image_points).all()  # not recorded: unknown


def test_image_points_round_trip_and_an_older_folder_gains_the_columns(tmp_path):
    root = tmp_path / "d"
    ep = make_episode(seed=2)
    ep.image_points = np.array([[0.1, 0.2, 0.3, 0.4], [np.nan, np.nan, 0.5, 0.6], [0.7, 0.8, 0.9, 1.0]], np.float32)
    ep.object_points = np.full((3, 8), np.nan, np.float32)
    ep.object_points[:, :4] = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, np.nan, np.nan], [0.7, 0.8, 0.9, 1.0]]
    EpisodeWriter(root).append(ep)
    ds = read_dataset(root)
    np.testing.assert_allclose(ds.image_points, ep.image_points, rtol=1e-5)
    np.testing.assert_allclose(ds.object_points, ep.object_points, rtol=1e-5)
    # A folder written before the columns existed: drop them from the header and the rows.
    with open(root / "steps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    old = [c for c in rows[0] if not c.startswith("uv_")] + ["note"]
    with open(root / "steps.csv", "w", newline="") as f:
        w = csv.DictWriter(f, old, extrasaction="ignore")
        w.writeheader()
        w.writerows([{**r, "note": f"kept {i}"} for i, r in enumerate(rows)])
    assert np.isnan(read_dataset(root).image_points).all()
    w = EpisodeWriter(root)  # reopened: rewritten under today's header, then appended to
    w.append(ep)
    ds = read_dataset(root)
    assert len(ds) == 6 and np.isnan(ds.image_points[:3]).all() and np.isnan(ds.object_points[:3]).all()
    np.testing.assert_allclose(ds.image_points[3:], ep.image_points, rtol=1e-5)
    np.testing.assert_allclose(ds.object_points[3:], ep.object_points, rtol=1e-5)
    np.testing.assert_allclose(ds.proprio[:3], ep.proprio, rtol=1e-5, atol=1e-5)
    with open(root / "steps.csv", newline="") as f:
        kept = [r["note"] for r in csv.DictReader(f)]
    assert kept[:3] == ["kept 0", "kept 1", "kept 2"]  # a column of the user's own survives


def test_reopening_continues_and_drops_an_interrupted_episode(tmp_path):
    root = tmp_path / "d"
    w = EpisodeWriter(root)
    w.append(make_episode(seed=0))
    # An append interrupted after its step rows but before episodes.csv: a dangling episode 1.
    with open(root / "steps.csv") as f:
        rows = list(csv.reader(f))
    dangling = [r[:] for r in rows[1:]]
    for r in dangling:
        r[0] = "1"
    with open(root / "steps.csv", "a", newline="") as f:
        csv.writer(f).writerows(dangling)
    assert len(read_dataset(root)) == 3  # readers ignore it
    w2 = EpisodeWriter(root)  # a resumed writer removes it and continues at index 1
    assert w2.num_episodes == 1
    w2.append(make_episode(seed=5, t=2, alt=False))
    ds = read_dataset(root)
    assert len(ds) == 5 and list(ds.episode) == [0, 0, 0, 1, 1]


def _corrupt_cell(root, column, value, row=1):
    path = root / "steps.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        fields = list(rows[0].keys())
    rows[row][column] = value
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(rows)


@pytest.mark.parametrize("column,value,message", [
    ("ee_x", "abc", "not a number"),
    ("a_dx", "nan", "not finite"),
    ("e_grip", "1.5", "outside [-1, 1]"),
    ("success", "2", "success must be 0 or 1"),
    ("image", "images/missing.png", "does not exist"),
])
def test_bad_cells_name_the_file_and_row(tmp_path, column, value, message):
    root = tmp_path / "d"
    EpisodeWriter(root).append(make_episode())
    _corrupt_cell(root, column, value, row=1)
    with pytest.raises(DatasetError) as e:
        read_dataset(root)
    assert "steps.csv" in str(e.value) or "missing.png" in str(e.value)
    assert "row 3" in str(e.value) and message in str(e.value)


def test_undecodable_and_mismatched_images(tmp_path):
    root = tmp_path / "d"
    EpisodeWriter(root).append(make_episode())
    (root / "images" / "000000_001.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="000000_001.png.*does not decode"):
        read_dataset(root)
    ds = read_dataset(root, skip_bad=True)
    assert len(ds) == 2 and len(ds.meta["skipped"]) == 1
    cv2.imwrite(str(root / "images" / "000000_001.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match="differs from the first image"):
        read_dataset(root)
    assert read_dataset(root, image_size=16).images.shape == (3, 16, 16, 3)


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="dataset.json"):
        read_dataset(tmp_path)
