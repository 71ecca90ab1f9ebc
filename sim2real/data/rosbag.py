"""Read ROS bags (rosbag2 sqlite3 ``.db3`` / MCAP, ROS 1 ``.bag``) into the in-memory ``Dataset``.

Reading goes through the pure-Python ``rosbags`` library, so no ROS installation is needed.

One dataset row per image message on ``image_topic``:

    images     ``sensor_msgs/msg/Image`` (rgb8, bgr8, rgba8, bgra8, mono8; ``step`` row padding
               is honoured) or ``sensor_msgs/msg/CompressedImage`` (jpeg/png), converted to RGB uint8
    proprio    ee_x, ee_y, ee_z (m) and ee_yaw (rad, rotation about z) from a
               ``geometry_msgs/msg/PoseStamped`` topic; gripper opening (m) from ``std_msgs/msg/Float64``
               / ``Float32`` or from ``sensor_msgs/msg/JointState`` (sum of the joints whose name
               contains "finger", e.g. both panda finger joints). The pose is taken as given: it must
               already be in the robot base frame (its ``frame_id`` is recorded in ``meta``).
    labels     optional CSV with a ``stamp`` column (s as a float, or ns as an integer; detected)
               and any of the ``steps.csv`` columns (grasp_*, success, episode, a_*, ...)
    episodes   from the labels' ``episode`` column, else from ``episode_topic`` (std_msgs Int32 /
               Int64 / UInt32: the index of the episode that starts), else one episode 0

Time: every message is placed at its header stamp when it has a non-zero one, else at the bag's
receive time. Other streams are matched to each image by nearest time within ``max_dt`` seconds;
an image with no match gets NaN (unknown) there. If the camera's header clock differs from the
recorder's clock, topics without a header (Float64, Int32) cannot be matched reliably; a warning in
``meta["warnings"]`` says so.
"""

from __future__ import annotations

import csv
import math
import numbers
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sim2real.data.episodes import (
    ACTION,
    ACTION_GROUPS,
    EXPERT,
    GRASP,
    GROUPS,
    OBJECT,
    PROPRIO,
    Dataset,
    DatasetError,
    dataset_from_arrays,
    parse_cell,
)
from sim2real.ros.messages import BadMessage, decode_compressed, decode_image, yaw_of

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
POSE_TYPES = ("geometry_msgs/msg/PoseStamped",)
GRIPPER_TYPES = ("std_msgs/msg/Float64", "std_msgs/msg/Float32", "sensor_msgs/msg/JointState")
EPISODE_TYPES = ("std_msgs/msg/Int32", "std_msgs/msg/Int64", "std_msgs/msg/UInt32")

# Columns a labels CSV may carry: the time key plus every per-step column of steps.csv except the
# ones the reader derives itself (step numbering, image paths).
LABEL_COLUMNS = ("stamp", "episode", *PROPRIO, *ACTION, *EXPERT, *OBJECT, *GRASP, "success")

_NS = 1_000_000_000
# Header stamps this far from the bag's receive time (median over images) mean the camera runs on
# another clock than the recorder, which breaks matching against header-less topics.
_CLOCK_OFFSET_WARN_NS = _NS


class _BadMessage(Exception):
    """A message that cannot be used; the reason becomes part of a DatasetError or a skip note."""


def is_rosbag(path: str | Path) -> bool:
    """True for a ROS 1 ``.bag`` file, a rosbag2 ``.mcap`` / ``.db3`` storage file, or a rosbag2
    directory (one holding ``metadata.yaml``). Only names are checked; the content is checked by
    ``read_rosbag``."""
    path = Path(path)
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.is_file() and path.suffix.lower() in (".bag", ".mcap", ".db3")


