"""The object catalogue: ``pybullet_data/random_urdfs`` with a fixed train / held-out split.

Split (fixed, documented in the README): the 1,000 objects are numbered 000-999; an object is
*held out* when its number ends in 7 (007, 017, ..., 997: 100 objects) and used for training
otherwise (899 objects). Nothing trained in this repository ever sees a held-out object.
Object 168 is left out of both: its mesh has NaN vertices (``BROKEN_OBJECTS``).

Size: at scale 1 most of these meshes are wider than the Panda's 8 cm opening. Each object is
scaled so that its *middle* bounding-box extent (the narrower horizontal side when it rests on its
largest face) is drawn from ``GRASP_WIDTH_RANGE`` (uniform, 3.0-6.0 cm); its largest extent is then
capped at ``MAX_EXTENT`` (10 cm). Physics randomization multiplies this by ``object_scale``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pybullet_data

NUM_OBJECTS = 1000
HELDOUT_DIGIT = 7
GRASP_WIDTH_RANGE = (0.030, 0.060)  # m
MAX_EXTENT = 0.10  # m
URDF_MESH_SCALE = 0.015  # every random_urdfs URDF scales its mesh by this
BROKEN_OBJECTS = frozenset({168})  # NaN vertices; tests/test_objects.py rescans the catalogue


def object_ids(split: str) -> list[int]:
    """Object numbers of a split: "train" (899), "heldout" (100) or "all" (999)."""
    usable = [i for i in range(NUM_OBJECTS) if i not in BROKEN_OBJECTS]
    if split == "all":
        return usable
    if split == "heldout":
        return [i for i in usable if i % 10 == HELDOUT_DIGIT]
    if split == "train":
        return [i for i in usable if i % 10 != HELDOUT_DIGIT]
    raise ValueError(f"objects: unknown split {split!r}; choose 'train', 'heldout' or 'all'")


def urdf_path(object_id: int) -> str:
    return os.path.join(pybullet_data.getDataPath(), "random_urdfs", f"{object_id:03d}",
                        f"{object_id:03d}.urdf")


@functools.lru_cache(maxsize=NUM_OBJECTS)
def extents(object_id: int) -> np.ndarray:
    """Bounding-box extents (dx, dy, dz) in metres of the object at URDF scale 1, mesh frame."""
    obj = Path(urdf_path(object_id)).with_suffix(".obj")
    verts = [line.split()[1:4] for line in obj.read_text().splitlines() if line.startswith("v ")]
    v = np.asarray(verts, dtype=float) * URDF_MESH_SCALE
    return v.max(axis=0) - v.min(axis=0)


def graspable_scale(object_id: int, rng: np.random.Generator) -> float:
    """A globalScaling for loadURDF that gives the documented graspable size distribution."""
    e = np.sort(extents(object_id))
    width = rng.uniform(*GRASP_WIDTH_RANGE)
    return float(min(width / e[1], MAX_EXTENT / e[2]))
