"""The one episode format on disk, shared by simulated rollouts and real recordings.

A dataset is a folder::

    dataset.json    format name and version, camera (intrinsics + pose in the base frame), source,
                    the column table below with units, free-form notes
    episodes.csv    one row per episode: episode, steps, success, source, seed, objects
    steps.csv       one row per step (columns below); ``image`` is a path relative to the folder
    images/         PNG images, RGB as the camera saw them (any size; policies resize)

``steps.csv`` columns (empty cell = unknown; only ``episode, step, image`` are required):

    episode, step                     integers; steps numbered from 0 within an episode
    image                             relative PNG path: the observation *before* the action
    image_alt                         optional second render of the same world state under another
                                      randomization (sim only, for the invariance objective)
    ee_x, ee_y, ee_z, ee_yaw, gripper proprio: end effector in the base frame (m, rad), opening (m)
    a_dx, a_dy, a_dz, a_dyaw, a_grip  executed action in [-1, 1] (see the env's action contract)
    e_dx, e_dy, e_dz, e_dyaw, e_grip  expert label for this state (DAgger relabels; teleop = action)
    obj_x, obj_y, obj_z, obj_yaw      target object position (m) and yaw (rad), base frame
    grasp_x, grasp_y, grasp_z, grasp_yaw
                                      grasp pose aimed at / executed, base frame (m, rad)
    uv_grasp_u, uv_grasp_v, uv_ee_u, uv_ee_v
                                      optional: where the camera that took *this* image saw the
                                      grasp point and the end effector, as fractions of the image
                                      width and height (u right, v down). Simulation records them
                                      with the frame's own (randomized) camera; absent, they are
                                      computed from dataset.json's camera.
    success                           1 if the episode this step belongs to ended in a grasp

Real grasp attempts fit the same table: one row per attempt with ``image`` (before the grasp), the
``grasp_*`` pose and ``success``; a teleoperated demonstration is an episode with proprio and actions.
Images without any label are welcome (unsupervised adaptation).

Episodes are appended one at a time and ``episodes.csv`` is written *after* an episode's steps, so an
interrupted writer leaves at most one incomplete episode, which readers ignore and a resumed writer
overwrites.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from sim2real.runs import atomic_write_json

FORMAT = "sim2real-episodes"
VERSION = 1

PROPRIO = ("ee_x", "ee_y", "ee_z", "ee_yaw", "gripper")
ACTION = ("a_dx", "a_dy", "a_dz", "a_dyaw", "a_grip")
EXPERT = ("e_dx", "e_dy", "e_dz", "e_dyaw", "e_grip")
OBJECT = ("obj_x", "obj_y", "obj_z", "obj_yaw")
GRASP = ("grasp_x", "grasp_y", "grasp_z", "grasp_yaw")
IMAGE_POINTS = ("uv_grasp_u", "uv_grasp_v", "uv_ee_u", "uv_ee_v")
MAX_OBJECT_POINTS = 4  # the most objects a scene holds (EnvConfig.num_objects)
OBJECT_POINTS = tuple(f"uv_obj{k}_{c}" for k in range(1, MAX_OBJECT_POINTS + 1) for c in "uv")
STEP_COLUMNS = ("episode", "step", "image", "image_alt", *PROPRIO, *ACTION, *EXPERT, *OBJECT, *GRASP,
                *IMAGE_POINTS, *OBJECT_POINTS, "success")
EPISODE_COLUMNS = ("episode", "steps", "success", "source", "seed", "objects")

UNITS = {
    "proprio": "ee_x, ee_y, ee_z: m, base frame; ee_yaw: rad; gripper: opening, m (0-0.08)",
    "action": "[-1, 1]: dx, dy, dz x max_translation m; dyaw x max_rotation rad; grip: +1 open, -1 closed",
    "object": "target object position, m, and yaw, rad, base frame",
    "grasp": "grasp point, m, and gripper yaw, rad, base frame",
    "image_points": "grasp point and end effector in this image, fractions of width and height (u right, v down)",
    "object_points": "every object on the tray (the centre of its box at the height the expert grasps it) in this "
                     "image, as image_points; empty = no such object or out of view",
}

ACTION_GROUPS = ("action", "expert_action")  # in [-1, 1] by the env's action contract
# Groups of columns that load as one (N, k) float32 array.
GROUPS = {"proprio": PROPRIO, "action": ACTION, "expert_action": EXPERT, "object": OBJECT, "grasp": GRASP,
          "image_points": IMAGE_POINTS, "object_points": OBJECT_POINTS}


class DatasetError(ValueError):
    """Bad dataset input; the message names the file and row."""


@dataclass
class Episode:
    """One episode in memory. Arrays are per step (T rows); None = not recorded.

    images: uint8 (T, H, W, 3) RGB; images_alt: uint8 (T, H, W, 3) or None (rows may be all zero
    when ``has_alt`` is False); the other arrays are float32 with the column groups above.
    """

    images: np.ndarray
    proprio: np.ndarray | None = None
    action: np.ndarray | None = None
    expert_action: np.ndarray | None = None
    object: np.ndarray | None = None
    grasp: np.ndarray | None = None
    image_points: np.ndarray | None = None
    object_points: np.ndarray | None = None
    images_alt: np.ndarray | None = None
    has_alt: np.ndarray | None = None
    success: bool | None = None
    source: str = "sim"
    seed: int | None = None
    objects: str = ""

    def __len__(self) -> int:
        return len(self.images)


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV file (empty for an empty file)."""
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