def read_rosbag(path: str | Path, image_size: int | None = None, skip_bad: bool = False,
                image_topic: str | None = None, pose_topic: str | None = None, gripper_topic: str | None = None,
                labels: str | Path | None = None, episode_topic: str | None = None,
                max_dt: float = 0.05) -> Dataset:
    """Load a ROS bag as a ``Dataset``: one row per image on the image topic, in time order.

    Args:
        path: ``.bag`` file (ROS 1), rosbag2 directory with ``metadata.yaml``, or a single rosbag2
            ``.db3`` / ``.mcap`` storage file.
        image_size: resize every image to this square size (cv2.INTER_AREA); None keeps sizes,
            which must then all agree.
        skip_bad: drop image (or pose / gripper / episode) messages that do not decode instead of
            raising; each is described in ``meta["skipped"]``.
        image_topic: the camera topic; None = the only Image / CompressedImage topic in the bag.
        pose_topic: PoseStamped topic of the end effector in the base frame (m); None = no pose.
        gripper_topic: Float64 / Float32 opening (m) or JointState (finger joint positions, m,
            summed); None = no gripper reading.
        labels: CSV file with a ``stamp`` column (s float, or ns integer) and any of ``LABEL_COLUMNS``;
            each row is joined to the image nearest in time. Empty cells mean unknown.
        episode_topic: Int32 / Int64 / UInt32 topic announcing the index of the episode that starts;
            used only when the labels have no ``episode`` column.
        max_dt: largest time difference (s) for matching pose, gripper and label rows to an image.

    Returns:
        Dataset with images uint8 (N, H, W, 3) RGB, proprio (N, 5) float32 (NaN where unmatched),
        label groups from the CSV, episode / step int64 (N,), and ``meta`` = {"format": "rosbag1" |
        "rosbag2", "source", "image_topic", "pose_topic", "gripper_topic", "episode_topic",
        "topics": {name: {"type", "messages"}}, "warnings": [...], "skipped": [...], "labels": {...}}.

    Raises:
        DatasetError naming the bag (and topic, message index and time) or the labels CSV (and its
        1-based row, header = row 1).
    """
    path = Path(path)
    if not (isinstance(max_dt, (int, float)) and math.isfinite(max_dt) and max_dt >= 0):
        raise ValueError(f"max_dt must be a finite number of seconds >= 0, got {max_dt!r}")
    if image_size is not None and (not isinstance(image_size, numbers.Integral) or image_size <= 0):
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if not path.exists():
        raise DatasetError(f"{path}: does not exist")
    if not is_rosbag(path):
        raise DatasetError(f"{path}: not a ROS bag (expected a .bag, .mcap or .db3 file, or a rosbag2 "
                           f"directory with metadata.yaml)")
    fmt = "rosbag1" if path.suffix.lower() == ".bag" else "rosbag2"
    max_dt_ns = int(round(max_dt * _NS))

    stream = _BagStream(path, fmt, image_size, skip_bad)
    stream.read(image_topic, pose_topic, gripper_topic, episode_topic)

    warnings, skipped = stream.warnings, stream.skipped
    if not stream.images:
        raise DatasetError(f"{path}: no usable images on topic {stream.image_topic} "
                           f"({len(stream.skipped_image_ns)} skipped)")
    # Rows in capture order; the bag stores them in receive order, which may differ slightly.
    order = np.argsort(np.array(stream.image_ns, np.int64), kind="stable")
    image_ns = np.array(stream.image_ns, np.int64)[order]
    images = [stream.images[i] for i in order]
    n = len(images)

    groups = {name: np.full((n, len(cols)), np.nan, np.float32) for name, cols in GROUPS.items()}
    success = np.full(n, np.nan, np.float32)
    if stream.pose:
        pose_t, pose_v = _sorted_series(stream.pose)
        values, hit = _match(image_ns, pose_t, pose_v, max_dt_ns)
        groups["proprio"][:, :4] = values
        if not hit.all():
            warnings.append(f"{pose_topic}: {int((~hit).sum())} of {n} images have no pose within {max_dt} s "
                            f"(left NaN)")
    if stream.gripper:
        grip_t, grip_v = _sorted_series(stream.gripper)
        values, hit = _match(image_ns, grip_t, grip_v, max_dt_ns)
        groups["proprio"][:, 4] = values[:, 0]
        if not hit.all():
            warnings.append(f"{gripper_topic}: {int((~hit).sum())} of {n} images have no gripper reading "
                            f"within {max_dt} s (left NaN)")

    label_meta = None
    label_episode = np.full(n, np.nan)
    if labels is not None:
        label_meta = _apply_labels(Path(labels), image_ns, np.array(sorted(stream.skipped_image_ns), np.int64),
                                   max_dt, max_dt_ns, stream.image_topic, groups, success, label_episode, skipped)

    # Episodes: the labels win, then the episode topic, then one episode. An episode index holds from
    # its first image until the next index, so images before the first index belong to no episode.
    if not np.isnan(label_episode).all():
        if episode_topic is not None:
            warnings.append(f"episode_topic {episode_topic} ignored: the labels have an episode column")
        episode, source = _forward_fill(label_episode), f"{labels} (episode column)"
    elif episode_topic is not None:
        ep_t, ep_v = _sorted_series(stream.episode_marks)
        episode = np.full(n, np.nan)
        if len(ep_t):
            idx = np.searchsorted(ep_t, image_ns, side="right") - 1
            episode = np.where(idx >= 0, ep_v[np.maximum(idx, 0), 0], np.nan)
        source = f"topic {episode_topic}"
    else:
        episode, source = np.zeros(n), None
    keep = ~np.isnan(episode)
    if not keep.all():
        warnings.append(f"{int((~keep).sum())} images before the first episode index from {source} were dropped")
        if not keep.any():
            raise DatasetError(f"{path}: no image falls in an episode from {source}")
    episode = episode[keep].astype(np.int64)
    step, episodes = _number_steps(episode, success[keep], source, path)

    meta = {
        "format": fmt, "source": str(path), "image_topic": stream.image_topic, "pose_topic": pose_topic,
        "gripper_topic": gripper_topic, "episode_topic": episode_topic, "topics": stream.topics,
        "max_dt": max_dt, "warnings": warnings, "skipped": skipped,
    }
    if stream.pose_frames:
        meta["pose_frame_ids"] = sorted(stream.pose_frames)
    if label_meta is not None:
        meta["labels"] = label_meta
    return dataset_from_arrays(path, meta, np.stack([im for im, k in zip(images, keep, strict=True) if k]),
                               episode=episode, step=step, success=success[keep], episodes=episodes,
                               **{name: arr[keep] for name, arr in groups.items()})


