"""Domain randomization: turns a ``RandomizationConfig`` and a generator into one episode's world.

``Randomizer.sample`` draws every parameter of an episode (``EpisodeParams``) from the env's seeded
generator; ``apply`` writes them into the simulator. Keeping the two apart means the drawn values
can be logged, compared and read back in tests.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np

from envs.camera import Camera
from envs.config import RandomizationConfig
from envs.corruptions import Compose, sample_pipeline
from envs.scene import NOMINAL_COLORS, Scene, catalogue_color
from envs.sim import Light
from envs.textures import texture_files, write_once

SURFACES = ("tray", "table", "floor")


@dataclass
class EpisodeParams:
    """Every randomized quantity of one episode (units as in ``envs.config``)."""

    colors: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    textures: dict[str, str] = field(default_factory=dict)  # surface -> texture key ("white": none)
    light: Light = field(default_factory=Light)
    camera: Camera | None = None
    distractors: int = 0
    object_dynamics: dict[str, dict[str, float]] = field(default_factory=dict)
    gripper_force: float = 50.0
    joint_damping: float = 0.0
    action_noise: float = 0.0
    latency: int = 0
    gain: float = 1.0
    sensor: Compose = field(default_factory=Compose)


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (r, g, b, 1.0)


class Randomizer:
    """target_textures: PNG paths of textures cut from the target camera's images
    (``EnvConfig.target_textures``); textured surfaces wear one with the chance
    ``visual.target_texture_fraction``. None given, no random number is drawn for them, so the
    training worlds of a seed stay what they were."""

    def __init__(self, config: RandomizationConfig, base_camera: Camera,
                 target_textures: list[str] | tuple[str, ...] = ()) -> None:
        self.config = config
        self.base_camera = base_camera
        self.target_textures = tuple(target_textures)

    def load_textures(self, scene: Scene) -> None:
        files = texture_files()
        for kind in ("procedural", "photo"):
            for i, path in enumerate(files[kind]):
                scene.sim.load_texture(f"{kind}_{i}", path)
        scene.sim.load_texture("white", _white_texture())
        for i, path in enumerate(self.target_textures):
            scene.sim.load_texture(f"target_{i}", path)

    def sample(self, scene: Scene, objects: list[str], rng: np.random.Generator) -> EpisodeParams:
        v, ph, c = self.config.visual, self.config.physics, self.config.control
        p = EpisodeParams()
        # -- appearance
        for name in objects:
            if v.object_color.enabled:
                p.colors[name] = _hsv(v.object_color.sample(rng), rng.uniform(0.3, 1.0),
                                      rng.uniform(0.35, 1.0))
            else:
                p.colors[name] = catalogue_color(scene.pool[name]["id"])
        files = texture_files()
        for surface in SURFACES:
            dim = getattr(v, f"{surface}_color")
            p.colors[surface] = (_hsv(dim.sample(rng), rng.uniform(0.0, 0.7), rng.uniform(0.25, 0.95))
                                 if dim.enabled else NOMINAL_COLORS[surface])
            texture = "white"
            if rng.random() < v.texture_probability.sample(rng):
                if self.target_textures and rng.random() < v.target_texture_fraction.sample(rng):
                    texture = f"target_{int(rng.integers(len(self.target_textures)))}"
                else:
                    kind = "photo" if rng.random() < v.photo_texture_fraction.sample(rng) else "procedural"
                    texture = f"{kind}_{int(rng.integers(len(files[kind])))}"
                # A texture shows its own colours; a light tint keeps some colour variation.
                p.colors[surface] = tuple(0.6 + 0.4 * np.asarray(p.colors[surface][:3])) + (1.0,)
            p.textures[surface] = texture
        for name in scene.distractors:
            p.colors[name] = _hsv(rng.uniform(0, 1), rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0))
        azimuth, elevation = v.light_azimuth.sample(rng), v.light_elevation.sample(rng)
        jitter = v.light_color_jitter.sample(rng)
        p.light = Light(
            direction=(math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                       math.sin(elevation)),
            color=tuple(float(1.0 - rng.uniform(0, jitter)) for _ in range(3)),
            ambient=v.ambient.sample(rng), diffuse=v.diffuse.sample(rng),
            specular=v.specular.sample(rng))
        tj, rj, fj = (v.camera_position_jitter.sample(rng), v.camera_rotation_jitter.sample(rng),
                      v.camera_fov_jitter.sample(rng))
        p.camera = self.base_camera.perturbed(rng.uniform(-tj, tj, 3), rng.uniform(-rj, rj, 3),
                                              1.0 + rng.uniform(-fj, fj))
        p.distractors = int(round(v.distractors.sample(rng)))
        # -- physics
        for name in objects:
            p.object_dynamics[name] = {
                "mass": ph.object_mass.sample(rng), "lateralFriction": ph.lateral_friction.sample(rng),
                "spinningFriction": ph.spinning_friction.sample(rng),
                "rollingFriction": ph.rolling_friction.sample(rng),
                "restitution": ph.restitution.sample(rng)}
        p.gripper_force = ph.gripper_force.sample(rng)
        p.joint_damping = ph.joint_damping.sample(rng)
        # -- control
        p.action_noise = c.action_noise.sample(rng)
        p.latency = int(round(c.latency.sample(rng)))
        p.gain = c.gain.sample(rng)
        # -- sensor
        p.sensor = sample_pipeline(self.config.sensor, rng)
        return p

    def apply_dynamics(self, scene: Scene, params: EpisodeParams) -> None:
        """Object dynamics (before the objects settle; mass is set when they are placed)."""
        for name, dyn in params.object_dynamics.items():
            scene.sim.set_dynamics(name, **{k: v for k, v in dyn.items() if k != "mass"})

    def apply_appearance(self, scene: Scene, params: EpisodeParams) -> None:
        for name, rgba in params.colors.items():
            if name in params.textures:
                scene.sim.set_color(name, rgba, texture=params.textures[name])
            elif not name.startswith("distractor"):
                scene.sim.set_color(name, rgba)
        for name in scene.distractors:
            if name in scene.active_distractors():
                scene.sim.set_color(name, params.colors[name])


def _white_texture() -> str:
    import os
    import tempfile
    from pathlib import Path

    path = Path(os.environ.get("SIM2REAL_CACHE", tempfile.gettempdir())) / "sim2real_white.png"
    return write_once(path, lambda: np.full((4, 4, 3), 255, np.uint8))
