"""Pinhole camera: projection agrees with the renderer, camera_info I/O, intrinsics scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from envs.camera import Camera, Intrinsics, distortion_warning, look_at
from envs.sim import Light, Sim

INTRINSICS = Intrinsics(fx=500.0, fy=520.0, cx=300.0, cy=250.0, width=640, height=480)
EYE = np.array([1.0, 0.1, 0.5])
TARGET = np.array([0.5, 0.0, 0.05])
# Bright spheres at known points in front of the camera, one pure colour each.
POINTS = np.array([[0.5, 0.0, 0.05], [0.45, 0.15, 0.0], [0.6, -0.12, 0.1], [0.4, -0.05, 0.2],
                   [0.55, 0.1, 0.15]])
COLORS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1]], dtype=float)
RADIUS = 0.01
FLAT_LIGHT = Light(ambient=1.0, diffuse=0.0, specular=0.0)  # every sphere pixel its pure colour


def _camera() -> Camera:
    return Camera(INTRINSICS, tuple(float(v) for v in EYE),
                  tuple(float(v) for v in look_at(EYE, TARGET)))


@pytest.fixture(scope="module")
def sphere_sim():
    sim = Sim()
    for k, (p, c) in enumerate(zip(POINTS, COLORS, strict=True)):
        sim.create_primitive(f"sphere_{k}", "sphere", [RADIUS], p, rgba=(*c, 1.0))
    yield sim
    sim.close()


def _centroids(image: np.ndarray) -> np.ndarray:
    """Continuous (u, v) centroid of each sphere's pixels (pixel centres at +0.5)."""
    f = image.astype(float)
    out = []
    for c in COLORS:
        mask = np.all(np.where(c > 0.5, f > 100, f < 40), axis=2)
        ys, xs = np.nonzero(mask)
        assert len(xs) >= 3, f"sphere of colour {c} not found in the image"
        out.append([xs.mean() + 0.5, ys.mean() + 0.5])
    return np.asarray(out)


@pytest.mark.parametrize("size", [(160, 120), (128, 128)])
def test_projection_matches_rendered_sphere_centroids(sphere_sim, size):
    """camera.project(point) lands within 1 px of where the renderer draws the point.

    (128, 128) squeezes the 4:3 intrinsics anisotropically, so fx and fy differ even more."""
    width, height = size
    cam = _camera().with_image_size(width, height)
    image = sphere_sim.render(width, height, cam.view_matrix(), cam.projection_matrix(), FLAT_LIGHT)
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    projected = cam.project(POINTS)
    # All spheres are inside the image, away from the border.
    assert np.all((projected > 5) & (projected < [width - 5, height - 5]))
    error = np.linalg.norm(_centroids(image) - projected, axis=1)
    assert np.all(error < 1.0), error


def test_projection_matches_with_lit_scene(sphere_sim):
    """With ordinary directional lighting (shaded spheres) the centroids still agree."""
    cam = _camera().with_image_size(160, 120)
    image = sphere_sim.render(160, 120, cam.view_matrix(), cam.projection_matrix(), Light())
    error = np.linalg.norm(_centroids(image) - cam.project(POINTS), axis=1)
    assert np.all(error < 1.0), error


def test_projection_on_egl_renderer():
    """The EGL renderer (Mesa here) agrees with the pinhole model to a fraction of a pixel."""
    sim = Sim(renderer="egl")
    try:
        assert sim.renderer == "egl"
        for k, (p, c) in enumerate(zip(POINTS, COLORS, strict=True)):
            sim.create_primitive(f"sphere_{k}", "sphere", [RADIUS], p, rgba=(*c, 1.0))
        cam = _camera().with_image_size(160, 120)
        image = sim.render(160, 120, cam.view_matrix(), cam.projection_matrix(), FLAT_LIGHT)
        error = np.linalg.norm(_centroids(image) - cam.project(POINTS), axis=1)
        assert np.all(error < 0.5), error
    finally:
        sim.close()


def test_projection_of_principal_axis_is_principal_point():
    cam = _camera()
    on_axis = cam.position + 0.7 * cam.rotation[:, 2]
    assert np.allclose(cam.project(on_axis), [[INTRINSICS.cx, INTRINSICS.cy]])
    # The optical frame: x right (u grows), y down (v grows).
    right = on_axis + 0.05 * cam.rotation[:, 0]
    down = on_axis + 0.05 * cam.rotation[:, 1]
    assert cam.project(right)[0, 0] > INTRINSICS.cx
    assert cam.project(down)[0, 1] > INTRINSICS.cy
    # fx, fy scale the two axes separately.
    du = cam.project(right)[0, 0] - INTRINSICS.cx
    dv = cam.project(down)[0, 1] - INTRINSICS.cy
    assert du / dv == pytest.approx(INTRINSICS.fx / INTRINSICS.fy)


