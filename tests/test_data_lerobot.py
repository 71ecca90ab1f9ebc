"""LeRobot reader: small v2.1 and v3.0 datasets written here with real AV1 video (PyAV) and parquet.

Every video frame is a solid colour that encodes a frame id (4 levels per channel survive lossy AV1), so
the tests can tell exactly which frame the reader returned for each row.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sim2real.data.episodes import DatasetError
from sim2real.data.lerobot import is_lerobot, read_lerobot

FPS = 10
SIZE = 64
LEVELS = np.array([16, 88, 160, 232])
FRONT, WRIST = "observation.images.front", "observation.images.wrist"
WRIST_OFFSET = 32  # the wrist camera shows id + 32, so the two cameras are told apart
CODEC = next(c for c in ("libsvtav1", "libaom-av1", "mpeg4") if c in av.codecs_available)


def colour(i: int) -> tuple[int, int, int]:
    return int(LEVELS[i % 4]), int(LEVELS[i // 4 % 4]), int(LEVELS[i // 16 % 4])


def colour_id(img: np.ndarray) -> int:
    mean = img.reshape(-1, 3).mean(0)
    digits = [int(np.argmin(np.abs(LEVELS - m))) for m in mean]
    return digits[0] + 4 * digits[1] + 16 * digits[2]


def encode(path: Path, ids: list[int], keyint: int | None = None) -> None:
    """Solid-colour frames at FPS, pts = frame number, yuv420p; a keyframe every ``keyint`` frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(CODEC, rate=FPS)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        if keyint:
            stream.codec_context.gop_size = keyint
        if CODEC == "libsvtav1":
            # Fast but not the fastest preset: M11+ smears colours at keyframes inside a clip.
            stream.options = {"preset": "8", "crf": "10", **({"svtav1-params": f"keyint={keyint}"} if keyint else {})}
        for i in ids:
            img = np.empty((SIZE, SIZE, 3), np.uint8)
            img[:] = colour(i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def state(ep: int, f: int, dim: int = 5) -> list[float]:
    return [0.1 * ep + 0.01 * f, -0.2 + 0.001 * f, 0.3, 0.05 * f, 0.04, 7.0][:dim] + [1.0] * max(0, dim - 6)


def action(ep: int, f: int, dim: int = 5) -> list[float]:
    return [(f % 5 - 2) / 2, -0.5, 0.25 * (ep % 4) - 0.5, 0.1, 1.0 if f < 3 else -1.0, 0.0, 0.0][:dim]


def features(cams=(FRONT, WRIST), dtype="video", state_dim=5, action_dim=5, extra=None) -> dict:
    ft = {cam: {"dtype": dtype, "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"]} for cam in cams}
    ft["observation.state"] = {"dtype": "float32", "shape": [state_dim], "names": [f"s{i}" for i in range(state_dim)]}
    ft["action"] = {"dtype": "float32", "shape": [action_dim], "names": [f"a{i}" for i in range(action_dim)]}
    for key, dt in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                    ("index", "int64"), ("task_index", "int64")):
        ft[key] = {"dtype": dt, "shape": [1], "names": None}
    return {**ft, **(extra or {})}


def write_info(root: Path, version: str, ft: dict, data_path: str, video_path: str | None, **more) -> None:
    (root / "meta").mkdir(parents=True, exist_ok=True)
    info = {"codebase_version": version, "robot_type": "test_arm", "total_episodes": 0, "total_frames": 0,
            "total_tasks": 1, "chunks_size": 1000, "fps": FPS, "splits": {}, "data_path": data_path,
            "video_path": video_path, "features": ft, **more}
    (root / "meta" / "info.json").write_text(json.dumps(info))


def frames_table(rows: list[dict], state_dim=5, action_dim=5, extra_cols=None) -> pa.Table:
    """rows: dicts with ep, f, (optional ts, state); LeRobot's schema: fixed-size float32 lists for vectors."""
    cols = {
        "observation.state": pa.array([r.get("state", state(r["ep"], r["f"], state_dim)) for r in rows],
                                      pa.list_(pa.float32(), state_dim)),
        "action": pa.array([action(r["ep"], r["f"], action_dim) for r in rows], pa.list_(pa.float32(), action_dim)),
        "timestamp": pa.array([r.get("ts", r["f"] / FPS) for r in rows], pa.float32()),
        "frame_index": pa.array([r["f"] for r in rows], pa.int64()),
        "episode_index": pa.array([r["ep"] for r in rows], pa.int64()),
        "index": pa.array(range(len(rows)), pa.int64()),
        "task_index": pa.array([0] * len(rows), pa.int64()),
    }
    for key, values in (extra_cols or {}).items():
        cols[key] = values
    return pa.table(cols)