def _fmt(x: float | None) -> str:
    return "" if x is None or not math.isfinite(float(x)) else f"{float(x):.6g}"


class EpisodeWriter:
    """Appends episodes to a dataset folder; reopening an existing folder continues it (resume).

    Args:
        root: dataset folder (created if missing).
        meta: written into dataset.json (camera, source, notes); merged with what is there.
    """

    def __init__(self, root: str | Path, meta: dict | None = None) -> None:
        self.root = Path(root)
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        meta_path = self.root / "dataset.json"
        existing = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        self.meta = {**existing, **(meta or {}), "format": FORMAT, "version": VERSION,
                     "columns": list(STEP_COLUMNS), "units": UNITS}
        atomic_write_json(meta_path, self.meta)
        self.episodes = _read_csv(self.root / "episodes.csv") if (self.root / "episodes.csv").exists() else []
        self._rewrite_steps_to_complete()

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    def _rewrite_steps_to_complete(self) -> None:
        """Drop step rows of an episode that never reached episodes.csv (an interrupted append)."""
        if not (self.root / "steps.csv").exists():
            with open(self.root / "steps.csv", "w", newline="") as f:
                csv.writer(f).writerow(STEP_COLUMNS)
            if not (self.root / "episodes.csv").exists():
                with open(self.root / "episodes.csv", "w", newline="") as f:
                    csv.writer(f).writerow(EPISODE_COLUMNS)
            return
        if tuple(csv_header(self.root / "steps.csv")[:len(STEP_COLUMNS)]) != STEP_COLUMNS:
            # A folder written before a column was added: rewrite it under today's header (the
            # new cells empty) so appended rows line up.
            self._rewrite("steps.csv", STEP_COLUMNS, _read_csv(self.root / "steps.csv"))
        self.keep_first(self.num_episodes)

    def _rewrite(self, name: str, columns: tuple[str, ...], rows: list[dict]) -> None:
        """Atomically rewrite a CSV with ``columns`` first; columns of the file's own that are not
        among them are kept after them (nothing already there is lost)."""
        path = self.root / name
        extra = [c for c in csv_header(path) if c not in columns]
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, [*columns, *extra])
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)

    def keep_first(self, episodes: int) -> None:
        """Keep only episodes 0 .. ``episodes`` - 1 (and their step rows); used to redo a partly
        written chunk on resume. Each file is rewritten only if something is dropped."""
        for name, columns in (("episodes.csv", EPISODE_COLUMNS), ("steps.csv", STEP_COLUMNS)):
            path = self.root / name
            rows = _read_csv(path)
            keep = [r for r in rows if int(r["episode"]) < episodes]
            if len(keep) != len(rows):
                self._rewrite(name, columns, keep)
        self.episodes = [r for r in self.episodes if int(r["episode"]) < episodes]

    def append(self, ep: Episode) -> int:
        """Write one episode; returns its index."""
        index = self.num_episodes
        rows = []
        for t in range(len(ep)):
            image = f"images/{index:06d}_{t:03d}.png"
            _write_png(self.root / image, ep.images[t])
            alt = ""
            if ep.images_alt is not None and (ep.has_alt is None or ep.has_alt[t]):
                alt = f"images/{index:06d}_{t:03d}_alt.png"
                _write_png(self.root / alt, ep.images_alt[t])
            row = [index, t, image, alt]
            for name, cols in GROUPS.items():
                arr = getattr(ep, name)
                row += [_fmt(v) for v in arr[t]] if arr is not None else [""] * len(cols)
            row.append("" if ep.success is None else int(bool(ep.success)))
            rows.append(row)
        with open(self.root / "steps.csv", "a", newline="") as f:
            csv.writer(f).writerows(rows)
        record = {"episode": index, "steps": len(ep), "success": "" if ep.success is None else int(ep.success),
                  "source": ep.source, "seed": "" if ep.seed is None else ep.seed, "objects": ep.objects}
        with open(self.root / "episodes.csv", "a", newline="") as f:
            csv.writer(f).writerow([record[c] for c in EPISODE_COLUMNS])
        self.episodes.append({k: str(v) for k, v in record.items()})
        return index


