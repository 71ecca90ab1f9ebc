"""Read LeRobot datasets (codebase versions v2.0, v2.1 and v3.0) into our in-memory ``Dataset``.

A LeRobot dataset is a folder with ``meta/info.json`` (``codebase_version``, ``fps``, ``features``, path
templates ``data_path`` / ``video_path``, ``chunks_size``), per-frame tables in parquet and camera
streams either as mp4 videos (feature dtype ``"video"``) or as encoded images inside the parquet tables
(dtype ``"image"``: a struct with ``bytes`` and ``path``). The layouts differ by version:

v2.0 / v2.1 (one file per episode)::

    meta/episodes.jsonl                 {"episode_index": 3, "tasks": [...], "length": 266} per line
    data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet
    videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4
                                        (episode_chunk = episode_index // chunks_size)

v3.0 (files hold many episodes)::

    meta/episodes/chunk-XXX/file-XXX.parquet
                                        one row per episode: episode_index, tasks, length,
                                        data/chunk_index, data/file_index, dataset_from_index, ...,
                                        videos/{video_key}/chunk_index, .../file_index,
                                        .../from_timestamp, .../to_timestamp (s)
    data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet
    videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4
                                        episodes concatenated; an episode's frame at row time t
                                        is at from_timestamp + t in the file

Every data row has ``episode_index``, ``frame_index`` (0.. within the episode) and ``timestamp`` (s
from the episode start). Video frames are matched to rows by time (the nearest decoded frame within
half a frame period), as LeRobot itself does, rather than by position, because a recording can drop
or duplicate frames.

Column mapping to our groups (``sim2real.data.episodes``): ``state_key`` -> proprio and
``action_key`` -> action, but only when the feature has 5 values (our convention: ee_x, ee_y, ee_z m,
ee_yaw rad, gripper opening m; actions dx, dy, dz, dyaw, grip in [-1, 1]). Any other size is kept as
unknown with a warning in ``meta["warnings"]``: a 6-joint arm's state is not an end-effector pose and
guessing would silently train on wrong inputs. Features named exactly ``expert_action`` (5),
``object`` (4) or ``grasp`` (4) map to the group of that name; ``success`` or ``next.success`` map to
success (the episode counts as a success if any of its rows says so).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sim2real.data.episodes import (
    ACTION_GROUPS,
    GROUPS,
    Dataset,
    DatasetError,
    actions_out_of_range,
    dataset_from_arrays,
)

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
INFO_PATH = "meta/info.json"
# Defaults of the LeRobot releases, used only when info.json lacks a template (it normally has them).
V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V2_EPISODES_PATH = "meta/episodes.jsonl"
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_EPISODES_DIR = "meta/episodes"
IMAGE_DTYPES = ("video", "image")
# Features that map to our groups when named exactly like them, with the size each must have.
NAMED_GROUPS = {"expert_action": 5, "object": 4, "grasp": 4}
SUCCESS_KEYS = ("success", "next.success")


def is_lerobot(root: str | Path) -> bool:
    """True if ``root`` looks like a LeRobot dataset: ``meta/info.json`` is a JSON object with a
    ``codebase_version`` key (whatever the version; ``read_lerobot`` says if it is unsupported)."""
    path = Path(root) / INFO_PATH
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "codebase_version" in info


@dataclass
class _Episode:
    """Where one episode lives. Paths are absolute; from_ts is the episode start in its video (s)."""

    index: int
    tasks: str
    data_file: Path
    video_file: Path | None = None
    from_ts: float = 0.0


@dataclass
class _Rows:
    """The usable rows of one episode (K rows) and messages about the rows that were not usable."""

    frame: np.ndarray  # int64 (K,)
    images: list[np.ndarray]  # K uint8 (H, W, 3) RGB
    groups: dict[str, np.ndarray]  # group name -> float32 (K, k)
    success: np.ndarray  # float32 (K,), NaN = unknown
    bad: list[str] = field(default_factory=list)


def read_lerobot(root: str | Path, image_size: int | None = None, skip_bad: bool = False,
                 image_key: str | None = None, state_key: str | None = "observation.state",
                 action_key: str | None = "action", max_frames: int | None = None) -> Dataset:
    """Load a LeRobot dataset (v2.0, v2.1 or v3.0) into memory as a ``Dataset``.

    Args:
        root: the dataset folder (the one holding ``meta/``, ``data/`` and ``videos/``).
        image_size: resize every image to this square size in pixels (area interpolation); None keeps
            the recorded size, which must then be the same for every row.
        skip_bad: drop unusable rows (a video frame that cannot be matched, an image that does not
            decode, non-finite values) and whole episodes (a missing or unreadable parquet or video file)
            instead of raising; one message per skipped row or episode goes to ``meta["skipped"]``.
        image_key: the camera feature to load (dtype "video" or "image"); None = the first such
            feature in alphabetical order. ``meta["image_key"]`` says which one was used.
        state_key: feature mapped to proprio if it has 5 values (ee_x, ee_y, ee_z m, ee_yaw rad,
            gripper m); any other size, or a missing feature, leaves proprio unknown (NaN) with a
            warning in ``meta["warnings"]``. None = do not map.
        action_key: feature mapped to action if it has 5 values, all in [-1, 1]; otherwise as above.
        max_frames: stop after this many usable rows (episodes in index order); None = all.

    Returns:
        Dataset with images uint8 (N, H, W, 3) RGB, episode = ``episode_index`` and step =
        ``frame_index`` int64 (N,), the mapped float32 groups (unmapped ones NaN) and success (N,) 0/1 or
        NaN. meta: format "lerobot", codebase_version, fps, image_key, source (the folder), mapped
        ({group: feature}), warnings, skipped.
    Raises:
        DatasetError naming the file (and, for row problems, the episode and frame index) for an
        unsupported version, a missing or unreadable file, an unknown ``image_key``, an unmatched
        frame or non-finite values (unless ``skip_bad``), and actions outside [-1, 1] (always: that
        means the dataset uses another action convention, so pass ``action_key=None``).
    """
    try:
        import pyarrow.parquet as pq
    except ImportError as e:  # an optional dependency: only LeRobot input needs it
        raise ImportError("reading LeRobot datasets needs pyarrow (pip install pyarrow)") from e
    if image_size is not None and image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if max_frames is not None and max_frames <= 0:
        raise ValueError(f"max_frames must be positive, got {max_frames}")
    root = Path(root)
    info_path = root / INFO_PATH
    info = _load_info(info_path)
    version = info["codebase_version"]
    fps = float(info["fps"])
    features: dict = info["features"]
    image_key = _choose_image_key(features, image_key, info_path)
    is_video = features[image_key]["dtype"] == "video"
    warnings: list[str] = []
    mapped = _plan_mapping(features, state_key, action_key, warnings)
    success_key = next((k for k in SUCCESS_KEYS if k in features), None)

    if version.startswith("v2."):
        episodes = _episodes_v2(root, info, image_key if is_video else None)
    else:
        episodes = _episodes_v3(root, info, image_key if is_video else None, pq)

    columns = ["episode_index", "frame_index", *mapped.values()]
    if success_key:
        columns.append(success_key)
    if is_video:
        columns.append("timestamp")
    else:
        columns.append(image_key)
    tables = _TableCache(pq, columns)

    skipped: list[str] = []
    kept: list[tuple[int, _Rows]] = []
    records: list[dict] = []
    shape: tuple | None = None
    total = 0
    for ep in tqdm(episodes, desc="lerobot episodes", unit="ep", disable=None):
        if max_frames is not None and total >= max_frames:
            break
        budget = None if max_frames is None else max_frames - total
        try:
            rows = _load_episode(ep, tables, mapped, success_key, image_key, is_video,
                                 fps, image_size, budget, root)
        except DatasetError as e:
            if not skip_bad:
                raise
            skipped.append(str(e))
            continue
        # One image size for the whole dataset: checked here because it spans episodes.
        shape = shape or (rows.images[0].shape if rows.images else None)
        wrong = [i for i, img in enumerate(rows.images) if img.shape != shape]
        for i in wrong:
            img = rows.images[i]
            rows.bad.append(f"{ep.video_file or ep.data_file}: episode {ep.index} frame {rows.frame[i]}: image "
                            f"size {img.shape[1]}x{img.shape[0]} differs from the first image's "
                            f"{shape[1]}x{shape[0]}; pass image_size")
        rows = _drop_rows(rows, wrong)
        if rows.bad and not skip_bad:
            raise DatasetError(rows.bad[0])
        skipped.extend(rows.bad)
        if not len(rows.frame):
            continue
        kept.append((ep.index, rows))
        total += len(rows.frame)
        ep_success = rows.success[0] if len(rows.success) else math.nan
        records.append({"episode": str(ep.index), "steps": str(len(rows.frame)),
                        "success": "" if math.isnan(ep_success) else str(int(ep_success)), "source": "lerobot",
                        "seed": "", "objects": "", "tasks": ep.tasks})

    if not kept:
        detail = f" ({len(skipped)} skipped; first: {skipped[0]})" if skipped else ""
        raise DatasetError(f"{root}: no usable rows{detail}")
    meta = {"format": "lerobot", "codebase_version": version, "fps": fps, "image_key": image_key,
            "source": str(root), "robot_type": info.get("robot_type"), "mapped": mapped, "warnings": warnings,
            "skipped": skipped}
    groups = {name: np.concatenate([r.groups[name] for _, r in kept]) for name in mapped}
    return dataset_from_arrays(
        root, meta, images=np.stack([img for _, r in kept for img in r.images]),
        episode=np.concatenate([np.full(len(r.frame), e, np.int64) for e, r in kept]),
        step=np.concatenate([r.frame for _, r in kept]),
        success=np.concatenate([r.success for _, r in kept]), episodes=records, **groups)


# ----------------------------------------------------------------------------- metadata
def _load_info(path: Path) -> dict:
    """Read and sanity-check meta/info.json."""
    if not path.exists():
        raise DatasetError(f"{path}: missing (not a LeRobot dataset)")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(info, dict) or "codebase_version" not in info:
        raise DatasetError(f"{path}: no 'codebase_version' key (not a LeRobot dataset)")
    version = info["codebase_version"]
    if version not in SUPPORTED_VERSIONS:
        raise DatasetError(f"{path}: codebase_version {version!r} is not supported "
                           f"(supported: {', '.join(SUPPORTED_VERSIONS)})")
    for key in ("fps", "features"):
        if key not in info:
            raise DatasetError(f"{path}: missing the {key!r} key")
    if not isinstance(info["features"], dict):
        raise DatasetError(f"{path}: 'features' must be an object")
    try:
        if not float(info["fps"]) > 0:
            raise ValueError
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: fps must be a positive number, got {info['fps']!r}") from None
    return info


def _choose_image_key(features: dict, image_key: str | None, info_path: Path) -> str:
    cameras = sorted(k for k, ft in features.items() if isinstance(ft, dict) and ft.get("dtype") in IMAGE_DTYPES)
    if image_key is None:
        if not cameras:
            raise DatasetError(f"{info_path}: no video or image feature; our Dataset needs one image per row")
        return cameras[0]
    if image_key not in cameras:
        raise DatasetError(f"{info_path}: no video/image feature {image_key!r}; available: "
                           f"{', '.join(cameras) if cameras else '(none)'}")
    return image_key


def _feature_size(ft: dict) -> int:
    shape = ft.get("shape") or [1]
    return int(np.prod(shape))


def _plan_mapping(features: dict, state_key: str | None, action_key: str | None,
                  warnings: list[str]) -> dict[str, str]:
    """Decide which feature fills which group ({group: feature key}); explain refusals in warnings."""
    mapped: dict[str, str] = {}
    for group, key in (("proprio", state_key), ("action", action_key)):
        if key is None:
            continue
        want = len(GROUPS[group])
        if key not in features:
            warnings.append(f"no feature {key!r}: {group} left unknown")
        elif _feature_size(features[key]) != want:
            names = features[key].get("names")
            warnings.append(f"feature {key!r} has {_feature_size(features[key])} values (names: {names}), not the "
                            f"{want} of our {group} ({', '.join(GROUPS[group])}): {group} left unknown")
        else:
            mapped[group] = key
    for group, want in NAMED_GROUPS.items():
        if group in features and group not in mapped.values():
            if _feature_size(features[group]) == want:
                mapped[group] = group
            else:
                warnings.append(f"feature {group!r} has {_feature_size(features[group])} values, not {want}: ignored")
    return mapped


def _format(template: str, info_path: Path, **kw) -> str:
    try:
        return template.format(**kw)
    except (KeyError, IndexError, ValueError) as e:
        raise DatasetError(f"{info_path}: cannot fill path template {template!r} ({e!r})") from None


def _episodes_v2(root: Path, info: dict, video_key: str | None) -> list[_Episode]:
    """Episodes of a v2.x dataset from meta/episodes.jsonl; one data and one video file each."""
    path = root / V2_EPISODES_PATH
    if not path.exists():
        raise DatasetError(f"{path}: missing (lists the episodes of a {info['codebase_version']} dataset)")
    chunks = int(info.get("chunks_size") or 1000)
    data_t = info.get("data_path") or V2_DATA_PATH
    video_t = info.get("video_path") or V2_VIDEO_PATH
    out = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            index = int(rec["episode_index"])
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"{path}: line {line_no}: not an episode record ({e!r})") from None
        where = dict(episode_chunk=index // chunks, episode_index=index, chunk_index=index // chunks,
                     file_index=index)
        video = root / _format(video_t, root / INFO_PATH, video_key=video_key, **where) if video_key else None
        out.append(_Episode(index, _tasks(rec.get("tasks")), root / _format(data_t, root / INFO_PATH, **where),
                            video))
    return sorted(out, key=lambda e: e.index)


def _episodes_v3(root: Path, info: dict, video_key: str | None, pq) -> list[_Episode]:
    """Episodes of a v3.0 dataset from meta/episodes/*/*.parquet (data and video file indices)."""
    files = sorted((root / V3_EPISODES_DIR).glob("*/*.parquet"))
    if not files:
        raise DatasetError(f"{root / V3_EPISODES_DIR}: no episodes parquet files (chunk-XXX/file-XXX.parquet)")
    need = ["episode_index", "data/chunk_index", "data/file_index"]
    if video_key:
        need += [f"videos/{video_key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp")]
    data_t = info.get("data_path") or V3_DATA_PATH
    video_t = info.get("video_path") or V3_VIDEO_PATH
    out = []
    for path in files:
        try:
            names = pq.read_schema(path).names
            missing = [c for c in need if c not in names]
            if missing:
                raise DatasetError(f"{path}: missing columns {missing}")
            # Only the columns we need: the stats/* columns can be many and large.
            cols = need + (["tasks"] if "tasks" in names else [])
            table = pq.read_table(path, columns=cols).to_pydict()
        except DatasetError:
            raise
        except Exception as e:  # pyarrow raises several types for damaged files
            raise DatasetError(f"{path}: cannot read episodes parquet ({e})") from None
        for i, index in enumerate(table["episode_index"]):
            where = dict(chunk_index=table["data/chunk_index"][i], file_index=table["data/file_index"][i])
            ep = _Episode(int(index), _tasks(table["tasks"][i] if "tasks" in table else None),
                          root / _format(data_t, root / INFO_PATH, **where))
            if video_key:
                vwhere = dict(chunk_index=table[f"videos/{video_key}/chunk_index"][i],
                              file_index=table[f"videos/{video_key}/file_index"][i])
                ep.video_file = root / _format(video_t, root / INFO_PATH, video_key=video_key, **vwhere)
                ep.from_ts = float(table[f"videos/{video_key}/from_timestamp"][i])
            out.append(ep)
    return sorted(out, key=lambda e: e.index)


