"""Validated configuration dataclasses for the grasping environments.

Every randomization dimension is a ``Dim``: on/off plus a range. A disabled dimension takes its
``nominal`` value. Configs round-trip through plain dicts (``to_dict`` / ``from_dict``) so a run
directory can save and reload them, and every error names the field and the bad value.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

PRESETS = ("none", "light", "full")
DOMAINS = ("sim", "proxy_real")  # see EnvConfig.domain
# What makes the proxy-real domain differ from the simulator (``envs.proxy_real``), each of which
# ``EnvConfig.proxy_without`` can leave out to measure its share of the transfer gap.
PROXY_PARTS = ("renderer", "textures", "light", "camera", "sensor")


def check_int(path: str, value: Any, minimum: int = 1) -> int:
    """``value`` if it is an integer (not a bool) >= ``minimum``, else ValueError naming ``path``:
    the one integer check every config in the package uses, so their messages agree."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{path}: must be {kind}, got {value!r}")
    return value


def check_number(path: str, value: Any, positive: bool = False, non_negative: bool = False) -> float:
    """``value`` as a float if it is a finite number (not a bool), and > 0 when ``positive``, >= 0
    when ``non_negative``; else ValueError naming ``path``: the one number check of the package's
    configs (with ``check_int``), so that a bool, NaN or infinity is refused everywhere with the
    same message."""
    kind = "positive" if positive else "non-negative" if non_negative else "finite"
    if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            or (positive and value <= 0) or (non_negative and value < 0)):
        raise ValueError(f"{path}: must be a {kind} number, got {value!r}")
    return float(value)