@dataclass
class Dataset:
    """A whole dataset as flat per-step arrays (N steps) plus per-episode records.

    images: uint8 (N, H, W, 3); images_alt: uint8 (N, H, W, 3) with has_alt bool (N,);
    episode, step: int64 (N,); float32 groups (N, k) with NaN where a cell was empty;
    success: float32 (N,), NaN when unknown.
    """

    root: Path
    meta: dict
    images: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    proprio: np.ndarray
    action: np.ndarray
    expert_action: np.ndarray
    object: np.ndarray
    grasp: np.ndarray
    image_points: np.ndarray
    object_points: np.ndarray
    success: np.ndarray
    images_alt: np.ndarray
    has_alt: np.ndarray
    episodes: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def read_dataset(root: str | Path, image_size: int | None = None, load_alt: bool = True,
                 skip_bad: bool = False) -> Dataset:
    """Load a dataset folder into memory, validating as it goes.

    Args:
        image_size: resize every image to this square size (area interpolation); None keeps sizes,
            which must then all agree.
        skip_bad: drop rows whose image is missing or does not decode instead of raising; the
            skipped rows are listed in ``meta["skipped"]``.
    Raises:
        DatasetError naming the file and the row (1-based, header = row 1).
    """
    root = Path(root)
    meta_path = root / "dataset.json"
    if not meta_path.exists():
        raise DatasetError(f"{meta_path}: missing (not a {FORMAT} folder)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{meta_path}: not valid JSON ({e})") from None
    steps_path = root / "steps.csv"
    if not steps_path.exists():
        raise DatasetError(f"{steps_path}: missing")
    episodes = _read_csv(root / "episodes.csv") if (root / "episodes.csv").exists() else []
    complete = {int(r["episode"]) for r in episodes} if episodes else None
    rows = _read_csv(steps_path)
    missing = [c for c in ("episode", "step", "image") if rows and c not in rows[0]]
    if missing:
        raise DatasetError(f"{steps_path}: missing required columns {missing}")
    images, alts, has_alt, keep, skipped = [], [], [], [], []
    shape = None
    for i, r in enumerate(rows):
        line = i + 2
        try:
            ep = int(r["episode"])
            int(r["step"])
        except (TypeError, ValueError):
            raise DatasetError(f"{steps_path}: row {line}: episode/step must be integers, got "
                               f"{r.get('episode')!r}, {r.get('step')!r}") from None
        if complete is not None and ep not in complete:
            continue  # an interrupted append
        try:
            img = _load_image(root, r["image"], f"{steps_path}: row {line}: image", image_size)
            if shape is None:
                shape = img.shape
            elif img.shape != shape:
                raise DatasetError(f"{root / r['image']}: size {img.shape[1]}x{img.shape[0]} differs from "
                                   f"the first image's {shape[1]}x{shape[0]} (row {line}); pass image_size")
            alt = r.get("image_alt") or ""
            if alt and load_alt:
                alts.append(_load_image(root, alt, f"{steps_path}: row {line}: image_alt", image_size))
                has_alt.append(True)
            else:
                alts.append(None)
                has_alt.append(False)
        except DatasetError as e:
            if not skip_bad:
                raise
            skipped.append(str(e))
            continue
        images.append(img)
        keep.append((line, r))
    if not images:
        raise DatasetError(f"{steps_path}: no usable rows")
    n = len(images)
    zeros = np.zeros_like(images[0])
    out = {name: np.full((n, len(cols)), np.nan, np.float32) for name, cols in GROUPS.items()}
    success = np.full(n, np.nan, np.float32)
    for k, (line, r) in enumerate(keep):
        for name, cols in GROUPS.items():
            for j, c in enumerate(cols):
                out[name][k, j] = parse_cell(r.get(c), steps_path, line, c)
        success[k] = parse_cell(r.get("success"), steps_path, line, "success")
        if not (np.isnan(success[k]) or success[k] in (0.0, 1.0)):
            raise DatasetError(f"{steps_path}: row {line}: success must be 0 or 1, got {r.get('success')!r}")
    for name in ACTION_GROUPS:
        bad = actions_out_of_range(out[name])
        if bad.any():
            line = keep[int(np.argmax(bad))][0]
            raise DatasetError(f"{steps_path}: row {line}: {name} outside [-1, 1]")
    meta = dict(meta)
    meta["skipped"] = skipped
    return Dataset(
        root=root, meta=meta, images=np.stack(images),
        episode=np.array([int(r["episode"]) for _, r in keep]), step=np.array([int(r["step"]) for _, r in keep]),
        success=success, images_alt=np.stack([a if a is not None else zeros for a in alts]),
        has_alt=np.array(has_alt), episodes=episodes, **out)