def _tasks(tasks) -> str:
    if tasks is None:
        return ""
    return "; ".join(str(t) for t in tasks) if isinstance(tasks, list | tuple) else str(tasks)


# ----------------------------------------------------------------------------- data rows
class _TableCache:
    """Reads each data parquet once: v3 files hold many consecutive episodes. Keeps only the last file
    (episodes come in index order, so a file's episodes are adjacent), indexes its rows by episode, and
    remembers a read error so every episode in a broken file reports it."""

    def __init__(self, pq, columns: list[str]) -> None:
        self.pq = pq
        self.columns = columns
        self.path: Path | None = None
        self.value: tuple | DatasetError | None = None

    def rows(self, path: Path, episode: int):
        """(table, row indices of ``episode`` in file order) or DatasetError naming file and episode."""
        if path != self.path:
            self.path, self.value = path, self._read(path)
        if isinstance(self.value, DatasetError):
            raise DatasetError(f"{self.value} (episode {episode})")
        table, rows_of = self.value
        if episode not in rows_of:
            raise DatasetError(f"{path}: no rows for episode {episode}")
        return table, rows_of[episode]

    def _read(self, path: Path) -> tuple | DatasetError:
        if not path.exists():
            return DatasetError(f"{path}: data parquet missing")
        try:
            names = self.pq.read_schema(path).names
            missing = [c for c in self.columns if c not in names]
            if missing:
                return DatasetError(f"{path}: missing columns {missing} (have {names})")
            table = self.pq.read_table(path, columns=self.columns)
        except Exception as e:  # pyarrow raises several types for damaged files
            return DatasetError(f"{path}: cannot read parquet ({e})")
        for key in ("episode_index", "frame_index"):
            if table.column(key).null_count:
                return DatasetError(f"{path}: column {key!r} has empty cells")
        ep = np.asarray(table.column("episode_index").to_numpy(zero_copy_only=False), np.int64)
        # Group rows by episode once per file (a linear scan per episode would be quadratic in v3).
        order = np.argsort(ep, kind="stable")
        uniq, starts = np.unique(ep[order], return_index=True)
        ends = [*starts[1:], len(ep)]
        return table, {int(e): order[a:b] for e, a, b in zip(uniq, starts, ends, strict=True)}


