"""Pinhole camera: intrinsics, pose in the robot base frame, and the matching OpenGL matrices.

Conventions:
- Pixel coordinates (u, v): u to the right, v down, origin at the top-left corner of the image,
  the centre of the top-left pixel at (0.5, 0.5) like OpenCV's continuous coordinates.
- Camera pose: the ROS *optical* frame (x right, y down, z forward along the view axis), given as
  position (x, y, z) in metres and quaternion (x, y, z, w) in the robot base frame.
- ``Intrinsics`` come from a ROS ``camera_info`` YAML (camera_calibration's format); a policy sees
  images resized to ``image_size`` x ``image_size``, so the intrinsics are scaled with ``scaled``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from envs.config import check_number


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _matrix_to_quat(m: np.ndarray) -> np.ndarray:
    trace = np.trace(m)
    if trace > 0:
        s = 0.5 / math.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) * s, (m[0, 2] - m[2, 0]) * s, (m[1, 0] - m[0, 1]) * s, 0.25 / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def rotation_from_axis_angle(axis_angle: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (axis times angle in radians), Rodrigues' formula."""
    angle = float(np.linalg.norm(axis_angle))
    if angle < 1e-12:
        return np.eye(3)
    k = np.asarray(axis_angle) / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of width x height pixels (no distortion)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        for field in ("fx", "fy", "width", "height", "cx", "cy"):
            check_number(f"camera.intrinsics.{field}", getattr(self, field), positive=field not in ("cx", "cy"))

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera seen through an image resized (not cropped) to width x height."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    @property
    def vertical_fov_deg(self) -> float:
        return math.degrees(2 * math.atan(self.height / (2 * self.fy)))


# A RealSense D435-like colour camera at 640x480: the default until a calibration is given.
DEFAULT_INTRINSICS = Intrinsics(fx=615.0, fy=615.0, cx=320.0, cy=240.0, width=640, height=480)