def dataset_from_arrays(root: str | Path, meta: dict, images: np.ndarray, episode: np.ndarray | None = None,
                        step: np.ndarray | None = None, success: np.ndarray | None = None,
                        episodes: list[dict] | None = None, **groups: np.ndarray | None) -> Dataset:
    """Build a validated ``Dataset`` from arrays (what the LeRobot and ROS bag readers produce).

    Args:
        images: uint8 (N, H, W, 3) RGB. episode, step: int (N,); default one episode numbered 0..N-1.
        success: (N,) 0/1 or NaN. groups: any of ``GROUPS`` ("proprio", "action", ...) as (N, k) float;
            missing groups are all NaN (unknown).
    Raises:
        DatasetError naming ``root`` and the first bad row (0-based sample index) for non-finite values
        (NaN means unknown and is allowed), actions outside [-1, 1] or success not in {0, 1}.
    """
    root = Path(root)
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise DatasetError(f"{root}: images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    n = len(images)
    if n == 0:
        raise DatasetError(f"{root}: no usable samples")
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown column groups {sorted(unknown)}; expected some of {sorted(GROUPS)}")
    out = {}
    for name, cols in GROUPS.items():
        arr = groups.get(name)
        if arr is None:
            out[name] = np.full((n, len(cols)), np.nan, np.float32)
            continue
        arr = np.asarray(arr, np.float32)
        if arr.shape != (n, len(cols)):
            raise DatasetError(f"{root}: {name} must have shape ({n}, {len(cols)}) ({', '.join(cols)}), "
                               f"got {arr.shape}")
        bad = np.isinf(arr).any(axis=1)
        if name in ACTION_GROUPS:
            bad |= actions_out_of_range(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise DatasetError(f"{root}: sample {i}: {name} {arr[i].tolist()} is not finite or out of range")
        out[name] = arr
    success = np.full(n, np.nan, np.float32) if success is None else np.asarray(success, np.float32)
    ok = np.isnan(success) | (success == 0) | (success == 1)
    if not ok.all():
        i = int(np.argmin(ok))
        raise DatasetError(f"{root}: sample {i}: success must be 0 or 1, got {success[i]}")
    episode = np.zeros(n, np.int64) if episode is None else np.asarray(episode, np.int64)
    step = np.arange(n, dtype=np.int64) if step is None else np.asarray(step, np.int64)
    return Dataset(root=root, meta={"skipped": [], **meta}, images=images, episode=episode, step=step,
                   success=success, images_alt=np.zeros_like(images[:1]).repeat(n, 0),
                   has_alt=np.zeros(n, bool), episodes=episodes or [], **out)


# ----------------------------------------------------------------------------- helpers
def actions_out_of_range(actions: np.ndarray) -> np.ndarray:
    """Rows (N,) of an action group (N, 5) with a known value outside [-1, 1] (NaN = unknown is fine)."""
    return np.nanmax(np.abs(actions), axis=1, initial=0) > 1.0 + 1e-6


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def parse_cell(value: str | None, path: Path, line: int, column: str) -> float:
    """A CSV cell as a float: empty = NaN (unknown); non-numeric or non-finite raises DatasetError
    naming the file, row and column."""
    if value is None or value == "":
        return math.nan
    try:
        x = float(value)
    except ValueError:
        raise DatasetError(f"{path}: row {line}: column {column!r} is not a number: {value!r}") from None
    if not math.isfinite(x):
        raise DatasetError(f"{path}: row {line}: column {column!r} is not finite: {value!r}")
    return x


def _load_image(root: Path, rel: str, where: str, size: int | None) -> np.ndarray:
    path = root / rel
    if not rel or not path.exists():
        raise DatasetError(f"{where}: file {path} does not exist")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"{where}: file {path} does not decode as an image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if size is not None and rgb.shape[:2] != (size, size):
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return rgb


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    path.write_bytes(buf.tobytes())
