"""Real data formats: detection from marker files, ``load_real`` on the native format, and the
calibration check ``compare_cameras``."""

import json

import numpy as np
import pytest

from envs.camera import Camera
from sim2real.data.episodes import DatasetError
from sim2real.data.formats import FORMATS, compare_cameras, detect_format, load_real


# ------------------------------------------------------------------------- detection
def test_native_folder_is_detected(real_dataset):
    assert detect_format(real_dataset) == "native"


def test_lerobot_folder_is_detected(tmp_path):
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v2.1"}))
    assert detect_format(tmp_path) == "lerobot"


def test_native_marker_wins_over_others(tmp_path):
    (tmp_path / "dataset.json").write_text("{}")
    (tmp_path / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    assert detect_format(tmp_path) == "native"


def test_rosbag2_folder_is_detected(tmp_path):
    (tmp_path / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    assert detect_format(tmp_path) == "rosbag2"


@pytest.mark.parametrize("name, fmt", [("session.db3", "rosbag2"), ("session.mcap", "rosbag2"),
                                       ("session.bag", "rosbag1")])
def test_bag_files_are_detected_by_suffix(tmp_path, name, fmt):
    path = tmp_path / name
    path.write_bytes(b"\0" * 16)
    assert detect_format(path) == fmt


def test_folder_with_one_ros1_bag_is_rosbag1_but_two_are_ambiguous(tmp_path):
    (tmp_path / "a.bag").write_bytes(b"\0")
    assert detect_format(tmp_path) == "rosbag1"
    (tmp_path / "b.bag").write_bytes(b"\0")
    with pytest.raises(DatasetError, match="cannot tell the format"):
        detect_format(tmp_path)


def test_unknown_folder_names_the_path_and_lists_every_format(tmp_path):
    folder = tmp_path / "mystery"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError) as info:
        detect_format(folder)
    message = str(info.value)
    assert str(folder) in message
    for fmt in FORMATS:
        assert fmt in message


def test_other_file_and_missing_path_are_named(tmp_path):
    text = tmp_path / "data.csv"
    text.write_text("a,b\n")
    with pytest.raises(DatasetError, match="data.csv"):
        detect_format(text)
    with pytest.raises(DatasetError, match="does not exist"):
        detect_format(tmp_path / "nothing-here")


# --------------------------------------------------------------------------- loading
def test_load_real_reads_the_native_format(real_dataset):
    ds = load_real(real_dataset)
    assert len(ds) == 36 and ds.images.shape == (36, 64, 64, 3) and ds.images.dtype == np.uint8
    assert sorted(set(ds.episode.tolist())) == list(range(6))
    assert ds.meta["skipped"] == [] and ds.meta["camera"] == Camera().to_dict()
    # Labels as written: 5 episodes x 4 rows with a grasp pose, successes 1 / 0 / unknown.
    assert int(np.isfinite(ds.grasp).all(axis=1).sum()) == 20
    assert np.isnan(ds.success[ds.episode == 5]).all() and (ds.success[ds.episode == 4] == 0).all()
    assert not ds.has_alt.any()  # real data: alternate renders are never loaded


def test_load_real_resizes_to_the_policy_image_size(real_dataset):
    ds = load_real(real_dataset, image_size=32)
    assert ds.images.shape == (36, 32, 32, 3)


def test_load_real_reports_the_native_reader_in_meta(real_dataset):
    """``meta["format"]`` says which reader was used (docstring of ``load_real``; the LeRobot and ROS
    readers set "lerobot" / "rosbag1" / "rosbag2"), and ``adapt_run`` writes it into the adapted run's
    config and report. The native folder's own ``dataset.json`` has "format": "sim2real-episodes",
    which must not leak through as the reader name."""
    assert load_real(real_dataset).meta["format"] == "native"


def test_load_real_rejects_an_unknown_format_and_options_the_reader_ignores(real_dataset):
    with pytest.raises(DatasetError) as info:
        load_real(real_dataset, fmt="hdf5")
    assert "hdf5" in str(info.value)
    for fmt in FORMATS:
        assert fmt in str(info.value)
    with pytest.raises(DatasetError, match="image_topic"):
        load_real(real_dataset, image_topic="/camera/image_raw")


def test_load_real_with_a_forced_format_that_does_not_fit(tmp_path):
    with pytest.raises(DatasetError, match="dataset.json"):
        load_real(tmp_path, fmt="native")


# ---------------------------------------------------------------------------- camera
def test_identical_cameras_agree():
    cam = Camera().to_dict()
    out = compare_cameras(cam, cam)
    assert out["agrees"] is True
    assert out["position_cm"] == pytest.approx(0, abs=1e-9)
    assert out["angle_deg"] == pytest.approx(0, abs=1e-3)
    assert out["focal_rel"] == 0 and out["centre_rel"] == 0


def test_a_calibration_at_another_resolution_compares_relative_to_the_image():
    cam = Camera()
    out = compare_cameras(cam.to_dict(), cam.with_image_size(64, 64).to_dict())
    assert out["agrees"] is True and out["focal_rel"] == pytest.approx(0, abs=1e-9)


def test_a_camera_moved_by_3_cm_disagrees_and_says_by_how_much():
    cam = Camera()
    moved = cam.perturbed(np.array([0.0, 0.03, 0.0]), np.zeros(3), 1.0)
    out = compare_cameras(cam.to_dict(), moved.to_dict())
    assert out["agrees"] is False
    assert out["position_cm"] == pytest.approx(3.0, abs=1e-6)
    assert out["angle_deg"] == pytest.approx(0, abs=1e-3)
    assert "3.0 cm" in out["message"]


def test_rotation_and_focal_length_are_measured():
    cam = Camera()
    tilted = cam.perturbed(np.zeros(3), np.array([0.0, np.radians(2.0), 0.0]), 1.05)
    out = compare_cameras(cam.to_dict(), tilted.to_dict())
    assert out["agrees"] is False
    assert out["angle_deg"] == pytest.approx(2.0, abs=1e-3)
    assert out["focal_rel"] == pytest.approx(0.05, abs=1e-9)
    assert "2.0 deg" in out["message"] and "5.0%" in out["message"]