class _BagStream:
    """One pass over the bag collecting decoded images and the (time ns, values) series of the other
    topics. Bad messages raise DatasetError or, with ``skip_bad``, are noted in ``skipped``."""

    def __init__(self, path: Path, fmt: str, image_size: int | None, skip_bad: bool) -> None:
        self.path, self.fmt, self.image_size, self.skip_bad = path, fmt, image_size, skip_bad
        self.images: list[np.ndarray] = []
        self.image_ns: list[int] = []
        self.skipped_image_ns: list[int] = []
        self.pose: list[tuple[int, tuple[float, ...]]] = []
        self.gripper: list[tuple[int, tuple[float, ...]]] = []
        self.episode_marks: list[tuple[int, tuple[float, ...]]] = []
        self.pose_frames: set[str] = set()
        self.warnings: list[str] = []
        self.skipped: list[str] = []
        self.topics: dict[str, dict] = {}
        self.image_topic = ""
        self._shape: tuple[int, ...] | None = None
        self._offsets: list[int] = []  # header stamp - receive time of images, for the clock check
        self._zero_stamps: dict[str, int] = {}
        self._joint_names: set[str] = set()
        self._no_finger = 0
        self._bad_quat = 0

    def read(self, image_topic: str | None, pose_topic: str | None, gripper_topic: str | None,
             episode_topic: str | None) -> None:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        # Bags without embedded definitions (older rosbag2 sqlite3) fall back to a stock typestore.
        default = get_typestore(Stores.ROS1_NOETIC if self.fmt == "rosbag1" else Stores.ROS2_HUMBLE)
        reader = self._guard(lambda: AnyReader([self.path], default_typestore=default))
        self._guard(reader.open)
        try:
            self.topics = {name: {"type": info.msgtype, "messages": info.msgcount}
                           for name, info in sorted(reader.topics.items())}
            self.image_topic = self._pick(image_topic, IMAGE_TYPES, "image_topic")
            roles = {self.image_topic: self._on_image}
            for topic, types, arg, handler in ((pose_topic, POSE_TYPES, "pose_topic", self._on_pose),
                                               (gripper_topic, GRIPPER_TYPES, "gripper_topic", self._on_gripper),
                                               (episode_topic, EPISODE_TYPES, "episode_topic", self._on_episode)):
                if topic is not None:
                    roles[self._pick(topic, types, arg)] = handler
            conns = [c for c in reader.connections if c.topic in roles]
            total = sum(max(c.msgcount, 0) for c in conns) or None
            counters = dict.fromkeys(roles, 0)
            messages = self._guarded(reader.messages(connections=conns))
            for conn, t_bag, raw in tqdm(messages, total=total, desc=f"reading {self.path.name}", unit="msg",
                                         disable=None):
                index = counters[conn.topic]
                counters[conn.topic] += 1
                try:
                    store = reader.typestore if conn.msgtype in reader.typestore.types else default
                    try:
                        msg = (store.deserialize_ros1(raw, conn.msgtype) if self.fmt == "rosbag1"
                               else store.deserialize_cdr(raw, conn.msgtype))
                    except Exception as e:  # generated deserializers raise several types on bad bytes
                        raise _BadMessage(f"does not deserialize as {conn.msgtype} ({e})") from None
                    roles[conn.topic](conn.topic, conn.msgtype, msg, self._stamp(conn.topic, msg, t_bag), t_bag)
                except _BadMessage as e:
                    self._bad(conn.topic, index, t_bag, str(e))
        finally:
            try:
                reader.close()
            except Exception:  # closing a half-broken bag must not hide the real error
                pass
        self._finish(gripper_topic)

    # -- plumbing
    def _guard(self, fn):
        try:
            return fn()
        except Exception as e:  # rosbags raises many types on corrupt files (ReaderError, struct, sqlite, ...)
            raise DatasetError(f"{self.path}: cannot read ROS bag ({type(e).__name__}: {e})") from e

    def _guarded(self, it: Iterator) -> Iterator:
        """Iterate ``it``, turning library errors (a corrupt chunk mid-file) into DatasetError."""
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except Exception as e:  # see _guard
                raise DatasetError(f"{self.path}: cannot read ROS bag ({type(e).__name__}: {e})") from e
            yield item

    def _pick(self, want: str | None, types: tuple[str, ...], arg: str) -> str:
        """The topic to read for ``arg``: ``want`` checked against the bag, or the only fitting one."""
        fitting = [t for t, info in self.topics.items() if info["type"] in types]
        kinds = " / ".join(types)
        if want is None:
            if len(fitting) == 1:
                return fitting[0]
            if not fitting:
                raise DatasetError(f"{self.path}: no {kinds} topic; topics: {self._listing()}")
            raise DatasetError(f"{self.path}: several image topics {fitting}; pass {arg}= one of them")
        if want not in self.topics:
            raise DatasetError(f"{self.path}: {arg} {want!r} is not in the bag; {kinds} topics: {fitting}; "
                               f"all topics: {self._listing()}")
        if self.topics[want]["type"] not in types:
            raise DatasetError(f"{self.path}: {arg} {want!r} has type {self.topics[want]['type']}, "
                               f"expected {kinds}")
        return want

    def _listing(self) -> str:
        return ", ".join(f"{t} ({info['type']})" for t, info in self.topics.items()) or "none"

    def _stamp(self, topic: str, msg, t_bag: int) -> int:
        header = getattr(msg, "header", None)
        if header is None:
            return t_bag
        ns = int(header.stamp.sec) * _NS + int(header.stamp.nanosec)
        if ns == 0:  # an unset stamp; the receive time is the best guess
            self._zero_stamps[topic] = self._zero_stamps.get(topic, 0) + 1
            return t_bag
        return ns

    def _bad(self, topic: str, index: int, t_bag: int, reason: str) -> None:
        text = (f"{self.path}: topic {topic}: message {index} (0-based; bag time {t_bag / _NS:.9f} s): {reason}")
        if not self.skip_bad:
            raise DatasetError(text)
        self.skipped.append(text)
        if topic == self.image_topic:
            self.skipped_image_ns.append(t_bag)

    # -- topic handlers: (topic, msgtype, message, time ns, receive time ns)
    def _on_image(self, topic: str, msgtype: str, msg, t: int, t_bag: int) -> None:
        rgb = _decode_image(msg, msgtype)
        if self.image_size is not None and rgb.shape[:2] != (self.image_size, self.image_size):
            size = int(self.image_size)
            rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
        if self._shape is None:
            self._shape = rgb.shape
        elif rgb.shape != self._shape:
            raise _BadMessage(f"size {rgb.shape[1]}x{rgb.shape[0]} differs from the first image's "
                              f"{self._shape[1]}x{self._shape[0]}; pass image_size")
        self.images.append(rgb)
        self.image_ns.append(t)
        if t != t_bag:
            self._offsets.append(t - t_bag)

    def _on_pose(self, topic: str, msgtype: str, msg, t: int, t_bag: int) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        values = (p.x, p.y, p.z, q.x, q.y, q.z, q.w)
        if not all(math.isfinite(v) for v in values):
            raise _BadMessage(f"non-finite pose {values}")
        self.pose_frames.add(msg.header.frame_id)
        yaw = yaw_of(q.x, q.y, q.z, q.w)
        if math.isnan(yaw):
            self._bad_quat += 1
        self.pose.append((t, (p.x, p.y, p.z, yaw)))

    def _on_gripper(self, topic: str, msgtype: str, msg, t: int, t_bag: int) -> None:
        if msgtype == "sensor_msgs/msg/JointState":
            names = list(msg.name)
            self._joint_names.update(names)
            fingers = [i for i, name in enumerate(names) if "finger" in name.lower()]
            if not fingers:  # e.g. an arm-only joint state on a shared topic: no gripper reading here
                self._no_finger += 1
                return
            if len(msg.position) != len(names):
                raise _BadMessage(f"{len(names)} joint names but {len(msg.position)} positions")
            opening = float(sum(float(msg.position[i]) for i in fingers))
        else:
            opening = float(msg.data)
        if not math.isfinite(opening):
            raise _BadMessage(f"non-finite gripper opening {opening}")
        self.gripper.append((t, (opening,)))

    def _on_episode(self, topic: str, msgtype: str, msg, t: int, t_bag: int) -> None:
        if int(msg.data) < 0:
            raise _BadMessage(f"negative episode index {int(msg.data)}")
        self.episode_marks.append((t, (float(msg.data),)))

    def _finish(self, gripper_topic: str | None) -> None:
        for topic, count in self._zero_stamps.items():
            self.warnings.append(f"{topic}: {count} messages have a zero header stamp; used the bag time")
        if self._offsets:
            offset = float(np.median(np.abs(self._offsets)))
            if offset > _CLOCK_OFFSET_WARN_NS:
                self.warnings.append(
                    f"{self.image_topic}: header stamps differ from the bag time by {offset / _NS:.3f} s "
                    f"(median); matching against topics without a header may be wrong")
        if self._bad_quat:
            self.warnings.append(f"{self._bad_quat} poses have a zero quaternion; their yaw is NaN")
        if gripper_topic is not None and self._no_finger:
            if not self.gripper:
                raise DatasetError(f"{self.path}: topic {gripper_topic}: no joint name contains 'finger', so the "
                                   f"gripper opening is unknown; joints seen: {sorted(self._joint_names)}")
            self.warnings.append(f"{gripper_topic}: {self._no_finger} JointState messages have no finger joint")
        if len(self.pose_frames) > 1:
            self.warnings.append(f"poses come in several frames {sorted(self.pose_frames)}; used as given")


