"""Conversions between ROS message fields and numpy, shared by the rosbag reader, the ROS 2 node and
the rosbridge client. Only numpy and OpenCV: nothing here needs ROS installed.

Every function takes plain fields (not message objects), so the same code serves rclpy messages,
``rosbags`` messages and rosbridge JSON dictionaries.
"""

from __future__ import annotations

import base64
import math

import cv2
import numpy as np

# Raw image encodings: channels and the cv2 conversion to RGB (None = already RGB).
ENCODINGS = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}


class BadMessage(ValueError):
    """A message that cannot be used; the text says why."""


def as_bytes(data) -> np.ndarray:
    """A message's ``data`` field -> uint8 (N,). rosbridge sends uint8[] as a base64 string."""
    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=True)
        except ValueError as e:
            raise BadMessage(f"data is not valid base64 ({e})") from None
    if isinstance(data, bytes | bytearray | memoryview):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def decode_image(encoding: str, height: int, width: int, step: int, data) -> np.ndarray:
    """``sensor_msgs/Image`` fields -> RGB uint8 (H, W, 3); raises BadMessage.

    Rows may be padded past width x channels bytes (``step``); the padding is dropped."""
    data = as_bytes(data)
    enc = str(encoding).lower()
    if enc not in ENCODINGS:
        raise BadMessage(f"unsupported encoding {encoding!r}; expected one of {sorted(ENCODINGS)}")
    channels, code = ENCODINGS[enc]
    h, w, step = int(height), int(width), int(step)
    if h <= 0 or w <= 0:
        raise BadMessage(f"empty image {w}x{h}")
    if step < w * channels:
        raise BadMessage(f"step {step} is shorter than a row ({w} x {channels} bytes)")
    if data.size != h * step:
        raise BadMessage(f"data has {data.size} bytes, expected height x step = {h} x {step} = {h * step}")
    pixels = data.reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    if code is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(np.ascontiguousarray(pixels[:, :, 0] if channels == 1 else pixels), code)


def decode_compressed(fmt: str, data) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` fields (JPEG or PNG) -> RGB uint8 (H, W, 3); raises BadMessage."""
    data = as_bytes(data)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise BadMessage(f"CompressedImage (format {fmt!r}, {data.size} bytes) does not decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_image(rgb: np.ndarray) -> dict:
    """RGB uint8 (H, W, 3) -> ``sensor_msgs/Image`` fields (encoding rgb8, bytes data)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    return {"encoding": "rgb8", "height": h, "width": w, "step": w * 3, "is_bigendian": 0, "data": rgb.tobytes()}


def encode_compressed(rgb: np.ndarray, quality: int = 90) -> dict:
    """RGB uint8 (H, W, 3) -> ``sensor_msgs/CompressedImage`` fields (JPEG)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise BadMessage("JPEG encoding failed")
    return {"format": "rgb8; jpeg compressed bgr8", "data": buf.tobytes()}


def yaw_of(x: float, y: float, z: float, w: float) -> float:
    """Rotation about z (rad, ZYX convention) of a quaternion; NaN for a zero quaternion.

    This form is invariant to the quaternion's scale, so slightly unnormalized poses are fine."""
    if x * x + y * y + z * z + w * w < 1e-12:
        return math.nan
    return math.atan2(2.0 * (w * z + x * y), w * w + x * x - y * y - z * z)


def quaternion_from_yaw(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation by ``yaw`` rad about z."""
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)


def received_time(info) -> float:
    """When the middleware received a message (s, wall clock), from rclpy's ``MessageInfo``; now when
    it does not say. The callback may run later (the process was busy), which is not transport time."""
    import time

    ns = info.get("received_timestamp", 0) if info else 0
    return ns * 1e-9 if ns > 0 else time.time()


def stamp_to_s(sec: int, nanosec: int) -> float:
    """``builtin_interfaces/Time`` (ROS 2) or ``time`` (ROS 1: secs, nsecs) -> seconds."""
    return int(sec) + int(nanosec) * 1e-9


def s_to_stamp(t: float) -> tuple[int, int]:
    """seconds -> (sec, nanosec)."""
    ns = int(round(t * 1e9))
    return ns // 1_000_000_000, ns % 1_000_000_000