def frame_ids(lengths) -> list[list[int]]:
    """Global frame id per episode and frame: 0, 1, 2, ... across episodes."""
    out, k = [], 0
    for n in lengths:
        out.append(list(range(k, k + n)))
        k += n
    return out


def make_v21(root: Path, lengths=(5, 5), state_dim=5, action_dim=5) -> Path:
    """v2.1: one parquet and one mp4 per camera per episode, episodes in meta/episodes.jsonl."""
    write_info(root, "v2.1", features(state_dim=state_dim, action_dim=action_dim),
               "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
               "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
               total_chunks=1, total_videos=2 * len(lengths))
    lines = [json.dumps({"episode_index": e, "tasks": ["pick the cube"], "length": n}) for e, n in enumerate(lengths)]
    (root / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    for e, ids in enumerate(frame_ids(lengths)):
        table = frames_table([{"ep": e, "f": f} for f in range(len(ids))], state_dim, action_dim)
        path = root / f"data/chunk-000/episode_{e:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        encode(root / f"videos/chunk-000/{FRONT}/episode_{e:06d}.mp4", ids)
        encode(root / f"videos/chunk-000/{WRIST}/episode_{e:06d}.mp4", [i + WRIST_OFFSET for i in ids])
    return root


def make_v30(root: Path, lengths=(4, 6, 3), video_files=((0, 1), (2,)), data_files=((0,), (1, 2)),
             keyint: int | None = None) -> Path:
    """v3.0: episodes concatenated in shared video files (grouped by ``video_files``) and data files
    (grouped differently, ``data_files``), located through meta/episodes/chunk-000/file-000.parquet.
    Extra features: ``grasp`` (4) and ``next.success`` (bool, true on the last frame of even episodes)."""
    extra = {"grasp": {"dtype": "float32", "shape": [4], "names": ["x", "y", "z", "yaw"]},
             "next.success": {"dtype": "bool", "shape": [1], "names": None}}
    write_info(root, "v3.0", features(cams=(FRONT,), extra=extra),
               "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
               "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
               data_files_size_in_mb=100, video_files_size_in_mb=200)
    ids = frame_ids(lengths)
    meta = {e: {"episode_index": e, "tasks": ["pick the cube"], "length": n} for e, n in enumerate(lengths)}
    for file_index, eps in enumerate(video_files):
        encode(root / f"videos/{FRONT}/chunk-000/file-{file_index:03d}.mp4", [i for e in eps for i in ids[e]], keyint)
        start = 0.0
        for e in eps:
            meta[e].update({f"videos/{FRONT}/chunk_index": 0, f"videos/{FRONT}/file_index": file_index,
                            f"videos/{FRONT}/from_timestamp": start,
                            f"videos/{FRONT}/to_timestamp": start + lengths[e] / FPS})
            start += lengths[e] / FPS
    index = 0
    for file_index, eps in enumerate(data_files):
        rows = [{"ep": e, "f": f} for e in eps for f in range(lengths[e])]
        extra_cols = {
            "grasp": pa.array([[0.5, 0.01 * r["f"], 0.02, 0.1 * r["ep"]] for r in rows], pa.list_(pa.float32(), 4)),
            "next.success": pa.array([r["ep"] % 2 == 0 and r["f"] == lengths[r["ep"]] - 1 for r in rows]),
        }
        path = root / f"data/chunk-000/file-{file_index:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(frames_table(rows, extra_cols=extra_cols), path)
        for e in eps:
            meta[e].update({"data/chunk_index": 0, "data/file_index": file_index, "dataset_from_index": index,
                            "dataset_to_index": index + lengths[e]})
            index += lengths[e]
    records = [meta[e] | {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                          "stats/action/min": [-1.0] * 5} for e in range(len(lengths))]
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), path)
    return root


def rewrite_column(path: Path, key: str, values: pa.Array) -> None:
    table = pq.read_table(path)
    pq.write_table(table.set_column(table.schema.get_field_index(key), key, values), path)