def _column(table, key: str, width: int, label: list[str]) -> np.ndarray:
    """One feature column as float64 (N, width); null cells become NaN (then reported as non-finite).
    ``label`` names each row for error messages."""
    import pyarrow as pa

    col = table.column(key).combine_chunks()
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
        flat = col.flatten()
        if col.null_count == 0 and len(flat) == len(col) * width:
            lengths = None if pa.types.is_fixed_size_list(col.type) else np.asarray(col.value_lengths())
            if lengths is None or (lengths == width).all():
                values = flat.cast(pa.float64()).to_numpy(zero_copy_only=False)
                return np.asarray(values, np.float64).reshape(len(col), width)
        # Ragged or with nulls: rare, so a slow exact path that can say which row is wrong.
        out = np.full((len(col), width), np.nan)
        for i, v in enumerate(col.to_pylist()):
            if v is None:
                continue
            if len(v) != width:
                raise DatasetError(f"{label[i]}: {key!r} has {len(v)} values, info.json says {width}")
            out[i] = [math.nan if x is None else x for x in v]
        return out
    if width != 1:
        raise DatasetError(f"{label[0]}: {key!r} is a scalar column, info.json says {width} values")
    try:
        values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise DatasetError(f"{label[0]}: {key!r} is not numeric ({col.type}): {e}") from None
    return np.asarray(values, np.float64).reshape(-1, 1)