def test_default_camera_looks_at_the_tray():
    from envs.scene import TRAY_CENTER, TRAY_FLOOR_Z

    cam = Camera()
    i = cam.intrinsics
    centre = np.array([TRAY_CENTER[0], TRAY_CENTER[1], TRAY_FLOOR_Z])
    u, v = cam.project(centre)[0]
    # The tray centre is near the middle of the image, on the vertical mid-line.
    assert abs(u - i.cx) < 1e-6
    assert abs(v - i.cy) < 0.15 * i.height
    # In front of the camera, and base +z points up in the image (v decreases).
    assert cam.world_to_camera(centre[None])[0, 2] > 0
    assert cam.project(centre + [0, 0, 0.1])[0, 1] < v
    # Base +y (the robot's left) is image right for a camera facing the robot.
    assert cam.project(centre + [0, 0.1, 0])[0, 0] > u


def test_rotation_is_orthonormal():
    r = _camera().rotation
    assert np.allclose(r.T @ r, np.eye(3), atol=1e-9)
    assert np.linalg.det(r) == pytest.approx(1.0)


# ---------------------------------------------------------------------------- camera_info I/O
def test_camera_info_round_trip(tmp_path):
    cam = _camera()
    path = tmp_path / "cam.yaml"
    cam.to_camera_info(path)
    data = yaml.safe_load(path.read_text())
    assert data["image_width"] == 640 and data["image_height"] == 480
    assert data["camera_matrix"]["data"] == [500.0, 0.0, 300.0, 0.0, 520.0, 250.0, 0.0, 0.0, 1.0]
    back = Camera.from_camera_info(path)
    assert back.intrinsics == cam.intrinsics
    assert np.allclose(back.position, cam.position)
    assert np.allclose(back.orientation, cam.orientation)
    assert np.allclose(back.project(POINTS), cam.project(POINTS))
    # str paths work too
    assert Camera.from_camera_info(str(path)).intrinsics == cam.intrinsics


def test_camera_info_round_trip_of_look_at_pose(tmp_path):
    """A camera posed with this module's own ``look_at`` (numpy values) can be saved and read back
    (``yaml.safe_dump`` cannot represent numpy scalars)."""
    cam = Camera(INTRINSICS, tuple(EYE), tuple(look_at(EYE, TARGET)))
    path = tmp_path / "cam.yaml"
    cam.to_camera_info(path)
    back = Camera.from_camera_info(path)
    assert np.allclose(back.position, EYE)
    assert np.allclose(back.project(POINTS), cam.project(POINTS))


def test_camera_info_pose_arguments_override_file(tmp_path):
    path = tmp_path / "cam.yaml"
    _camera().to_camera_info(path)
    cam = Camera.from_camera_info(path, position=(1.1, 0.0, 0.6))
    assert cam.position == (1.1, 0.0, 0.6)


def test_camera_info_without_pose_keeps_default_pose(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump({
        "image_width": 640, "image_height": 480,
        "camera_matrix": {"rows": 3, "cols": 3, "data": [600.0, 0, 320, 0, 610.0, 240, 0, 0, 1]}}))
    cam = Camera.from_camera_info(path)
    assert cam.intrinsics == Intrinsics(600.0, 610.0, 320.0, 240.0, 640, 480)
    assert cam.position == Camera().position
    assert np.allclose(cam.orientation, Camera().orientation)


def test_env_uses_calibration_file(tmp_path):
    from envs.grasp_env import GraspEnv

    path = tmp_path / "cam.yaml"
    _camera().to_camera_info(path)
    env = GraspEnv(image_size=32, camera=str(path), randomization="none")
    try:
        assert env.base_camera.intrinsics == INTRINSICS
        env.reset(seed=0)
        assert env.camera.intrinsics == INTRINSICS.scaled(32, 32)
        assert np.allclose(env.camera.position, EYE)
    finally:
        env.close()


def _write(path, data) -> None:
    path.write_text(yaml.safe_dump(data))


def _valid_info() -> dict:
    return {"image_width": 640, "image_height": 480,
            "camera_matrix": {"rows": 3, "cols": 3, "data": [500.0, 0, 300, 0, 520.0, 250, 0, 0, 1]}}


@pytest.mark.parametrize("case, field", [
    ("missing_matrix", "camera_matrix"),
    ("eight_numbers", "camera_matrix"),
    ("negative_fx", "fx"),
    ("missing_width", "image_width"),
    ("zero_height", "height"),
])
def test_malformed_camera_info_names_file_and_field(tmp_path, case, field):
    data = _valid_info()
    if case == "missing_matrix":
        del data["camera_matrix"]
    elif case == "eight_numbers":
        data["camera_matrix"]["data"] = data["camera_matrix"]["data"][:8]
    elif case == "negative_fx":
        data["camera_matrix"]["data"][0] = -500.0
    elif case == "missing_width":
        del data["image_width"]
    elif case == "zero_height":
        data["image_height"] = 0
    path = tmp_path / f"{case}.yaml"
    _write(path, data)
    with pytest.raises(ValueError) as info:
        Camera.from_camera_info(path)
    message = str(info.value)
    assert str(path) in message
    assert field in message