# ----------------------------------------------------------------------------- tests
def test_v21_frames_values_and_camera_choice(tmp_path):
    root = make_v21(tmp_path / "ds")
    ds = read_lerobot(root)
    assert ds.meta["image_key"] == FRONT  # first camera alphabetically
    assert ds.meta["format"] == "lerobot" and ds.meta["codebase_version"] == "v2.1" and ds.meta["fps"] == FPS
    assert ds.meta["source"] == str(root) and ds.meta["warnings"] == [] and ds.meta["skipped"] == []
    assert ds.images.shape == (10, SIZE, SIZE, 3) and ds.images.dtype == np.uint8
    assert ds.episode.tolist() == [0] * 5 + [1] * 5
    assert ds.step.tolist() == list(range(5)) * 2
    assert [colour_id(img) for img in ds.images] == list(range(10))
    np.testing.assert_allclose(ds.proprio, [state(e, f) for e in range(2) for f in range(5)], atol=1e-6)
    np.testing.assert_allclose(ds.action, [action(e, f) for e in range(2) for f in range(5)], atol=1e-6)
    assert np.isnan(ds.grasp).all() and np.isnan(ds.success).all()
    assert [r["episode"] for r in ds.episodes] == ["0", "1"] and ds.episodes[0]["tasks"] == "pick the cube"

    wrist = read_lerobot(root, image_key=WRIST, image_size=32)
    assert wrist.meta["image_key"] == WRIST and wrist.images.shape == (10, 32, 32, 3)
    assert [colour_id(img) for img in wrist.images] == [i + WRIST_OFFSET for i in range(10)]


def test_v21_matches_frames_by_timestamp_not_row_order(tmp_path):
    root = make_v21(tmp_path / "ds", lengths=(5,))
    path = root / "data/chunk-000/episode_000000.parquet"
    # Rows 3 and 4 swapped in time and jittered by less than half a frame period (50 ms).
    rewrite_column(path, "timestamp", pa.array([0.0, 0.13, 0.2, 0.4, 0.27], pa.float32()))
    ds = read_lerobot(root)
    assert [colour_id(img) for img in ds.images] == [0, 1, 2, 4, 3]
    assert ds.step.tolist() == [0, 1, 2, 3, 4]


def test_v30_multi_episode_files_with_offsets(tmp_path):
    root = make_v30(tmp_path / "ds")
    ds = read_lerobot(root, image_size=32)
    assert ds.meta["codebase_version"] == "v3.0" and ds.meta["image_key"] == FRONT
    assert ds.images.shape == (13, 32, 32, 3)
    assert ds.episode.tolist() == [0] * 4 + [1] * 6 + [2] * 3
    assert ds.step.tolist() == [*range(4), *range(6), *range(3)]
    # Episode 1 starts 0.4 s into file-000: a reader ignoring from_timestamp would return ids 0.. again.
    assert [colour_id(img) for img in ds.images] == list(range(13))
    lengths = (4, 6, 3)
    expect = [(e, f) for e, n in enumerate(lengths) for f in range(n)]
    np.testing.assert_allclose(ds.proprio, [state(e, f) for e, f in expect], atol=1e-6)
    np.testing.assert_allclose(ds.action, [action(e, f) for e, f in expect], atol=1e-6)
    np.testing.assert_allclose(ds.grasp, [[0.5, 0.01 * f, 0.02, 0.1 * e] for e, f in expect], atol=1e-6)
    # next.success is per frame; ours is per episode: episodes 0 and 2 succeeded, 1 did not.
    assert ds.success.tolist() == [1.0] * 4 + [0.0] * 6 + [1.0] * 3
    assert [r["success"] for r in ds.episodes] == ["1", "0", "1"]
    assert ds.meta["mapped"] == {"proprio": "observation.state", "action": "action", "grasp": "grasp"}

    first = read_lerobot(root, max_frames=11)  # episode 2 cut to its first frame
    assert first.episode.tolist() == [0] * 4 + [1] * 6 + [2]
    assert [colour_id(img) for img in first.images] == list(range(11))
    assert first.success[-1] == 1.0  # decided from the whole episode, not the rows kept