def check_probability(path: str, value: Any) -> float:
    """``value`` as a float if it is a number in [0, 1] (not a bool, not NaN); else ValueError naming
    ``path``: the one check of the configs' chances and fractions."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{path}: must be in [0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Dim:
    """One randomization dimension: sampled uniformly from [low, high] when enabled.

    ``minimum`` / ``maximum`` bound what is physically meaningful (e.g. friction >= 0); they are
    set by the config that owns the dimension, not by users.
    """

    low: float
    high: float
    nominal: float
    enabled: bool = True
    minimum: float = -math.inf
    maximum: float = math.inf

    def validate(self, path: str) -> None:
        low = check_number(f"{path}.low", self.low)
        high = check_number(f"{path}.high", self.high)
        check_number(f"{path}.nominal", self.nominal)
        if not isinstance(self.enabled, bool):
            raise ValueError(f"{path}.enabled: must be true or false, got {self.enabled!r}")
        if low > high:
            raise ValueError(f"{path}: low={low} is greater than high={high}")
        if low < self.minimum:
            raise ValueError(f"{path}.low: {low} is below the allowed minimum {self.minimum}")
        if high > self.maximum:
            raise ValueError(f"{path}.high: {high} is above the allowed maximum {self.maximum}")
        if not self.minimum <= self.nominal <= self.maximum:
            raise ValueError(f"{path}.nominal: {self.nominal} is outside the allowed range "
                             f"[{self.minimum}, {self.maximum}]")

    def sample(self, rng) -> float:
        if not self.enabled:
            return self.nominal
        return float(rng.uniform(self.low, self.high))

    def off(self) -> Dim:
        return dataclasses.replace(self, enabled=False)


def _dim(low: float, high: float, nominal: float, minimum: float = -math.inf,
         maximum: float = math.inf) -> Any:
    return field(default_factory=lambda: Dim(low, high, nominal, True, minimum, maximum))


class _Group:
    """Shared behaviour of a group of ``Dim`` fields (validation, dict round-trip, all-off)."""

    def validate(self, path: str) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Dim):
                value.validate(f"{path}.{f.name}")

    def all_off(self):
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).off()
                                            for f in dataclasses.fields(self)})

    def to_dict(self) -> dict:
        return {f.name: {"low": d.low, "high": d.high, "nominal": d.nominal, "enabled": d.enabled}
                for f in dataclasses.fields(self) for d in [getattr(self, f.name)]}

    @classmethod
    def from_dict(cls, data: dict, path: str, base=None):
        """Override ``base`` (default: the full-range group) with ``data``: per dimension true/false
        (switch it on or off, keeping its range), [low, high] (switch on with that range) or a
        mapping of the Dim fields to change."""
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping, got {data!r}")
        base = cls() if base is None else base
        names = {f.name for f in dataclasses.fields(cls)}
        changes = {}
        for key, value in data.items():
            if key not in names:
                raise ValueError(f"{path}.{key}: unknown field; known fields: {sorted(names)}")
            default: Dim = getattr(base, key)
            if isinstance(value, bool):
                changes[key] = dataclasses.replace(default, enabled=value)
            elif isinstance(value, list | tuple) and len(value) == 2:
                changes[key] = dataclasses.replace(default, low=value[0], high=value[1], enabled=True)
            elif isinstance(value, dict):
                unknown = set(value) - {"low", "high", "nominal", "enabled"}
                if unknown:
                    raise ValueError(f"{path}.{key}: unknown keys {sorted(unknown)}")
                changes[key] = dataclasses.replace(default, **value)
            else:
                raise ValueError(f"{path}.{key}: expected true/false, [low, high] or a mapping, "
                                 f"got {value!r}")
        group = dataclasses.replace(base, **changes)
        group.validate(path)
        return group


@dataclass(frozen=True)
class VisualRandomization(_Group):
    """Appearance. Colours are HSV: hue in [0, 1], saturation and value in [0, 1]."""

    object_color: Dim = _dim(0, 1, 0, 0, 1)           # random hue per object; nominal: catalogue colour
    tray_color: Dim = _dim(0, 1, 0, 0, 1)             # random hue of the tray
    table_color: Dim = _dim(0, 1, 0, 0, 1)            # random hue of the table top
    floor_color: Dim = _dim(0, 1, 0, 0, 1)            # random hue of the floor
    texture_probability: Dim = _dim(0.5, 0.5, 0.0, 0, 1)  # chance a surface gets a texture
    photo_texture_fraction: Dim = _dim(0.5, 0.5, 0.0, 0, 1)  # of textured surfaces, share of photos
    # Of textured surfaces, share wearing a patch of the target camera's own images; only in an env
    # given some (EnvConfig.target_textures: the simulation fine-tuning for a real camera).
    target_texture_fraction: Dim = _dim(0.5, 0.5, 0.0, 0, 1)
    light_azimuth: Dim = _dim(-math.pi, math.pi, 0.9)  # rad, direction of the light around z
    light_elevation: Dim = _dim(0.5, 1.45, 1.2, 0.0, math.pi / 2)  # rad above the horizon
    light_color_jitter: Dim = _dim(0.0, 0.25, 0.0, 0, 1)  # max deviation of each RGB channel from 1
    ambient: Dim = _dim(0.35, 0.8, 0.6, 0, 1)
    diffuse: Dim = _dim(0.15, 0.6, 0.35, 0, 1)
    specular: Dim = _dim(0.0, 0.2, 0.05, 0, 1)
    camera_position_jitter: Dim = _dim(0.0, 0.03, 0.0, 0, 0.2)   # m, max offset per axis
    camera_rotation_jitter: Dim = _dim(0.0, 0.04, 0.0, 0, 0.5)   # rad, max angle per axis
    camera_fov_jitter: Dim = _dim(0.0, 0.06, 0.0, 0, 0.5)        # relative focal length change
    distractors: Dim = _dim(0, 3, 0, 0, 3)            # count of distractor bodies beside the tray


@dataclass(frozen=True)
class PhysicsRandomization(_Group):
    object_mass: Dim = _dim(0.03, 0.3, 0.1, 1e-3, 5.0)            # kg
    lateral_friction: Dim = _dim(0.5, 1.2, 0.8, 0.0, 5.0)
    spinning_friction: Dim = _dim(0.0, 0.005, 0.001, 0.0, 1.0)
    rolling_friction: Dim = _dim(0.0, 0.0005, 0.0001, 0.0, 1.0)
    restitution: Dim = _dim(0.0, 0.3, 0.0, 0.0, 1.0)
    object_scale: Dim = _dim(0.9, 1.1, 1.0, 0.2, 3.0)            # multiplier on the graspable size
    gripper_force: Dim = _dim(30.0, 70.0, 50.0, 1.0, 200.0)      # N per finger
    joint_damping: Dim = _dim(0.0, 0.5, 0.0, 0.0, 10.0)          # N m s / rad on the arm joints


@dataclass(frozen=True)
class ControlRandomization(_Group):
    action_noise: Dim = _dim(0.0, 0.1, 0.0, 0.0, 1.0)   # std of Gaussian noise on normalised actions
    latency: Dim = _dim(0, 2, 0, 0, 5)                  # control steps an action is delayed (int)
    gain: Dim = _dim(0.8, 1.2, 1.0, 0.1, 3.0)           # multiplier on the end-effector step size


@dataclass(frozen=True)
class SensorRandomization(_Group):
    noise_std: Dim = _dim(0.0, 8.0, 0.0, 0.0, 64.0)       # Gaussian pixel noise, 0-255 scale
    blur_sigma: Dim = _dim(0.0, 1.0, 0.0, 0.0, 5.0)       # Gaussian blur, pixels
    brightness: Dim = _dim(-0.15, 0.15, 0.0, -1.0, 1.0)   # additive, fraction of full scale
    contrast: Dim = _dim(0.8, 1.2, 1.0, 0.0, 3.0)         # multiplicative around the mean
    saturation: Dim = _dim(0.7, 1.3, 1.0, 0.0, 3.0)
    hue_shift: Dim = _dim(-0.04, 0.04, 0.0, -0.5, 0.5)    # fraction of the hue circle
    jpeg_quality: Dim = _dim(30, 95, 100, 1, 100)         # 100 with enabled=False means no JPEG
    drop_probability: Dim = _dim(0.0, 0.05, 0.0, 0.0, 1.0)  # chance a frame repeats the last one
    delay: Dim = _dim(0, 1, 0, 0, 5)                      # frames the image lags the state (int)


_GROUPS = {"visual": VisualRandomization, "physics": PhysicsRandomization,
           "control": ControlRandomization, "sensor": SensorRandomization}


@dataclass(frozen=True)
class RandomizationConfig:
    """Domain randomization, in four groups. Build one with ``preset`` or ``from_dict``."""

    visual: VisualRandomization = field(default_factory=VisualRandomization)
    physics: PhysicsRandomization = field(default_factory=PhysicsRandomization)
    control: ControlRandomization = field(default_factory=ControlRandomization)
    sensor: SensorRandomization = field(default_factory=SensorRandomization)
    name: str = "full"

    def validate(self) -> None:
        for group in _GROUPS:
            getattr(self, group).validate(f"randomization.{group}")

    @classmethod
    def preset(cls, name: str) -> RandomizationConfig:
        """``none``: nominal world. ``light``: colours, lighting and small physics changes.
        ``full``: every dimension at its full range."""
        if name not in PRESETS:
            raise ValueError(f"randomization: unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        full = cls(name=name)
        if name == "full":
            return full
        if name == "none":
            return cls(*(getattr(full, g).all_off() for g in _GROUPS), name="none")
        v, ph = full.visual, full.physics
        light_visual = dataclasses.replace(
            v.all_off(), object_color=v.object_color, tray_color=v.tray_color,
            table_color=v.table_color, floor_color=v.floor_color,
            light_azimuth=v.light_azimuth,
            ambient=Dim(0.5, 0.7, 0.6, True, 0, 1), diffuse=Dim(0.25, 0.45, 0.35, True, 0, 1))
        light_physics = dataclasses.replace(
            ph.all_off(), object_mass=Dim(0.05, 0.2, 0.1, True, 1e-3, 5.0),
            lateral_friction=Dim(0.7, 1.0, 0.8, True, 0.0, 5.0))
        return cls(light_visual, light_physics, full.control.all_off(), full.sensor.all_off(),
                   name="light")

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"name": self.name}
        out.update({g: getattr(self, g).to_dict() for g in _GROUPS})
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RandomizationConfig:
        """A preset (``{"preset": "full"}`` or ``{"name": ...}``) overridden group by group."""
        if not isinstance(data, dict):
            raise ValueError(f"randomization: expected a mapping or a preset name, got {data!r}")
        unknown = set(data) - set(_GROUPS) - {"name", "preset"}
        if unknown:
            raise ValueError(f"randomization: unknown fields {sorted(unknown)}")
        base = cls.preset(data.get("preset", data.get("name", "full")))
        groups = {}
        for g, kind in _GROUPS.items():
            if g in data:
                groups[g] = kind.from_dict(data[g], f"randomization.{g}", base=getattr(base, g))
        return dataclasses.replace(base, **groups, name=data.get("name", base.name))

    @classmethod
    def coerce(cls, value: str | dict | RandomizationConfig) -> RandomizationConfig:
        if isinstance(value, RandomizationConfig):
            value.validate()
            return value
        if isinstance(value, str):
            return cls.preset(value)
        return cls.from_dict(value)


@dataclass(frozen=True)
class EnvConfig:
    """Everything that defines a grasping environment instance.

    image_size: side of the square RGB observation, pixels.
    control_hz: policy rate; each action is held for 1 / control_hz seconds.
    max_translation: end-effector displacement for action +-1 per step along x, y, z, metres.
    max_rotation: yaw change for action +-1 per step, radians.
    objects: "train" or "heldout" (the fixed split in ``envs.objects``).
    domain: "sim" (the randomized simulator) or "proxy_real" (``envs.proxy_real``: a target domain
        the randomization never samples, rendered with EGL, for transfer experiments without a robot).
    proxy_without: parts of the proxy-real domain (``PROXY_PARTS``) left out, each then as in the
        simulator: "renderer" (TinyRenderer), "textures" (the training randomization's surfaces and
        objects), "light" (randomized light), "camera" (the calibrated camera with the training's
        jitter, not the mis-mounted rig), "sensor" (the training's corruptions, not the real-camera
        model); for measuring where a policy's transfer gap comes from (``scripts/evaluate.py
        --proxy-without``). Only with domain="proxy_real".
    num_objects: (min, max) objects in the tray per episode.
    target_textures: a folder of PNG textures cut from the target camera's own images
        (``envs.textures.cut_textures``), worn by the share ``randomization.visual.
        target_texture_fraction`` of the textured surfaces; None: the training pool only.
    world_refresh: episodes between full world rebuilds, when a new pool of objects is loaded.
    """

    image_size: int = 64
    control_hz: float = 10.0
    sim_hz: float = 120.0
    max_episode_steps: int = 50
    max_translation: float = 0.04
    max_rotation: float = 0.25
    objects: str = "train"
    num_objects: tuple[int, int] = (1, 4)
    object_pool: int = 12
    world_refresh: int = 25
    lift_height: float = 0.06
    reward: str = "sparse"
    renderer: str = "tiny"
    observation: str = "pixels"
    domain: str = "sim"
    proxy_without: tuple[str, ...] = ()
    target_textures: str | None = None
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)

    def __post_init__(self) -> None:
        for name in ("image_size", "max_episode_steps", "object_pool", "world_refresh"):
            check_int(name, getattr(self, name))
        for name in ("control_hz", "sim_hz", "max_translation", "max_rotation", "lift_height"):
            check_number(name, getattr(self, name), positive=True)
        if self.sim_hz % self.control_hz:
            raise ValueError(f"control_hz: sim_hz={self.sim_hz} must be a multiple of "
                             f"control_hz={self.control_hz}")
        if self.objects not in ("train", "heldout"):
            raise ValueError(f"objects: must be 'train' or 'heldout', got {self.objects!r}")
        lo, hi = self.num_objects
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi <= self.object_pool):
            raise ValueError(f"num_objects: need 1 <= min <= max <= object_pool={self.object_pool}, "
                             f"got {self.num_objects!r}")
        for name, allowed in (("reward", ("sparse", "dense")), ("renderer", ("tiny", "egl")),
                              ("observation", ("pixels", "state")), ("domain", DOMAINS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: must be one of {allowed}, got {getattr(self, name)!r}")
        parts = self.proxy_without
        if isinstance(parts, str) or not isinstance(parts, tuple | list) or not set(parts) <= set(PROXY_PARTS):
            raise ValueError(f"proxy_without: must be a list of {PROXY_PARTS}, got {parts!r}")
        object.__setattr__(self, "proxy_without", tuple(parts))
        if parts and self.domain != "proxy_real":
            raise ValueError(f"proxy_without: only with domain='proxy_real', got domain={self.domain!r}")
        if self.target_textures is not None and (not isinstance(self.target_textures, str)
                                                 or not self.target_textures):
            raise ValueError(f"target_textures: must be a folder path or None, got {self.target_textures!r}")
        self.randomization.validate()

    @property
    def substeps(self) -> int:
        return int(round(self.sim_hz / self.control_hz))

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["num_objects"] = list(self.num_objects)
        out["proxy_without"] = list(self.proxy_without)
        out["randomization"] = self.randomization.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> EnvConfig:
        data = dict(data)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"env config: unknown fields {sorted(unknown)}")
        if "randomization" in data:
            data["randomization"] = RandomizationConfig.coerce(data["randomization"])
        if "num_objects" in data:
            data["num_objects"] = tuple(data["num_objects"])
        return cls(**data)