def test_invalid_yaml_and_non_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("image_width: [640\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        Camera.from_camera_info(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ValueError, match="scalar.yaml"):
        Camera.from_camera_info(scalar)


def test_missing_camera_info_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        Camera.from_camera_info(path)


# -------------------------------------------------------------------------------- intrinsics
def test_intrinsics_scaled():
    half = INTRINSICS.scaled(320, 240)
    assert half == Intrinsics(250.0, 260.0, 150.0, 125.0, 320, 240)
    square = INTRINSICS.scaled(64, 64)
    assert square.fx == pytest.approx(500 * 64 / 640)
    assert square.fy == pytest.approx(520 * 64 / 480)
    assert square.cx == pytest.approx(300 * 64 / 640)
    assert square.cy == pytest.approx(250 * 64 / 480)
    assert (square.width, square.height) == (64, 64)
    back = square.scaled(640, 480)
    for a, b in zip(back.matrix.ravel(), INTRINSICS.matrix.ravel(), strict=True):
        assert a == pytest.approx(b)


def test_scaled_camera_projects_to_scaled_pixels():
    cam = _camera()
    small = cam.with_image_size(160, 120)
    assert np.allclose(small.project(POINTS), cam.project(POINTS) * [160 / 640, 120 / 480])


def test_intrinsics_matrix_and_fov():
    k = INTRINSICS.matrix
    assert k.tolist() == [[500.0, 0, 300.0], [0, 520.0, 250.0], [0, 0, 1.0]]
    assert INTRINSICS.vertical_fov_deg == pytest.approx(math.degrees(2 * math.atan(240 / 520)))


@pytest.mark.parametrize("kwargs, field", [
    ({"fx": -1.0}, "fx"), ({"fy": 0.0}, "fy"), ({"width": 0}, "width"),
    ({"cx": float("nan")}, "cx"), ({"height": float("inf")}, "height"),
    ({"fx": True}, "fx"), ({"cy": False}, "cy"), ({"width": "640"}, "width"),
])
def test_invalid_intrinsics_raise(kwargs, field):
    base = {"fx": 500.0, "fy": 500.0, "cx": 320.0, "cy": 240.0, "width": 640, "height": 480}
    base.update(kwargs)
    with pytest.raises(ValueError, match=field):
        Intrinsics(**base)


def test_camera_dict_round_trip():
    cam = _camera()
    assert Camera.from_dict(cam.to_dict()) == cam


def test_perturbed_camera():
    cam = _camera()
    moved = cam.perturbed(np.array([0.01, -0.02, 0.005]), np.zeros(3), 1.1)
    assert np.allclose(np.asarray(moved.position) - cam.position, [0.01, -0.02, 0.005])
    assert np.allclose(moved.orientation, cam.orientation)
    assert moved.intrinsics.fx == pytest.approx(550.0) and moved.intrinsics.fy == pytest.approx(572.0)
    turned = cam.perturbed(np.zeros(3), np.array([0.0, 0.0, 0.1]), 1.0)
    # Rotation about the optical axis keeps the principal ray but turns the image.
    assert np.allclose(turned.rotation[:, 2], cam.rotation[:, 2])
    angle = math.acos(np.clip(turned.rotation[:, 0] @ cam.rotation[:, 0], -1, 1))
    assert angle == pytest.approx(0.1, abs=1e-6)


def test_lens_distortion_is_read_and_warned_about(tmp_path):
    """Camera is pinhole: a calibration's distortion coefficients are read only to warn that the
    images must be rectified; zero or absent coefficients give no warning, bad ones a clear error."""
    path = tmp_path / "cam.yaml"
    Camera().to_camera_info(path)
    assert Camera.lens_distortion(path) == [0.0] * 5 and distortion_warning(path) is None
    info = yaml.safe_load(path.read_text())
    info["distortion_coefficients"]["data"] = [-0.31, 0.09, 0.0, 0.001, 0.0]
    path.write_text(yaml.safe_dump(info))
    assert Camera.lens_distortion(path) == [-0.31, 0.09, 0.0, 0.001, 0.0]
    assert "lens distortion [-0.31, 0.09, 0, 0.001, 0] is not modelled" in distortion_warning(path)
    assert "image_rect_color" in distortion_warning(path)
    del info["distortion_coefficients"]
    path.write_text(yaml.safe_dump(info))
    assert Camera.lens_distortion(path) == [] and distortion_warning(path) is None
    for bad in (["a", 0.0], 3, [float("nan")]):
        info["distortion_coefficients"] = {"rows": 1, "cols": 5, "data": bad}
        path.write_text(yaml.safe_dump(info))
        with pytest.raises(ValueError, match="distortion_coefficients"):
            Camera.lens_distortion(path)
