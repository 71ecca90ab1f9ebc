"""ROS bag reader: rosbag2 (sqlite3, MCAP) and ROS 1 bags written here with the rosbags writers."""

import csv
import math

import cv2
import numpy as np
import pytest
from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Writer2
from rosbags.typesys import Stores, get_typestore

from sim2real.data.episodes import DatasetError
from sim2real.data.rosbag import is_rosbag, read_rosbag

TS2 = get_typestore(Stores.ROS2_HUMBLE)
TS1 = get_typestore(Stores.ROS1_NOETIC)
NS = 1_000_000_000
T0 = 1_700_000_000 * NS  # a wall-clock epoch, like a real recording


def ns(seconds):
    return T0 + int(round(seconds * NS))


def header(ts, t):
    stamp = ts.types["builtin_interfaces/msg/Time"](sec=t // NS, nanosec=t % NS)
    if ts is TS1:
        return ts.types["std_msgs/msg/Header"](seq=0, stamp=stamp, frame_id="camera")
    return ts.types["std_msgs/msg/Header"](stamp=stamp, frame_id="camera")


def raw_image(ts, t, rgb, encoding="rgb8", pad=0, data=None):
    """Image message of ``rgb`` (H, W, 3) in ``encoding`` with ``pad`` bytes after each row."""
    h, w = rgb.shape[:2]
    conv = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., :1]}[encoding]
    row = w * conv.shape[2]
    buf = np.zeros((h, row + pad), np.uint8)
    buf[:, :row] = conv.reshape(h, row)
    if pad:
        buf[:, row:] = 77  # padding must not leak into the picture
    return ts.types["sensor_msgs/msg/Image"](
        header=header(ts, t), height=h, width=w, encoding=encoding, is_bigendian=0, step=row + pad,
        data=buf.reshape(-1) if data is None else data)


def jpeg_image(ts, t, rgb):
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return ts.types["sensor_msgs/msg/CompressedImage"](header=header(ts, t), format="jpeg",
                                                       data=np.frombuffer(buf.tobytes(), np.uint8))