def test_v30_seeks_into_a_long_file_with_short_gops(tmp_path):
    # Keyframes every 7 frames and episodes starting mid-GOP: the reader seeks to the keyframe before
    # an episode and must still return exactly that episode's frames.
    lengths = (13, 17, 11, 9, 10)
    root = make_v30(tmp_path / "ds", lengths=lengths, video_files=((0, 1, 2, 3, 4),), data_files=((0, 1, 2, 3, 4),),
                    keyint=7)
    ds = read_lerobot(root)
    assert [colour_id(img) for img in ds.images] == list(range(sum(lengths)))
    assert ds.episode.tolist() == [e for e, n in enumerate(lengths) for _ in range(n)]


def test_image_dtype_stored_in_parquet(tmp_path):
    root = tmp_path / "ds"
    write_info(root, "v3.0", features(cams=("observation.image",), dtype="image"),
               "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet", None)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 24, 32, 3), dtype=np.uint8)
    images[2] = (200, 40, 90)  # the JPEG one: solid, so lossy coding stays close (and RGB order shows)
    cells = []
    for i, img in enumerate(images):
        ext = ".png" if i != 2 else ".jpg"  # one JPEG: both encodings occur in the wild
        ok, buf = cv2.imencode(ext, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        assert ok
        cells.append({"bytes": buf.tobytes(), "path": f"frame_{i:06d}{ext}"})
    image_col = pa.array(cells, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    table = frames_table([{"ep": 0, "f": f} for f in range(5)], extra_cols={"observation.image": image_col})
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(table, root / "data/chunk-000/file-000.parquet")
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    episodes = [{"episode_index": 0, "tasks": ["t"], "length": 5, "data/chunk_index": 0, "data/file_index": 0}]
    pq.write_table(pa.Table.from_pylist(episodes), root / "meta/episodes/chunk-000/file-000.parquet")
    ds = read_lerobot(root)
    assert ds.meta["image_key"] == "observation.image"
    assert ds.images.shape == (5, 24, 32, 3)
    for i in (0, 1, 3, 4):  # PNG is lossless
        assert np.array_equal(ds.images[i], images[i])
    assert np.abs(ds.images[2].astype(int) - images[2]).max() <= 4
    assert read_lerobot(root, image_size=16).images.shape == (5, 16, 16, 3)

    cells[3] = {"bytes": b"\x89PNG garbage", "path": None}
    rewrite_column(root / "data/chunk-000/file-000.parquet", "observation.image",
                   pa.array(cells, pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
    with pytest.raises(DatasetError, match=r"file-000\.parquet: row 3 \(episode 0, frame 3\).*do not decode"):
        read_lerobot(root)
    assert read_lerobot(root, skip_bad=True).step.tolist() == [0, 1, 2, 4]


def test_wrong_state_and_action_dims_warn_not_crash(tmp_path):
    root = make_v21(tmp_path / "ds", lengths=(3,), state_dim=6, action_dim=7)
    ds = read_lerobot(root)
    assert len(ds) == 3 and np.isnan(ds.proprio).all() and np.isnan(ds.action).all()
    warnings = " | ".join(ds.meta["warnings"])
    assert "'observation.state' has 6 values" in warnings and "'action' has 7 values" in warnings
    assert [colour_id(img) for img in ds.images] == [0, 1, 2]

    missing = read_lerobot(root, state_key="observation.nope", action_key=None)
    assert any("observation.nope" in w for w in missing.meta["warnings"])


def test_action_outside_unit_range_names_file_and_row(tmp_path):
    root = make_v21(tmp_path / "ds", lengths=(3, 3))
    path = root / "data/chunk-000/episode_000001.parquet"
    rewrite_column(path, "action", pa.array([action(1, 0), action(1, 1), [2.0, 0, 0, 0, 0]], pa.list_(pa.float32(), 5)))
    with pytest.raises(DatasetError, match=r"episode_000001\.parquet: row 2 \(episode 1, frame 2\).*outside \[-1, 1\]"):
        read_lerobot(root)
    assert np.isnan(read_lerobot(root, action_key=None).action).all()


def test_corrupt_video_names_the_file(tmp_path):
    root = make_v21(tmp_path / "ds", lengths=(3, 3))
    bad = root / f"videos/chunk-000/{FRONT}/episode_000001.mp4"
    bad.write_bytes(b"this is not an mp4 file" * 50)
    with pytest.raises(DatasetError, match=r"episode_000001\.mp4: cannot decode video \(episode 1"):
        read_lerobot(root)
    # The other camera is intact, so choosing it works.
    assert len(read_lerobot(root, image_key=WRIST)) == 6


def test_skip_bad_skips_and_reports(tmp_path):
    root = make_v21(tmp_path / "ds", lengths=(5, 3, 3))
    (root / f"videos/chunk-000/{FRONT}/episode_000001.mp4").write_bytes(b"\x00" * 300)
    (root / "data/chunk-000/episode_000002.parquet").unlink()
    path = root / "data/chunk-000/episode_000000.parquet"
    # Frame 4 is 70 ms after the last video frame (more than half a period, 50 ms); frame 1 has a NaN state.
    rewrite_column(path, "timestamp", pa.array([0.0, 0.1, 0.2, 0.3, 0.47], pa.float32()))
    states = [state(0, f) for f in range(5)]
    states[1][2] = float("nan")
    rewrite_column(path, "observation.state", pa.array(states, pa.list_(pa.float32(), 5)))

    with pytest.raises(DatasetError, match=r"episode_000000\.parquet: row 1 \(episode 0, frame 1\).*non-finite"):
        read_lerobot(root)
    ds = read_lerobot(root, skip_bad=True)
    assert ds.episode.tolist() == [0, 0, 0] and ds.step.tolist() == [0, 2, 3]
    assert [colour_id(img) for img in ds.images] == [0, 2, 3]
    skipped = ds.meta["skipped"]
    assert len(skipped) == 4
    assert any("episode 0, frame 1" in s and "non-finite" in s for s in skipped)
    assert any("episode_000000.mp4: episode 0 frame 4" in s and "nearest is 70.0 ms away" in s for s in skipped)
    assert any("episode_000001.mp4" in s and "cannot decode" in s for s in skipped)
    assert any("episode_000002.parquet: data parquet missing" in s for s in skipped)

    # Without the NaN, the unmatched frame alone raises, naming the video and the frame.
    rewrite_column(path, "observation.state", pa.array([state(0, f) for f in range(5)], pa.list_(pa.float32(), 5)))
    with pytest.raises(DatasetError, match=r"episode_000000\.mp4: episode 0 frame 4 \(t = 0\.4700 s"):
        read_lerobot(root)


def test_v30_missing_data_file_and_video(tmp_path):
    root = make_v30(tmp_path / "ds")
    (root / "data/chunk-000/file-001.parquet").unlink()  # holds episodes 1 and 2
    with pytest.raises(DatasetError, match=r"file-001\.parquet: data parquet missing"):
        read_lerobot(root)
    ds = read_lerobot(root, skip_bad=True)
    assert ds.episode.tolist() == [0] * 4
    assert [s.rsplit(" ", 1)[-1] for s in ds.meta["skipped"]] == ["1)", "2)"]  # one message per episode
    assert all("file-001.parquet: data parquet missing (episode" in s for s in ds.meta["skipped"])

    root = make_v30(tmp_path / "ds2")
    (root / f"videos/{FRONT}/chunk-000/file-001.mp4").unlink()
    with pytest.raises(DatasetError, match=rf"{FRONT}/chunk-000/file-001\.mp4: video missing \(episode 2"):
        read_lerobot(root)


def test_missing_image_key_lists_available(tmp_path):
    root = make_v21(tmp_path / "ds", lengths=(2,))
    with pytest.raises(DatasetError, match=rf"info\.json: no video/image feature 'cam'; available: {FRONT}, {WRIST}"):
        read_lerobot(root, image_key="cam")


def test_unsupported_version_names_info_json(tmp_path):
    root = make_v21(tmp_path / "ds", lengths=(2,))
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    assert is_lerobot(root)  # recognisably LeRobot, just too old
    with pytest.raises(DatasetError, match=r"meta/info\.json: codebase_version 'v1\.6' is not supported"):
        read_lerobot(root)


def test_is_lerobot(tmp_path):
    assert is_lerobot(make_v21(tmp_path / "v21", lengths=(1,)))
    assert is_lerobot(make_v30(tmp_path / "v30", lengths=(1,), video_files=((0,),), data_files=((0,),)))
    assert not is_lerobot(tmp_path / "nowhere")
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "dataset.json").write_text(json.dumps({"format": "sim2real-episodes"}))
    assert not is_lerobot(ours)
    (ours / "meta").mkdir()
    (ours / "meta/info.json").write_text(json.dumps({"fps": 10}))
    assert not is_lerobot(ours)
    (ours / "meta/info.json").write_text("{not json")
    assert not is_lerobot(ours)