def _load_episode(ep: _Episode, tables: _TableCache, mapped: dict[str, str], success_key: str | None, image_key: str,
                  is_video: bool, fps: float, image_size: int | None, budget: int | None, root: Path) -> _Rows:
    """Rows of one episode with their images; episode-level problems raise, row-level ones go to
    ``_Rows.bad`` (the caller raises the first unless skip_bad)."""
    path = ep.data_file
    table, where = tables.rows(path, ep.index)
    success = math.nan
    if success_key:
        # Our success is per episode, LeRobot's next.success per frame (true once reached): an episode
        # succeeded if any of its rows (all of them, even past max_frames) says so.
        s = _column(table.take(where), success_key, 1, [f"{path}: episode {ep.index}"] * len(where))[:, 0]
        known = s[np.isfinite(s)]
        success = float(known.max() > 0) if len(known) else math.nan
    if budget is not None:
        where = where[:budget]
    table = table.take(where)
    frame = np.asarray(table.column("frame_index").to_numpy(zero_copy_only=False), np.int64)
    label = [f"{path}: row {r} (episode {ep.index}, frame {f})" for r, f in zip(where, frame, strict=True)]
    ok = np.ones(len(frame), bool)
    bad: list[str] = []

    groups = {}
    for group, key in mapped.items():
        arr = _column(table, key, len(GROUPS[group]), label)
        finite = np.isfinite(arr).all(axis=1)
        for i in np.flatnonzero(~finite & ok):
            bad.append(f"{label[i]}: {key!r} has non-finite values {arr[i].tolist()}")
        ok &= finite
        if group in ACTION_GROUPS:
            out = np.flatnonzero(finite & actions_out_of_range(np.where(finite[:, None], arr, np.nan)))
            if len(out):
                i = out[0]
                raise DatasetError(f"{label[i]}: {key!r} = {arr[i].tolist()} outside [-1, 1]; this dataset uses "
                                   f"another action convention (pass action_key=None to leave actions unknown)")
        groups[group] = arr.astype(np.float32)

    images: list[np.ndarray | None] = [None] * len(frame)
    if is_video:
        ts = np.asarray(table.column("timestamp").to_numpy(zero_copy_only=False), np.float64)
        for i in np.flatnonzero(~np.isfinite(ts) & ok):
            bad.append(f"{label[i]}: timestamp is not finite")
        ok &= np.isfinite(ts)
        query = ep.from_ts + np.where(ok, ts, 0.0)
        decoded, dist = _decode_video(ep.video_file, query[ok], fps, image_size,
                                      f"episode {ep.index}, frames {frame.min()}..{frame.max()}")
        for j, i in enumerate(np.flatnonzero(ok)):
            if decoded[j] is None:
                near = (f"nearest is {dist[j] * 1e3:.1f} ms away" if math.isfinite(dist[j])
                        else f"none within {1e3 / fps:.0f} ms")
                bad.append(f"{ep.video_file}: episode {ep.index} frame {frame[i]} (t = {query[i]:.4f} s in the "
                           f"video): no frame within half a frame period ({500 / fps:.1f} ms); {near}")
                ok[i] = False
            images[i] = decoded[j]
    else:
        col = table.column(image_key).combine_chunks()
        for i in np.flatnonzero(ok):
            img, err = _decode_cell(col[i].as_py(), root, image_size)
            if err:
                bad.append(f"{label[i]}: {image_key!r}: {err}")
                ok[i] = False
            images[i] = img

    keep = np.flatnonzero(ok)
    return _Rows(frame=frame[keep], images=[images[i] for i in keep],
                 groups={g: a[keep] for g, a in groups.items()}, success=np.full(len(keep), success, np.float32),
                 bad=bad)