def _decode_image(msg, msgtype: str) -> np.ndarray:
    """Image / CompressedImage message -> RGB uint8 (H, W, 3); raises _BadMessage."""
    try:
        if msgtype == "sensor_msgs/msg/CompressedImage":
            return decode_compressed(msg.format, msg.data)
        return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)
    except BadMessage as e:
        raise _BadMessage(str(e)) from None


def _sorted_series(series: list[tuple[int, tuple[float, ...]]]) -> tuple[np.ndarray, np.ndarray]:
    """[(t ns, values)] -> times int64 (M,) ascending, values float64 (M, k)."""
    if not series:
        return np.zeros(0, np.int64), np.zeros((0, 1))
    t = np.array([s[0] for s in series], np.int64)
    v = np.array([s[1] for s in series], np.float64)
    order = np.argsort(t, kind="stable")
    return t[order], v[order]


def _nearest(times: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index into sorted ``times`` (M,) nearest to each of ``query`` (Q,) and the distance (ns);
    distance is int64 max when ``times`` is empty."""
    if len(times) == 0:
        return np.zeros(len(query), np.int64), np.full(len(query), np.iinfo(np.int64).max)
    right = np.clip(np.searchsorted(times, query), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    d_right, d_left = np.abs(times[right] - query), np.abs(times[left] - query)
    use_left = d_left <= d_right
    return np.where(use_left, left, right), np.where(use_left, d_left, d_right)


def _match(image_ns: np.ndarray, times: np.ndarray, values: np.ndarray, max_dt_ns: int):
    """Values (N, k) of the series sample nearest each image within ``max_dt_ns``, NaN elsewhere;
    plus a bool (N,) hit mask."""
    idx, dist = _nearest(times, image_ns)
    hit = dist <= max_dt_ns
    out = np.full((len(image_ns), values.shape[1]), np.nan)
    out[hit] = values[idx[hit]]
    return out, hit


def _forward_fill(x: np.ndarray) -> np.ndarray:
    """Carry the last non-NaN value forward; leading NaNs stay NaN."""
    idx = np.where(~np.isnan(x), np.arange(len(x)), -1)
    idx = np.maximum.accumulate(idx)
    return np.where(idx >= 0, x[np.maximum(idx, 0)], np.nan)


def _number_steps(episode: np.ndarray, success: np.ndarray, source: str | None,
                  path: Path) -> tuple[np.ndarray, list[dict]]:
    """Steps 0.. within each run of equal episode indices, and episodes.csv-style records (strings, as
    ``read_dataset`` returns them). An index that comes back after another one is an error: episodes
    must be contiguous in time."""
    step = np.zeros(len(episode), np.int64)
    records: list[dict] = []
    seen: set[int] = set()
    start = 0
    for i in range(1, len(episode) + 1):
        if i < len(episode) and episode[i] == episode[start]:
            continue
        ep = int(episode[start])
        if ep in seen:
            raise DatasetError(f"{path}: episode {ep} from {source} resumes after another episode; episode "
                               f"indices must be contiguous in time")
        seen.add(ep)
        step[start:i] = np.arange(i - start)
        known = {float(s) for s in success[start:i] if not np.isnan(s)}
        records.append({"episode": str(ep), "steps": str(i - start),
                        "success": str(int(known.pop())) if len(known) == 1 else "", "source": "real",
                        "seed": "", "objects": ""})
        start = i
    return step, records


def _apply_labels(csv_path: Path, image_ns: np.ndarray, skipped_ns: np.ndarray, max_dt: float, max_dt_ns: int,
                  image_topic: str, groups: dict[str, np.ndarray], success: np.ndarray, episode: np.ndarray,
                  skipped: list[str]) -> dict:
    """Join the labels CSV onto the images in place (``groups``, ``success``, ``episode``; empty cells
    leave what is there). Returns a summary for ``meta["labels"]``."""
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: labels file does not exist")
    rows = []  # (row number, {column: stripped cell})
    with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets prepend a BOM
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{csv_path}: empty labels file (expected a header row with 'stamp')")
        header = [h.strip() for h in header]
        unknown = [h for h in header if h not in LABEL_COLUMNS]
        if unknown:
            raise DatasetError(f"{csv_path}: unknown columns {unknown}; allowed: {', '.join(LABEL_COLUMNS)}")
        if len(set(header)) != len(header):
            raise DatasetError(f"{csv_path}: duplicate columns in the header {header}")
        if "stamp" not in header:
            raise DatasetError(f"{csv_path}: no 'stamp' column (time in s, or ns as an integer)")
        for cells in reader:
            line = reader.line_num  # physical row, so blank lines keep the numbering an editor shows
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise DatasetError(f"{csv_path}: row {line}: {len(cells)} cells, the header has {len(header)}")
            rows.append((line, dict(zip(header, (c.strip() for c in cells), strict=True))))
    if not rows:
        raise DatasetError(f"{csv_path}: no label rows")

    stamps = [r["stamp"] for _, r in rows]
    for line, r in rows:
        if r["stamp"] == "":
            raise DatasetError(f"{csv_path}: row {line}: column 'stamp' is empty")
        parse_cell(r["stamp"], csv_path, line, "stamp")
    unit = _stamp_unit(stamps, image_ns, skipped_ns, max_dt_ns)
    label_ns = np.array([int(s) if unit == "ns" else int(round(float(s) * _NS)) for s in stamps], np.int64)

    idx, dist = _nearest(image_ns, label_ns)
    _, dist_skipped = _nearest(skipped_ns, label_ns)
    owner: dict[int, int] = {}
    matched = 0
    for k, (line, r) in enumerate(rows):
        if dist_skipped[k] < dist[k] and dist_skipped[k] <= max_dt_ns:
            # The label belongs to an image that skip_bad dropped; the label goes with it.
            skipped.append(f"{csv_path}: row {line}: dropped, its image on {image_topic} was skipped")
            continue
        if dist[k] > max_dt_ns:
            span = f"{image_ns[0] / _NS:.3f}..{image_ns[-1] / _NS:.3f} s"
            raise DatasetError(f"{csv_path}: row {line}: stamp {r['stamp']} ({unit}) matches no image on "
                               f"{image_topic} within max_dt={max_dt} s (nearest is {dist[k] / _NS:.3f} s away; "
                               f"images span {span})")
        i = int(idx[k])
        if i in owner:
            raise DatasetError(f"{csv_path}: rows {owner[i]} and {line} both match the image at "
                               f"{image_ns[i] / _NS:.9f} s; lower max_dt or fix the stamps")
        owner[i] = line
        matched += 1
        for name, cols in GROUPS.items():
            for j, col in enumerate(cols):
                value = parse_cell(r.get(col, ""), csv_path, line, col)
                if not math.isnan(value):
                    if name in ACTION_GROUPS and abs(value) > 1.0 + 1e-6:
                        raise DatasetError(f"{csv_path}: row {line}: column {col!r} = {value} is outside [-1, 1]")
                    groups[name][i, j] = value
        s = parse_cell(r.get("success", ""), csv_path, line, "success")
        if not math.isnan(s):
            if s not in (0.0, 1.0):
                raise DatasetError(f"{csv_path}: row {line}: success must be 0 or 1, got {r['success']!r}")
            success[i] = s
        e = parse_cell(r.get("episode", ""), csv_path, line, "episode")
        if not math.isnan(e):
            if e < 0 or e != int(e):
                raise DatasetError(f"{csv_path}: row {line}: episode must be an integer >= 0, got {r['episode']!r}")
            episode[i] = e
    return {"file": str(csv_path), "rows": len(rows), "matched": matched, "stamp_unit": unit}


def _stamp_unit(stamps: list[str], image_ns: np.ndarray, skipped_ns: np.ndarray, max_dt_ns: int) -> str:
    """'s' or 'ns' for the labels' stamp column.

    Decimal points or exponents mean seconds. An all-integer column is ambiguous (seconds of a
    simulated clock vs nanoseconds), so the reading that puts more stamps inside the images' time
    span wins; on a tie, values of 1e12 and above are nanoseconds (1e12 s is 30 000 years)."""
    if not all(re.fullmatch(r"[+-]?\d+", s) for s in stamps):
        return "s"
    values = [int(s) for s in stamps]  # Python ints: ns since 1970 need all 64 bits
    all_ns = np.concatenate([image_ns, skipped_ns])
    lo, hi = int(all_ns.min()) - max_dt_ns, int(all_ns.max()) + max_dt_ns
    hits_ns = sum(lo <= v <= hi for v in values)
    hits_s = sum(lo <= v * _NS <= hi for v in values)
    if hits_ns != hits_s:
        return "ns" if hits_ns > hits_s else "s"
    return "ns" if max(abs(v) for v in values) >= 10**12 else "s"
