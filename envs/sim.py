"""The one PyBullet wrapper: it owns the physics client and every raw body id.

Everything else in the code base names bodies ("robot", "tray", "object_3") and calls the methods
here, so body ids never leak out and a world can be rebuilt without stale handles.

Frames: the world frame *is* the robot base frame (the robot base sits at the origin, z up).
Units: metres, radians, kilograms, seconds, newtons.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pybullet
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

RENDERERS = ("tiny", "egl")


@dataclass(frozen=True)
class Light:
    """Lighting of one rendered frame (PyBullet's directional light model).

    direction: unit vector (x, y, z) from the scene towards the light, base frame.
    color: RGB in [0, 1]. The three coefficients weight ambient, diffuse and specular terms.
    """

    direction: tuple[float, float, float] = (0.3, 0.4, 1.0)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient: float = 0.6
    diffuse: float = 0.35
    specular: float = 0.05


# Worlds built on one EGL client before a fresh one frees what the plugin keeps (reset_world).
EGL_WORLDS_PER_CLIENT = 8


class Sim:
    """A PyBullet world in DIRECT mode (no GUI) with named bodies.

    Args:
        timestep: physics step in seconds.
        renderer: "tiny" (CPU TinyRenderer, always available) or "egl" (the EGL renderer plugin;
            falls back to "tiny" with a warning when the plugin cannot load).
    """

    def __init__(self, timestep: float = 1.0 / 240.0, renderer: str = "tiny") -> None:
        if renderer not in RENDERERS:
            raise ValueError(f"renderer: unknown renderer {renderer!r}; choose from {RENDERERS}")
        self.timestep = timestep
        self._p = self._connect()
        self._bodies: dict[str, int] = {}
        self._textures: dict[str, int] = {}
        # getJointInfo keeps reporting the URDF's damping after changeDynamics; remember ours.
        self._joint_damping: dict[tuple[str, int], float] = {}
        self.renderer = renderer
        self._egl_plugin: int | None = None
        self._egl_worlds = 0  # worlds built on the current EGL client
        if renderer == "egl":
            self.renderer = "egl" if self._load_egl() else "tiny"
        self.reset_world()

    # ----------------------------------------------------------------------------------- world
    @staticmethod
    def _connect() -> BulletClient:
        client = BulletClient(connection_mode=pybullet.DIRECT)
        client.setAdditionalSearchPath(pybullet_data.getDataPath())
        return client

    def reset_world(self) -> None:
        """Remove every body and texture. PyBullet frees their memory only on a full reset, and
        with the EGL renderer not even then: its meshes and textures stay (bullet3 issue 4149),
        about 60 MB per world here, so a proxy-real evaluation of a few hundred episodes in one
        process ran out of 24 GB. That renderer gets a fresh physics client every
        ``EGL_WORLDS_PER_CLIENT`` worlds instead (a new client and plugin cost about 0.2 s)."""
        if self._egl_plugin is not None:
            self._egl_worlds += 1
            if self._egl_worlds > EGL_WORLDS_PER_CLIENT:
                with _quiet_stdout():  # the plugin and pybullet print banners on every (dis)connect
                    self._p.disconnect()
                    self._p = self._connect()
                self._egl_plugin = None
                if not self._load_egl():
                    self.renderer = "tiny"
                self._egl_worlds = 1
        self._p.resetSimulation()
        self._bodies.clear()
        self._textures.clear()
        self._joint_damping.clear()
        self._p.setTimeStep(self.timestep)
        self._p.setGravity(0.0, 0.0, -9.81)
        # Deterministic contact solving: a seed must replay the same world.
        self._p.setPhysicsEngineParameter(deterministicOverlappingPairs=1, numSolverIterations=20)

    def _load_egl(self) -> bool:
        spec = importlib.util.find_spec("eglRenderer")
        plugin = -1
        if spec is not None and spec.origin is not None:
            with _quiet_stdout():
                plugin = self._p.loadPlugin(spec.origin, "_eglRendererPlugin")
        if plugin < 0:
            warnings.warn(
                "renderer='egl': the EGL renderer plugin could not be loaded; "
                "falling back to the CPU TinyRenderer", RuntimeWarning, stacklevel=3)
            return False
        self._egl_plugin = plugin
        return True

    def close(self) -> None:
        if self._p is not None:
            try:
                with _quiet_stdout():
                    self._p.disconnect()
            except pybullet.error:
                pass
            self._p = None  # type: ignore[assignment]

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self._p.stepSimulation()

    def save_state(self) -> int:
        return self._p.saveState()

    def restore_state(self, state: int) -> None:
        self._p.restoreState(stateId=state)

    def remove_state(self, state: int) -> None:
        self._p.removeState(state)

    # ---------------------------------------------------------------------------------- bodies
    def has_body(self, name: str) -> bool:
        return name in self._bodies

    def _add(self, name: str, body: int) -> None:
        if name in self._bodies:
            raise KeyError(f"body {name!r} already exists")
        self._bodies[name] = body

    def load_urdf(self, name: str, path: str, position: Sequence[float] = (0, 0, 0),
                  orientation: Sequence[float] = (0, 0, 0, 1), scale: float = 1.0,
                  fixed: bool = False, flags: int = 0) -> None:
        body = self._p.loadURDF(path, list(position), list(orientation), useFixedBase=fixed,
                                globalScaling=scale, flags=flags)
        self._add(name, body)

    def create_boxes(self, name: str, boxes: Sequence[tuple[Sequence[float], Sequence[float]]],
                     position: Sequence[float], mass: float = 0.0,
                     rgba: Sequence[float] = (1, 1, 1, 1), collide: bool = True,
                     collision_boxes: Sequence[tuple[Sequence[float], Sequence[float]]] | None = None) -> None:
        """One body made of boxes, each given as (half_extents, offset from the body origin).
        ``collision_boxes`` (same form) collide instead of the visible ``boxes`` when given."""

        def arrays(bs):  # PyBullet's shape-array arguments: types, half extents, frame offsets
            return [pybullet.GEOM_BOX] * len(bs), [list(b[0]) for b in bs], [list(b[1]) for b in bs]

        shapes, half, offsets = arrays(boxes)
        vis = self._p.createVisualShapeArray(shapeTypes=shapes, halfExtents=half, visualFramePositions=offsets)
        col = -1
        if collide:
            shapes, half, offsets = arrays(boxes if collision_boxes is None else collision_boxes)
            col = self._p.createCollisionShapeArray(shapeTypes=shapes, halfExtents=half,
                                                    collisionFramePositions=offsets)
        body = self._p.createMultiBody(mass, col, vis, list(position))
        self._p.changeVisualShape(body, -1, rgbaColor=list(rgba))
        self._add(name, body)

    def create_primitive(self, name: str, kind: str, size: Sequence[float],
                         position: Sequence[float], mass: float = 0.0,
                         rgba: Sequence[float] = (1, 1, 1, 1)) -> None:
        """A box (size = half extents), sphere (size = [radius]) or cylinder ([radius, length])."""
        if kind == "box":
            args = {"halfExtents": list(size)}
            geom = pybullet.GEOM_BOX
        elif kind == "sphere":
            args = {"radius": size[0]}
            geom = pybullet.GEOM_SPHERE
        elif kind == "cylinder":
            geom = pybullet.GEOM_CYLINDER
            args = {"radius": size[0]}
            vis = self._p.createVisualShape(geom, radius=size[0], length=size[1])
            col = self._p.createCollisionShape(geom, radius=size[0], height=size[1])
            body = self._p.createMultiBody(mass, col, vis, list(position))
            self._p.changeVisualShape(body, -1, rgbaColor=list(rgba))
            self._add(name, body)
            return
        else:
            raise ValueError(f"unknown primitive kind {kind!r}")
        vis = self._p.createVisualShape(geom, **args)
        col = self._p.createCollisionShape(geom, **args)
        body = self._p.createMultiBody(mass, col, vis, list(position))
        self._p.changeVisualShape(body, -1, rgbaColor=list(rgba))
        self._add(name, body)

    def num_joints(self, name: str) -> int:
        return self._p.getNumJoints(self._bodies[name])

    def joint_names(self, name: str) -> list[str]:
        body = self._bodies[name]
        return [self._p.getJointInfo(body, j)[1].decode() for j in range(self.num_joints(name))]

    def link_names(self, name: str) -> list[str]:
        body = self._bodies[name]
        return [self._p.getJointInfo(body, j)[12].decode() for j in range(self.num_joints(name))]

    def joint_limits(self, name: str, joints: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        body = self._bodies[name]
        info = [self._p.getJointInfo(body, j) for j in joints]
        return np.array([i[8] for i in info]), np.array([i[9] for i in info])

    # ---------------------------------------------------------------------------------- poses
    def pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Base position (x, y, z) in metres and orientation quaternion (x, y, z, w)."""
        pos, orn = self._p.getBasePositionAndOrientation(self._bodies[name])
        return np.asarray(pos), np.asarray(orn)

    def set_pose(self, name: str, position: Sequence[float],
                 orientation: Sequence[float] = (0, 0, 0, 1)) -> None:
        body = self._bodies[name]
        self._p.resetBasePositionAndOrientation(body, list(position), list(orientation))
        self._p.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0])

    def velocity(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        lin, ang = self._p.getBaseVelocity(self._bodies[name])
        return np.asarray(lin), np.asarray(ang)

    def aabb(self, name: str, link: int = -1) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._p.getAABB(self._bodies[name], link)
        return np.asarray(lo), np.asarray(hi)

    def link_pose(self, name: str, link: int) -> tuple[np.ndarray, np.ndarray]:
        state = self._p.getLinkState(self._bodies[name], link, computeForwardKinematics=True)
        return np.asarray(state[4]), np.asarray(state[5])

    def joint_positions(self, name: str, joints: Sequence[int]) -> np.ndarray:
        states = self._p.getJointStates(self._bodies[name], list(joints))
        return np.array([s[0] for s in states])

    def reset_joints(self, name: str, joints: Sequence[int], positions: Sequence[float]) -> None:
        body = self._bodies[name]
        for j, q in zip(joints, positions, strict=True):
            self._p.resetJointState(body, j, q, 0.0)

    def drive_joints(self, name: str, joints: Sequence[int], targets: Sequence[float],
                     forces: Sequence[float]) -> None:
        """Position-control the joints towards targets (rad or m) with at most forces (N or Nm)."""
        self._p.setJointMotorControlArray(self._bodies[name], list(joints), pybullet.POSITION_CONTROL,
                                          targetPositions=list(targets), forces=list(forces))

    def inverse_kinematics(self, name: str, link: int, position: Sequence[float],
                           orientation: Sequence[float], lower: Sequence[float],
                           upper: Sequence[float], rest: Sequence[float]) -> np.ndarray:
        ranges = [u - lo for lo, u in zip(lower, upper, strict=True)]
        q = self._p.calculateInverseKinematics(
            self._bodies[name], link, list(position), list(orientation), lowerLimits=list(lower),
            upperLimits=list(upper), jointRanges=ranges, restPoses=list(rest),
            maxNumIterations=20, residualThreshold=1e-4)
        return np.asarray(q)

    def in_contact(self, a: str, b: str, link_a: int | None = None) -> bool:
        if link_a is None:
            return bool(self._p.getContactPoints(self._bodies[a], self._bodies[b]))
        return bool(self._p.getContactPoints(self._bodies[a], self._bodies[b], linkIndexA=link_a))

    # -------------------------------------------------------------------------------- dynamics
    def set_dynamics(self, name: str, link: int = -1, **kwargs: float) -> None:
        """Forward to changeDynamics: mass, lateralFriction, spinningFriction, rollingFriction,
        restitution, jointDamping, linearDamping, angularDamping."""
        self._p.changeDynamics(self._bodies[name], link, **kwargs)
        if "jointDamping" in kwargs:
            self._joint_damping[(name, link)] = float(kwargs["jointDamping"])

    def dynamics(self, name: str, link: int = -1) -> dict[str, float]:
        info = self._p.getDynamicsInfo(self._bodies[name], link)
        return {"mass": info[0], "lateralFriction": info[1], "restitution": info[5],
                "rollingFriction": info[6], "spinningFriction": info[7]}

    def joint_damping(self, name: str, joint: int) -> float:
        if (name, joint) in self._joint_damping:
            return self._joint_damping[(name, joint)]
        return float(self._p.getJointInfo(self._bodies[name], joint)[6])

    # ------------------------------------------------------------------------------- appearance
    def _egl_quiet(self) -> contextlib.AbstractContextManager:
        """``_quiet_stdout`` while the EGL plugin is loaded (it prints on texture loads and a fresh
        client's first images); nothing otherwise, so TinyRenderer's hot path stays untouched."""
        return _quiet_stdout() if self._egl_plugin is not None else contextlib.nullcontext()

    def load_texture(self, key: str, path: str) -> None:
        """Load an image file as a texture once; later calls with the same key are free."""
        if key not in self._textures:
            with self._egl_quiet():
                self._textures[key] = self._p.loadTexture(path)

    def set_color(self, name: str, rgba: Sequence[float], link: int = -1,
                  texture: str | None = None) -> None:
        kwargs: dict = {"rgbaColor": list(rgba)}
        if texture is not None:
            kwargs["textureUniqueId"] = self._textures[texture]
        self._p.changeVisualShape(self._bodies[name], link, **kwargs)

    def visual_colors(self, name: str) -> dict[int, np.ndarray]:
        """RGBA of every visual shape of a body, keyed by link index (-1 is the base)."""
        return {v[1]: np.asarray(v[7]) for v in self._p.getVisualShapeData(self._bodies[name])}

    def render(self, width: int, height: int, view: Sequence[float], projection: Sequence[float],
               light: Light, shadow: bool = False) -> np.ndarray:
        """An RGB image (height, width, 3) uint8 from the given OpenGL view/projection matrices."""
        renderer = (pybullet.ER_BULLET_HARDWARE_OPENGL if self.renderer == "egl"
                    else pybullet.ER_TINY_RENDERER)
        # The EGL plugin reports its GL vendor on a fresh client's first images (and reset_world
        # makes fresh clients): silenced, for a few dup2 calls per image.
        with self._egl_quiet():
            _, _, rgba, _, _ = self._p.getCameraImage(
                width, height, viewMatrix=list(view), projectionMatrix=list(projection),
                lightDirection=list(light.direction), lightColor=list(light.color),
                lightAmbientCoeff=light.ambient, lightDiffuseCoeff=light.diffuse,
                lightSpecularCoeff=light.specular, shadow=int(shadow), renderer=renderer,
                flags=pybullet.ER_NO_SEGMENTATION_MASK)
        return np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3].copy()


@functools.cache
def _libc():
    """The C library (its fflush), looked up once: _quiet_stdout runs around every EGL image."""
    import ctypes

    return ctypes.CDLL(None)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence what C code writes to file descriptors 1 and 2 (the EGL plugin's GL banner, a dozen
    lines on every load), flushing C's buffers before the descriptors come back. Python's streams
    are flushed first and keep working; without those descriptors nothing is silenced."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
            _libc().fflush(None)
    finally:
        for fd, copy in ((1, saved[0]), (2, saved[1])):
            os.dup2(copy, fd)
            os.close(copy)