def _drop_rows(rows: _Rows, drop: list[int]) -> _Rows:
    if not drop:
        return rows
    keep = np.setdiff1d(np.arange(len(rows.frame)), drop)
    return _Rows(frame=rows.frame[keep], images=[rows.images[k] for k in keep],
                 groups={g: a[keep] for g, a in rows.groups.items()}, success=rows.success[keep], bad=rows.bad)


# ----------------------------------------------------------------------------- images
def _resize(rgb: np.ndarray, size: int | None) -> np.ndarray:
    if size is not None and rgb.shape[:2] != (size, size):
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


def _decode_cell(cell, root: Path, size: int | None) -> tuple[np.ndarray | None, str]:
    """An "image" feature cell (HF datasets Image: {"bytes": PNG/JPEG, "path": ...}) -> RGB uint8."""
    data = None
    if isinstance(cell, dict):
        data = cell.get("bytes")
        if data is None and cell.get("path"):
            # Before upload LeRobot may store only the path; resolve it against the dataset folder.
            p = Path(cell["path"])
            p = p if p.is_absolute() else root / p
            if not p.exists():
                return None, f"image file {p} does not exist"
            data = p.read_bytes()
    elif isinstance(cell, bytes | bytearray):
        data = cell
    if not data:
        return None, "empty image cell"
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        return None, "image bytes do not decode (PNG/JPEG expected)"
    return _resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size), ""


