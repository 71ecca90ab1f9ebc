"""Real data in whatever shape robots record it, loaded into the one ``Dataset``.

Formats, detected from marker files (``--format`` overrides):

    native    a folder with ``dataset.json`` + ``steps.csv`` (``sim2real.data.episodes``)
    lerobot   a folder with ``meta/info.json`` (LeRobot v2.1 / v3.0; ``sim2real.data.lerobot``)
    rosbag2   a folder with ``metadata.yaml``, or a ``.db3`` / ``.mcap`` file (``sim2real.data.rosbag``)
    rosbag1   a ``.bag`` file

``compare_cameras`` says whether a calibration (ROS ``camera_info`` YAML) agrees with the camera a
run was trained with, and by how much.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sim2real.data.episodes import Dataset, DatasetError, read_dataset

FORMATS = ("native", "lerobot", "rosbag2", "rosbag1")
# Tolerances beyond which a calibration "disagrees" with the training camera: what moves a tray
# point by about one pixel at 64 x 64.
FOCAL_TOL, CENTRE_TOL, POSITION_TOL_M, ANGLE_TOL_DEG = 0.02, 0.02, 0.01, 1.0


def detect_format(path: str | Path) -> str:
    """The format of ``path`` from its marker files; DatasetError when nothing matches."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: does not exist")
    if path.is_file():
        if path.suffix == ".bag":
            return "rosbag1"
        if path.suffix in (".db3", ".mcap"):
            return "rosbag2"
        raise DatasetError(f"{path}: a file, but not a ROS bag (.bag, .db3, .mcap); pass a dataset folder")
    if (path / "dataset.json").is_file():
        return "native"
    if (path / "meta" / "info.json").is_file():
        return "lerobot"
    if (path / "metadata.yaml").is_file():
        return "rosbag2"
    bags = sorted(path.glob("*.bag"))
    if len(bags) == 1:
        return "rosbag1"
    raise DatasetError(f"{path}: cannot tell the format: no dataset.json (native), meta/info.json (LeRobot) "
                       f"or metadata.yaml (rosbag2) inside; pass --format one of {', '.join(FORMATS)}")


def load_real(path: str | Path, fmt: str = "auto", image_size: int | None = None, skip_bad: bool = False,
              **reader_options: Any) -> Dataset:
    """Load real data in any supported format (module docstring) as a ``Dataset``.

    ``reader_options`` go to the format's reader (e.g. ``image_topic`` for bags, ``image_key`` for
    LeRobot). ``meta["format"]`` says which reader was used.
    """
    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise DatasetError(f"format: unknown {fmt!r}; choose from auto, {', '.join(FORMATS)}")
    if fmt == "native":
        if reader_options:
            raise DatasetError(f"{path}: options {sorted(reader_options)} do not apply to the native format")
        ds = read_dataset(path, image_size=image_size, load_alt=False, skip_bad=skip_bad)
        ds.meta["format"] = "native"  # dataset.json names the file format, not the reader
        return ds
    if fmt == "lerobot":
        from sim2real.data.lerobot import read_lerobot

        return read_lerobot(path, image_size=image_size, skip_bad=skip_bad, **reader_options)
    from sim2real.data.rosbag import read_rosbag

    if fmt == "rosbag1" and path.is_dir():
        path = sorted(path.glob("*.bag"))[0]
    return read_rosbag(path, image_size=image_size, skip_bad=skip_bad, **reader_options)


def compare_cameras(trained: dict, calibration: dict) -> dict[str, Any]:
    """How far a calibration is from the camera a run was trained with.

    Both are ``Camera.to_dict()``. Intrinsics are compared relative to the image size (so a 640x480
    calibration and a 64x64 policy image compare fairly), the pose in cm and degrees.
    Returns {"agrees": bool, "focal_rel", "centre_rel", "position_cm", "angle_deg", "message"}.
    """
    from envs.camera import Camera

    a, b = Camera.from_dict(trained), Camera.from_dict(calibration)
    ia, ib = a.intrinsics, b.intrinsics
    focal = max(abs(ib.fx / ib.width - ia.fx / ia.width) / (ia.fx / ia.width),
                abs(ib.fy / ib.height - ia.fy / ia.height) / (ia.fy / ia.height))
    centre = max(abs(ib.cx / ib.width - ia.cx / ia.width), abs(ib.cy / ib.height - ia.cy / ia.height))
    position = float(np.linalg.norm(np.subtract(b.position, a.position)))
    r = a.rotation.T @ b.rotation
    angle = float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))
    agrees = focal <= FOCAL_TOL and centre <= CENTRE_TOL and position <= POSITION_TOL_M and angle <= ANGLE_TOL_DEG
    msg = (f"focal length {focal:.1%} apart, principal point {centre:.1%} of the image, camera position "
           f"{position * 100:.1f} cm and orientation {angle:.1f} deg apart")
    return {"agrees": bool(agrees), "focal_rel": float(focal), "centre_rel": float(centre),
            "position_cm": position * 100, "angle_deg": angle, "message": msg}