@dataclass(frozen=True)
class Camera:
    """A calibrated camera: intrinsics plus the optical frame's pose in the robot base frame."""

    intrinsics: Intrinsics = DEFAULT_INTRINSICS
    position: tuple[float, float, float] = (0.82, 0.0, 0.36)
    orientation: tuple[float, float, float, float] | None = None
    near: float = 0.02
    far: float = 3.0

    def __post_init__(self) -> None:
        if self.orientation is None:
            # Default: look at the tray centre from in front of the robot, image "up" is base +z.
            cam = look_at(np.asarray(self.position), np.array([0.55, 0.0, 0.06]))
            object.__setattr__(self, "orientation", tuple(float(v) for v in cam))
        q = np.asarray(self.orientation, dtype=float)
        if q.shape != (4,) or not np.all(np.isfinite(q)) or np.linalg.norm(q) < 1e-6:
            raise ValueError(f"camera.orientation: must be a quaternion (x, y, z, w), got {self.orientation!r}")
        p = np.asarray(self.position, dtype=float)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise ValueError(f"camera.position: must be (x, y, z) in metres, got {self.position!r}")
        if not 0 < self.near < self.far:
            raise ValueError(f"camera.near/far: need 0 < near < far, got near={self.near}, far={self.far}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_camera_info(cls, path: str | Path, position: tuple[float, float, float] | None = None,
                         orientation: tuple[float, float, float, float] | None = None) -> Camera:
        """Read a ROS ``camera_info`` YAML (as written by camera_calibration).

        The pose may be given as arguments or in the file under an extra key
        ``pose_in_base: {position: [x, y, z], orientation: [qx, qy, qz, qw]}`` (optical frame in the
        robot base frame); without either, the default pose is kept.
        """
        path = Path(path)
        data = _read_camera_info(path)
        for key in ("image_width", "image_height", "camera_matrix"):
            if key not in data:
                raise ValueError(f"{path}: missing field {key!r}")
        k = data["camera_matrix"]
        values = k.get("data") if isinstance(k, dict) else k
        if not isinstance(values, list) or len(values) != 9:
            raise ValueError(f"{path}: field 'camera_matrix.data' must hold 9 numbers, got {values!r}")
        try:
            intr = Intrinsics(fx=float(values[0]), fy=float(values[4]), cx=float(values[2]),
                              cy=float(values[5]), width=int(data["image_width"]),
                              height=int(data["image_height"]))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
        pose = data.get("pose_in_base") or {}
        position = position or pose.get("position")
        orientation = orientation or pose.get("orientation")
        kwargs: dict = {"intrinsics": intr}
        if position is not None:
            kwargs["position"] = tuple(float(v) for v in position)
        if orientation is not None:
            kwargs["orientation"] = tuple(float(v) for v in orientation)
        try:
            return cls(**kwargs)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    @staticmethod
    def lens_distortion(path: str | Path) -> list[float]:
        """The ``distortion_coefficients`` of a camera_info YAML (plumb_bob: k1, k2, p1, p2, k3),
        [] when absent. ``Camera`` is a pinhole model: nothing in sim2real applies them, so images
        from a camera with distortion must be rectified before the policy sees them (ROS
        ``image_proc``'s ``image_rect_color``); ``distortion_warning`` says so."""
        d = _read_camera_info(Path(path)).get("distortion_coefficients")
        values = d.get("data") if isinstance(d, dict) else d
        if values is None:
            return []
        try:
            return [check_number(f"{path}: distortion_coefficients[{i}]", v) for i, v in enumerate(values)]
        except TypeError:
            raise ValueError(f"{path}: field 'distortion_coefficients.data' must be a list of numbers, "
                             f"got {values!r}") from None

    def to_camera_info(self, path: str | Path, name: str = "sim2real_camera") -> None:
        """Write this camera as a ROS camera_info YAML with the ``pose_in_base`` extension."""
        i = self.intrinsics
        fx, fy, cx, cy = (float(v) for v in (i.fx, i.fy, i.cx, i.cy))
        k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
        data = {
            "image_width": int(i.width), "image_height": int(i.height), "camera_name": name,
            "camera_matrix": {"rows": 3, "cols": 3, "data": k},
            "distortion_model": "plumb_bob",
            "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0.0] * 5},
            "rectification_matrix": {"rows": 3, "cols": 3, "data": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]},
            "projection_matrix": {"rows": 3, "cols": 4,
                                  "data": [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]},
            "pose_in_base": {"position": [float(v) for v in self.position],
                             "orientation": [float(v) for v in self.orientation]},
        }
        Path(path).write_text(yaml.safe_dump(data, sort_keys=False))

    def to_dict(self) -> dict:
        return {"intrinsics": asdict(self.intrinsics), "position": list(self.position),
                "orientation": list(self.orientation), "near": self.near, "far": self.far}

    @classmethod
    def from_dict(cls, data: dict) -> Camera:
        return cls(intrinsics=Intrinsics(**data["intrinsics"]), position=tuple(data["position"]),
                   orientation=tuple(data["orientation"]), near=data.get("near", 0.02),
                   far=data.get("far", 3.0))

    def with_image_size(self, width: int, height: int) -> Camera:
        return replace(self, intrinsics=self.intrinsics.scaled(width, height))

    def perturbed(self, translation: np.ndarray, rotation: np.ndarray, focal_scale: float) -> Camera:
        """A jittered copy: translation (m, base frame), rotation vector (rad, optical frame)."""
        r = _quat_to_matrix(np.asarray(self.orientation)) @ rotation_from_axis_angle(rotation)
        i = self.intrinsics
        intr = Intrinsics(i.fx * focal_scale, i.fy * focal_scale, i.cx, i.cy, i.width, i.height)
        return replace(self, intrinsics=intr,
                       position=tuple(float(v) for v in np.asarray(self.position) + translation),
                       orientation=tuple(float(v) for v in _matrix_to_quat(r)))

    # ---------------------------------------------------------------------- geometry
    @property
    def rotation(self) -> np.ndarray:
        """3x3 rotation of the optical frame in the base frame (columns: x right, y down, z fwd)."""
        return _quat_to_matrix(np.asarray(self.orientation))

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """Points (N, 3) in the base frame to the optical frame (N, 3), metres."""
        return (np.asarray(points, dtype=float) - np.asarray(self.position)) @ self.rotation

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixel coordinates (N, 2) of points (N, 3) given in the base frame (see module doc)."""
        pc = self.world_to_camera(np.atleast_2d(points))
        i = self.intrinsics
        u = i.fx * pc[:, 0] / pc[:, 2] + i.cx
        v = i.fy * pc[:, 1] / pc[:, 2] + i.cy
        return np.stack([u, v], axis=1)

    def view_matrix(self) -> list[float]:
        """OpenGL view matrix, column-major as PyBullet wants it."""
        world_from_cam = np.eye(4)
        world_from_cam[:3, :3] = self.rotation
        world_from_cam[:3, 3] = self.position
        # OpenGL's camera looks down -z with y up: flip the optical frame's y and z axes.
        gl_from_optical = np.diag([1.0, -1.0, -1.0, 1.0])
        view = gl_from_optical @ np.linalg.inv(world_from_cam)
        return view.T.reshape(-1).tolist()

    def projection_matrix(self) -> list[float]:
        """OpenGL projection matrix of these intrinsics, column-major as PyBullet wants it."""
        i, n, f = self.intrinsics, self.near, self.far
        proj = np.array([
            [2 * i.fx / i.width, 0.0, 1.0 - 2 * i.cx / i.width, 0.0],
            [0.0, 2 * i.fy / i.height, 2 * i.cy / i.height - 1.0, 0.0],
            [0.0, 0.0, -(f + n) / (f - n), -2 * f * n / (f - n)],
            [0.0, 0.0, -1.0, 0.0],
        ])
        return proj.T.reshape(-1).tolist()


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """Quaternion (x, y, z, w) of an optical frame at eye looking at target, image up ~ up."""
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, dtype=float)
    z = np.asarray(target, dtype=float) - np.asarray(eye, dtype=float)
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: view direction is parallel to the up vector")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return _matrix_to_quat(np.stack([x, y, z], axis=1))


def _read_camera_info(path: Path) -> dict:
    """A camera_info YAML as a mapping; FileNotFoundError / ValueError naming the file otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"camera calibration file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a camera_info mapping, got {type(data).__name__}")
    return data


def distortion_warning(path: str | Path) -> str | None:
    """A warning when the camera_info YAML at ``path`` has non-zero lens distortion (else None)."""
    coeffs = Camera.lens_distortion(path)
    if not any(abs(c) > 1e-9 for c in coeffs):
        return None
    shown = ", ".join(f"{c:.4g}" for c in coeffs)
    return (f"{path}: lens distortion [{shown}] is not modelled (sim2real's cameras are pinhole): give the "
            "policy rectified images, in the recordings and at deployment (ROS image_proc's image_rect_color "
            "topic, with that topic's camera_info, whose distortion is zero)")