def pose(ts, t, x, y, z, yaw):
    g = ts.types
    return g["geometry_msgs/msg/PoseStamped"](header=header(ts, t), pose=g["geometry_msgs/msg/Pose"](
        position=g["geometry_msgs/msg/Point"](x=x, y=y, z=z),
        orientation=g["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))))


def write_bag(path, storage, messages):
    """messages: [(topic, msgtype, bag time ns, message or raw bytes)]; storage: sqlite3 | mcap | ros1."""
    ts = TS1 if storage == "ros1" else TS2
    if storage == "ros1":
        writer = Writer1(path)
    else:
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        writer = Writer2(path, version=9, storage_plugin=plugin)
    with writer:
        conns = {}
        for topic, msgtype, t, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            if not isinstance(msg, bytes):
                msg = bytes(ts.serialize_ros1(msg, msgtype) if storage == "ros1" else ts.serialize_cdr(msg, msgtype))
            writer.write(conns[topic], t, msg)
    return path


def pictures(n, h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


IMG = "sensor_msgs/msg/Image"


def test_raw_rgb8_and_bgr8_with_row_padding(tmp_path):
    pics = pictures(3)
    msgs = [("/cam", IMG, ns(0.1 * i), raw_image(TS2, ns(0.1 * i), p, enc, pad))
            for i, (p, enc, pad) in enumerate(zip(pics, ["rgb8", "bgr8", "bgr8"], [0, 3, 8], strict=True))]
    bag = write_bag(tmp_path / "bag", "sqlite3", msgs)
    ds = read_rosbag(bag)
    assert ds.images.dtype == np.uint8 and ds.images.shape == (3, 6, 5, 3)
    np.testing.assert_array_equal(ds.images, pics)  # channels swapped back, padding dropped
    assert ds.meta["format"] == "rosbag2" and ds.meta["image_topic"] == "/cam"
    assert ds.meta["topics"]["/cam"] == {"type": IMG, "messages": 3}
    assert list(ds.episode) == [0, 0, 0] and list(ds.step) == [0, 1, 2]
    assert np.isnan(ds.proprio).all() and ds.meta["skipped"] == []
    small = read_rosbag(bag, image_size=4)
    assert small.images.shape == (3, 4, 4, 3)


def test_compressed_jpeg_in_mcap_read_as_directory_and_as_file(tmp_path):
    yy, xx = np.mgrid[0:32, 0:40]
    smooth = np.stack([xx * 6, yy * 7, np.full_like(xx, 128)], -1).astype(np.uint8)  # JPEG keeps gradients
    msgs = [("/cam/compressed", "sensor_msgs/msg/CompressedImage", ns(i), jpeg_image(TS2, ns(i), smooth))
            for i in range(2)]
    bag = write_bag(tmp_path / "bag", "mcap", msgs)
    for source in (bag, next(bag.glob("*.mcap"))):
        ds = read_rosbag(source)
        assert ds.images.shape == (2, 32, 40, 3)
        err = np.abs(ds.images.astype(int) - smooth.astype(int)).mean()
        assert err < 4, err  # RGB order kept: a channel swap would give errors near 100


def test_pose_and_gripper_matched_by_nearest_time(tmp_path):
    pics = pictures(4)
    msgs = []
    for i, p in enumerate(pics):
        # Header stamp 0.1 i s, received 30 ms later: matching must use the header stamp.
        msgs.append(("/cam", IMG, ns(0.1 * i + 0.03), raw_image(TS2, ns(0.1 * i), p)))
    for i, t in enumerate([0.01, 0.09, 0.31]):  # nothing near image 2 (t = 0.2)
        msgs.append(("/ee", "geometry_msgs/msg/PoseStamped", ns(t + 0.5), pose(TS2, ns(t), 0.1 * i, 0.2, 0.3, 0.5 * i)))
    for t, opening in [(0.0, 0.08), (0.19, 0.04), (0.3, 0.01)]:  # Float64 has no header: bag time
        msgs.append(("/grip", "std_msgs/msg/Float64", ns(t), TS2.types["std_msgs/msg/Float64"](data=opening)))
    bag = write_bag(tmp_path / "bag", "sqlite3", sorted(msgs, key=lambda m: m[2]))
    ds = read_rosbag(bag, pose_topic="/ee", gripper_topic="/grip", max_dt=0.02)
    np.testing.assert_allclose(ds.proprio[:, 0], [0.0, 0.1, np.nan, 0.2], atol=1e-6)
    np.testing.assert_allclose(ds.proprio[:, 3], [0.0, 0.5, np.nan, 1.0], atol=1e-6)
    np.testing.assert_allclose(ds.proprio[:, 4], [0.08, np.nan, 0.04, 0.01], atol=1e-6)
    assert any("/ee" in w and "1 of 4" in w for w in ds.meta["warnings"])
    assert any("/grip" in w and "1 of 4" in w for w in ds.meta["warnings"])
    with pytest.raises(DatasetError, match="/nope"):
        read_rosbag(bag, pose_topic="/nope")


def test_ros1_bag_mono8_and_joint_state_fingers(tmp_path):
    pics = pictures(2)
    js = TS1.types["sensor_msgs/msg/JointState"]
    msgs = [("/cam", IMG, ns(i), raw_image(TS1, ns(i), p, "mono8")) for i, p in enumerate(pics)]
    msgs += [("/joints", "sensor_msgs/msg/JointState", ns(i),
              js(header=header(TS1, ns(i)), name=["joint1", "finger_joint1", "finger_joint2"],
                 position=np.array([1.5, 0.01 * (i + 1), 0.01 * (i + 1)]), velocity=np.zeros(0), effort=np.zeros(0)))
             for i in range(2)]
    bag = write_bag(tmp_path / "run.bag", "ros1", sorted(msgs, key=lambda m: m[2]))
    ds = read_rosbag(bag, gripper_topic="/joints")
    assert ds.meta["format"] == "rosbag1"
    np.testing.assert_array_equal(ds.images, np.repeat(pics[..., :1], 3, axis=-1))
    np.testing.assert_allclose(ds.proprio[:, 4], [0.02, 0.04], atol=1e-6)


def write_labels(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_labels_join_in_seconds_or_nanoseconds_and_bad_rows_are_named(tmp_path):
    msgs = [("/cam", IMG, ns(0.1 * i), raw_image(TS2, ns(0.1 * i), p)) for i, p in enumerate(pictures(4))]
    bag = write_bag(tmp_path / "bag", "sqlite3", msgs)
    head = ["stamp", "grasp_x", "grasp_y", "grasp_z", "grasp_yaw", "success", "a_dx"]
    # The same rows with float seconds and with integer nanoseconds; the first is 4 ms off its image.
    seconds = write_labels(tmp_path / "s.csv", head, [[f"{ns(0.104) / NS:.6f}", 0.5, 0.1, 0.02, 1.0, 1, ""],
                                                      [f"{ns(0.3) / NS:.6f}", 0.6, "", 0.03, 0.0, 0, -0.5]])
    nanos = write_labels(tmp_path / "n.csv", head, [[ns(0.1) + 4_000_000, 0.5, 0.1, 0.02, 1.0, 1, ""],
                                                    [ns(0.3), 0.6, "", 0.03, 0.0, 0, -0.5]])
    for labels, unit in ((seconds, "s"), (nanos, "ns")):
        ds = read_rosbag(bag, labels=labels)
        assert ds.meta["labels"]["stamp_unit"] == unit and ds.meta["labels"]["matched"] == 2
        np.testing.assert_allclose(ds.grasp[1], [0.5, 0.1, 0.02, 1.0], atol=1e-6)
        np.testing.assert_allclose(ds.grasp[3], [0.6, np.nan, 0.03, 0.0], atol=1e-6)
        assert np.isnan(ds.grasp[[0, 2]]).all()
        np.testing.assert_array_equal(ds.success, [np.nan, 1, np.nan, 0])
        np.testing.assert_allclose(ds.action[:, 0], [np.nan, np.nan, np.nan, -0.5])

    # Row 3 is 60 ms from the nearest image, beyond the default max_dt of 50 ms.
    far = write_labels(tmp_path / "far.csv", ["stamp", "success"], [[ns(0.0), 1], [ns(0.36), 1]])
    with pytest.raises(DatasetError, match=r"far\.csv: row 3: .*matches no image"):
        read_rosbag(bag, labels=far)
    text = write_labels(tmp_path / "text.csv", ["stamp", "grasp_x"], [[ns(0.0), "left"]])
    with pytest.raises(DatasetError, match=r"text\.csv: row 2: column 'grasp_x' is not a number"):
        read_rosbag(bag, labels=text)
    unknown = write_labels(tmp_path / "unknown.csv", ["stamp", "quality"], [[ns(0.0), 1]])
    with pytest.raises(DatasetError, match=r"unknown\.csv: unknown columns \['quality'\]; allowed: stamp, episode"):
        read_rosbag(bag, labels=unknown)


def test_episodes_from_episode_topic_and_from_labels(tmp_path):
    int32 = TS2.types["std_msgs/msg/Int32"]
    msgs = [("/cam", IMG, ns(0.1 * i), raw_image(TS2, ns(0.1 * i), p)) for i, p in enumerate(pictures(6))]
    msgs += [("/episode", "std_msgs/msg/Int32", ns(t), int32(data=e)) for t, e in [(0.05, 0), (0.2, 1), (0.45, 2)]]
    bag = write_bag(tmp_path / "bag", "mcap", sorted(msgs, key=lambda m: m[2]))
    ds = read_rosbag(bag, episode_topic="/episode")
    # Image 0 (t = 0) comes before the first index and is dropped, with a warning; the image at
    # t = 0.2 s, stamped the same as index 1, already belongs to episode 1.
    assert list(ds.episode) == [0, 1, 1, 1, 2] and list(ds.step) == [0, 0, 1, 2, 0]
    assert [e["steps"] for e in ds.episodes] == ["1", "3", "1"]
    assert any("1 images before the first episode" in w for w in ds.meta["warnings"])

    labels = write_labels(tmp_path / "ep.csv", ["stamp", "episode", "success"],
                          [[ns(0.0), 3, 1], [ns(0.3), 4, 0]])
    ds = read_rosbag(bag, episode_topic="/episode", labels=labels)  # the labels win
    assert list(ds.episode) == [3, 3, 3, 4, 4, 4] and list(ds.step) == [0, 1, 2, 0, 1, 2]
    assert [(e["episode"], e["success"]) for e in ds.episodes] == [("3", "1"), ("4", "0")]


def test_several_image_topics_need_image_topic(tmp_path):
    pics = pictures(2)
    msgs = [("/left", IMG, ns(0), raw_image(TS2, ns(0), pics[0])),
            ("/right", "sensor_msgs/msg/CompressedImage", ns(0.1), jpeg_image(TS2, ns(0.1), pics[1]))]
    bag = write_bag(tmp_path / "bag", "sqlite3", msgs)
    with pytest.raises(DatasetError, match=r"several image topics \['/left', '/right'\]"):
        read_rosbag(bag)
    ds = read_rosbag(bag, image_topic="/left")
    np.testing.assert_array_equal(ds.images, pics[:1])


def test_corrupt_bags_raise_naming_the_file(tmp_path):
    garbage = tmp_path / "garbage.bag"
    garbage.write_bytes(b"#ROSBAG V2.0\n" + bytes(range(256)) * 8)
    with pytest.raises(DatasetError, match="garbage.bag: cannot read ROS bag"):
        read_rosbag(garbage)
    db = tmp_path / "broken.db3"
    db.write_bytes(b"this is not an sqlite database" * 50)
    with pytest.raises(DatasetError, match="broken.db3: cannot read ROS bag"):
        read_rosbag(db)
    msgs = [("/cam", IMG, ns(i), raw_image(TS1, ns(i), p)) for i, p in enumerate(pictures(3, 40, 40))]
    whole = write_bag(tmp_path / "whole.bag", "ros1", msgs)
    cut = tmp_path / "cut.bag"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DatasetError, match="cut.bag"):
        read_rosbag(cut)


def test_truncated_image_messages_raise_or_are_skipped(tmp_path):
    pics = pictures(4)
    short = raw_image(TS2, ns(0.1), pics[1], data=np.zeros(7, np.uint8))  # valid message, too few pixels
    cut = bytes(TS2.serialize_cdr(raw_image(TS2, ns(0.2), pics[2]), IMG))[:40]  # truncated bytes
    msgs = [("/cam", IMG, ns(0.0), raw_image(TS2, ns(0.0), pics[0])), ("/cam", IMG, ns(0.1), short),
            ("/cam", IMG, ns(0.2), cut), ("/cam", IMG, ns(0.3), raw_image(TS2, ns(0.3), pics[3]))]
    bag = write_bag(tmp_path / "bag", "sqlite3", msgs)
    with pytest.raises(DatasetError, match=r"bag: topic /cam: message 1 .*data has 7 bytes"):
        read_rosbag(bag)
    labels = write_labels(tmp_path / "l.csv", ["stamp", "success"], [[ns(0.2), 1], [ns(0.3), 0]])
    ds = read_rosbag(bag, skip_bad=True, labels=labels)
    np.testing.assert_array_equal(ds.images, pics[[0, 3]])
    skipped = ds.meta["skipped"]
    assert len(skipped) == 3, skipped
    assert "message 1" in skipped[0] and "message 2" in skipped[1] and "does not deserialize" in skipped[1]
    assert "l.csv: row 2" in skipped[2]  # the label of a skipped image goes with it
    np.testing.assert_array_equal(ds.success, [np.nan, 0])


def test_is_rosbag(tmp_path):
    bag2 = write_bag(tmp_path / "bag2", "sqlite3", [("/cam", IMG, ns(0), raw_image(TS2, ns(0), pictures(1)[0]))])
    assert is_rosbag(bag2) and is_rosbag(str(bag2)) and is_rosbag(next(bag2.glob("*.db3")))
    (tmp_path / "x.bag").write_bytes(b"")
    assert is_rosbag(tmp_path / "x.bag")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "plain").mkdir()
    assert not is_rosbag(tmp_path / "notes.txt")
    assert not is_rosbag(tmp_path / "plain")
    assert not is_rosbag(tmp_path / "missing.bag")
    with pytest.raises(DatasetError, match="not a ROS bag"):
        read_rosbag(tmp_path / "plain")