def _decode_video(path: Path | None, query: np.ndarray, fps: float, size: int | None,
                  what: str) -> tuple[list[np.ndarray | None], np.ndarray]:
    """Frames of ``path`` nearest to each query time (s, in the file's timeline).

    Decodes only the span of the queries (seeking to the keyframe before it) and converts a frame to RGB
    only if it is the best match so far for some query, so a long v3 file holding many episodes costs
    about one pass. Returns per query the RGB uint8 (H, W, 3) frame (resized to ``size``) or None when
    no frame lies within half a frame period, and the distance to the nearest frame seen (s, inf if none).
    """
    try:
        import av  # PyAV rather than OpenCV: OpenCV builds rarely decode AV1, LeRobot's default codec
    except ImportError as e:  # an optional dependency: only LeRobot video input needs it
        raise ImportError("reading LeRobot videos needs PyAV (pip install av)") from e

    n = len(query)
    frames: list[np.ndarray | None] = [None] * n
    best = np.full(n, np.inf)
    if n == 0:
        return frames, best
    if path is None or not path.exists():
        raise DatasetError(f"{path}: video missing ({what})")
    tol = 0.5 / fps
    order = np.argsort(query, kind="stable")
    q = query[order]
    # Frames up to a full period away are looked at too, only to report how far the nearest one was.
    lo_t, hi_t = q[0] - 2 * tol, q[-1] + 2 * tol
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetError(f"{path}: no video stream ({what})")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            start = lo_t - tol
            if start > 0 and stream.time_base:
                # Keyframe at or before the span; decoding forward from there is exact.
                container.seek(int(start / stream.time_base), backward=True, any_frame=False, stream=stream)
            for frame in container.decode(stream):
                t = frame.time
                if t is None:
                    continue
                if t > hi_t:
                    break
                a, b = np.searchsorted(q, t - tol * 2, "left"), np.searchsorted(q, t + tol * 2, "right")
                if a == b:
                    continue
                d = np.abs(q[a:b] - t)
                better = d < best[order[a:b]]
                if not better.any():
                    continue
                rgb = None
                for k in np.flatnonzero(better):
                    j = order[a + k]
                    best[j] = d[k]
                    if d[k] <= tol:
                        rgb = _resize(frame.to_ndarray(format="rgb24"), size) if rgb is None else rgb
                        frames[j] = rgb
                    else:
                        frames[j] = None  # a nearer frame than before, but still too far
    except DatasetError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError, RuntimeError) as e:
        raise DatasetError(f"{path}: cannot decode video ({what}): {e}") from None
    return frames, best
