"""The static world around the robot: floor, table, tray, distractors and a pool of objects.

Layout (base frame, metres): the table top is the plane z = 0 and the robot base stands on it at
the origin; the tray's inner floor is a 0.36 x 0.36 square centred at ``TRAY_CENTER`` with its top
surface at ``TRAY_FLOOR_Z``; the floor of the room is 0.75 m below the table top.

PyBullet leaks memory whenever a body is created and removed, so no body is created per episode:
a world holds a pool of objects (parked out of sight, static and invisible) and each episode
places a few of them in the tray. A new pool is loaded only when the whole world is rebuilt.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

from envs import objects
from envs.sim import Sim

TRAY_CENTER = np.array([0.55, 0.0])
TRAY_INNER = 0.36
TRAY_WALL = 0.06
TRAY_FLOOR_Z = 0.01
TRAY_FLOOR_SLAB = 0.10  # m: thickness of the tray floor's collision box (its top is the floor's surface)
SPAWN_HALF = 0.09  # objects are dropped within +-9 cm of the tray centre
FLOOR_Z = -0.75
# Rectangles (xmin, ymin, xmax, ymax) in the base frame, metres.
TRAY_RECT = (TRAY_CENTER[0] - TRAY_INNER / 2 - 0.01, -TRAY_INNER / 2 - 0.01,
             TRAY_CENTER[0] + TRAY_INNER / 2 + 0.01, TRAY_INNER / 2 + 0.01)
TABLE_RECT = (-0.25, -0.45, 1.0, 0.45)
FLOOR_RECT = (-1.5, -2.0, 1.3, 2.0)
DISTRACTOR_KINDS = ("box", "cylinder", "sphere")
NOMINAL_COLORS = {"tray": (0.55, 0.45, 0.35, 1), "table": (0.72, 0.6, 0.45, 1),
                  "floor": (0.3, 0.3, 0.32, 1)}


def catalogue_color(object_id: int) -> tuple[float, float, float, float]:
    """A fixed colour per object (golden-ratio hues), used when colours are not randomized."""
    r, g, b = colorsys.hsv_to_rgb((object_id * 0.618034) % 1.0, 0.65, 0.85)
    return (r, g, b, 1.0)


def _frame(outer, inner, z: float, half_height: float) -> list[tuple[tuple, tuple]]:
    """Four boxes covering the rectangle ``outer`` minus the rectangle ``inner`` at height z."""
    (ox0, oy0, ox1, oy1), (ix0, iy0, ix1, iy1) = outer, inner
    rects = [(ox0, oy0, ix0, oy1), (ix1, oy0, ox1, oy1), (ix0, oy0, ix1, iy0), (ix0, iy1, ix1, oy1)]
    return [(((x1 - x0) / 2, (y1 - y0) / 2, half_height), ((x0 + x1) / 2, (y0 + y1) / 2, z))
            for x0, y0, x1, y1 in rects]


class Scene:
    """Builds and manages the bodies of one world. ``objects`` maps body name -> object info."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.pool: dict[str, dict] = {}
        self.active: list[str] = []
        self.distractors: list[str] = []

    def build(self, object_ids: list[int], rng: np.random.Generator, scale_dim) -> None:
        """Create floor, table, tray, distractors and a pool of objects (ids) at random scales."""
        sim = self.sim
        # Table and floor are frames around the tray and the table, not slabs beneath them: the
        # CPU rasteriser pays for every covered pixel of every surface, so nothing is overdrawn.
        sim.create_boxes("table", _frame(TABLE_RECT, TRAY_RECT, -0.02, 0.02), (0, 0, 0),
                         rgba=NOMINAL_COLORS["table"])
        sim.create_boxes("floor", _frame(FLOOR_RECT, TABLE_RECT, FLOOR_Z - 0.01, 0.01), (0, 0, 0),
                         rgba=NOMINAL_COLORS["floor"], collide=False)
        h, w, t = TRAY_INNER / 2, TRAY_WALL / 2, 0.01
        walls = [((t / 2, h + t, w), (h + t / 2, 0, TRAY_FLOOR_Z + w)),
                 ((t / 2, h + t, w), (-h - t / 2, 0, TRAY_FLOOR_Z + w)),
                 ((h + t, t / 2, w), (0, h + t / 2, TRAY_FLOOR_Z + w)),
                 ((h + t, t / 2, w), (0, -h - t / 2, TRAY_FLOOR_Z + w))]
        floor = (h + t, h + t, TRAY_FLOOR_Z / 2), (0, 0, TRAY_FLOOR_Z / 2)
        # The floor collides as a deep slab under its visible 1 cm plate (same top surface; the
        # camera still sees the plate): a hand pressing an object onto a thin plate drove it past
        # the plate's mid-plane, where the contact pushes it out underneath, and it fell for ever
        # (10 % of the default student's episodes, 1.5 % of the expert's; README, "The tray floor
        # let pressed objects through").
        slab = (h + t, h + t, TRAY_FLOOR_SLAB / 2), (0, 0, TRAY_FLOOR_Z - TRAY_FLOOR_SLAB / 2)
        sim.create_boxes("tray", [floor, *walls], (TRAY_CENTER[0], TRAY_CENTER[1], 0.0),
                         rgba=NOMINAL_COLORS["tray"], collision_boxes=[slab, *walls])
        sim.set_dynamics("tray", lateralFriction=0.8)
        sim.set_dynamics("table", lateralFriction=0.8)
        self.distractors = []
        for i, kind in enumerate(DISTRACTOR_KINDS):
            name = f"distractor_{i}"
            size = {"box": (0.03, 0.025, 0.02), "cylinder": (0.025, 0.06), "sphere": (0.03,)}[kind]
            sim.create_primitive(name, kind, size, self._parking(100 + i))
            self.distractors.append(name)
        self.pool = {}
        for k, object_id in enumerate(object_ids):
            name = f"object_{k}"
            scale = objects.graspable_scale(object_id, rng) * scale_dim.sample(rng)
            sim.load_urdf(name, objects.urdf_path(object_id), self._parking(k), scale=scale)
            self.pool[name] = {"id": object_id, "scale": scale,
                               "extents": objects.extents(object_id) * scale,
                               "mass": sim.dynamics(name)["mass"]}
        self.active = []
        for name in self.pool:
            self.park(name)

    @staticmethod
    def _parking(k: int) -> tuple[float, float, float]:
        return (20.0 + 0.5 * k, 20.0, -5.0)

    def park(self, name: str) -> None:
        """Move a body out of the world: static (mass 0), invisible, far away."""
        index = int(name.rsplit("_", 1)[1]) + (100 if name.startswith("distractor") else 0)
        self.sim.set_pose(name, self._parking(index))
        self.sim.set_dynamics(name, mass=0.0)
        self.sim.set_color(name, (1, 1, 1, 0))

    def place_objects(self, names: list[str], masses: list[float], rng: np.random.Generator) -> None:
        """Drop objects into the tray at random poses and let them settle (0.5 s)."""
        for name in self.active:
            if name not in names:
                self.park(name)
        self.active = list(names)
        for k, (name, mass) in enumerate(zip(names, masses, strict=True)):
            xy = TRAY_CENTER + rng.uniform(-SPAWN_HALF, SPAWN_HALF, 2)
            quat = rng.normal(size=4)
            quat /= np.linalg.norm(quat)
            z = TRAY_FLOOR_Z + 0.06 + 0.07 * k
            self.sim.set_pose(name, (xy[0], xy[1], z), quat)
            self.sim.set_dynamics(name, mass=mass)
        self.sim.step(int(0.5 / self.sim.timestep))

    def place_distractors(self, count: int, rng: np.random.Generator) -> None:
        """Put ``count`` distractors on the table beside the tray, park the rest."""
        for i, name in enumerate(self.distractors):
            if i < count:
                side = 1 if rng.random() < 0.5 else -1
                x = rng.uniform(0.3, 0.85)
                y = side * rng.uniform(TRAY_INNER / 2 + 0.06, 0.38)
                angle = rng.uniform(0, math.pi)
                self.sim.set_pose(name, (x, y, 0.03), (0, 0, math.sin(angle / 2), math.cos(angle / 2)))
            else:
                self.park(name)

    def active_distractors(self) -> list[str]:
        return [n for n in self.distractors if self.sim.pose(n)[0][0] < 10]
