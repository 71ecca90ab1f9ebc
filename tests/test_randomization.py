"""Every randomization dimension changes what it claims, read back from the simulator.

Method: the "none" preset is the base and ONE dimension is enabled at a time. Values are read
back from PyBullet (dynamics, colours, textures, joint damping, AABBs), the robot, the episode
camera and ``env.params``, checked against the configured range, and compared between seeds.

Image comparisons must isolate the dimension: with the "none" preset two seeds still place
different objects. Two configs that enable the same dimension with different *degenerate*
ranges ([a, a] versus [b, b]) draw the same number of random numbers, so the same seed gives the
same world except for that dimension (the tests assert that the objects lie identically).
"""

from __future__ import annotations

import colorsys
import dataclasses
import json
import math
import re

import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.camera import Camera, Intrinsics, look_at
from envs.config import (
    ControlRandomization,
    Dim,
    EnvConfig,
    PhysicsRandomization,
    RandomizationConfig,
    SensorRandomization,
    VisualRandomization,
    check_int,
    check_number,
    check_probability,
)
from envs.corruptions import (
    ColorJitter,
    Compose,
    FrameDelay,
    FrameDrop,
    GaussianBlur,
    GaussianNoise,
    Jpeg,
    sample_pipeline,
)
from envs.grasp_env import GraspEnv
from envs.robot import ARM_JOINTS, FINGER_JOINTS
from envs.scene import NOMINAL_COLORS, TRAY_INNER, catalogue_color
from envs.sim import Light

SIZE = 32
SEEDS = (11, 12)
NONE = RandomizationConfig.preset("none")
GROUPS = {"visual": VisualRandomization, "physics": PhysicsRandomization,
          "control": ControlRandomization, "sensor": SensorRandomization}
ZERO = np.array([0, 0, 0, 0, 1], dtype=np.float32)


def one(group: str, dim: str, value) -> dict:
    """The "none" preset with one dimension enabled."""
    return {"preset": "none", group: {dim: value}}


def _new_env(randomization, **kwargs) -> GraspEnv:
    return GraspEnv(image_size=kwargs.pop("image_size", SIZE), randomization=randomization, **kwargs)


@pytest.fixture
def make():
    made: list[GraspEnv] = []

    def _make(randomization, **kwargs) -> GraspEnv:
        env = _new_env(randomization, **kwargs)
        made.append(env)
        return env

    yield _make
    for env in made:
        env.close()


@pytest.fixture(scope="module")
def nominal():
    """The "none" preset at SEEDS[0]: every dimension at its nominal value. Read only."""
    env = _new_env("none")
    obs, _ = env.reset(seed=SEEDS[0])
    env.first_obs = obs
    yield env
    env.close()


def _hsv(rgba) -> tuple[float, float, float]:
    return colorsys.rgb_to_hsv(*[float(c) for c in rgba[:3]])


def _in(value: float, lo: float, hi: float, tol: float = 1e-6) -> bool:
    return lo - tol <= value <= hi + tol


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def _assert_same_world(a: GraspEnv, b: GraspEnv) -> None:
    """Both envs hold the same objects at the same poses (the comparison is controlled)."""
    assert a.scene.active == b.scene.active
    for name in a.scene.active:
        assert np.allclose(a.sim.pose(name)[0], b.sim.pose(name)[0], atol=1e-9), name


def _controlled_pair(make, group: str, dim: str, a, b, seed: int = SEEDS[0], check_world=True):
    """Observations of the same seed with ``dim`` fixed at a versus b (everything else nominal)."""
    env_a, env_b = make(one(group, dim, [a, a])), make(one(group, dim, [b, b]))
    obs_a, _ = env_a.reset(seed=seed)
    obs_b, _ = env_b.reset(seed=seed)
    if check_world:
        _assert_same_world(env_a, env_b)
        assert np.array_equal(obs_a["proprio"], obs_b["proprio"])
    return env_a, env_b, obs_a["image"], obs_b["image"]


# A wide view from far above the robot's front that shows the tray, the table and the floor
# around it (the policy camera sees the floor only in its corners).
OVERVIEW = Camera(Intrinsics(fx=60.0, fy=60.0, cx=48.0, cy=48.0, width=96, height=96),
                  position=(2.2, 0.0, 1.6),
                  orientation=tuple(float(v) for v in look_at(np.array([2.2, 0.0, 1.6]),
                                                              np.array([0.45, 0.0, -0.4]))))


def _overview(env: GraspEnv) -> np.ndarray:
    return env.render_camera(OVERVIEW)


def _changed_pixels(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 8).sum())


# ===================================================================================== visual
def test_object_color(make, nominal):
    env = make(one("visual", "object_color", [0.2, 0.3]))
    hues = {}
    for seed in SEEDS:
        env.reset(seed=seed)
        hues[seed] = []
        for name in env.scene.active:
            rgba = env.sim.visual_colors(name)[-1]
            assert np.allclose(rgba, env.params.colors[name], atol=1e-6)
            h, s, v = _hsv(rgba)
            assert _in(h, 0.2, 0.3) and _in(s, 0.3, 1.0) and _in(v, 0.35, 1.0), (h, s, v)
            assert rgba[3] == 1.0
            hues[seed].append(round(h, 6))
    assert hues[SEEDS[0]] != hues[SEEDS[1]]
    # Off: every active object shows its fixed catalogue colour.
    for name in nominal.scene.active:
        expected = catalogue_color(nominal.scene.pool[name]["id"])
        assert np.allclose(nominal.sim.visual_colors(name)[-1], expected, atol=1e-6)
    # Same world, hue 0.0 versus 0.5: the image changes.
    _, _, img_a, img_b = _controlled_pair(make, "visual", "object_color", 0.0, 0.5)
    assert not np.array_equal(img_a, img_b)


@pytest.mark.parametrize("surface", ["tray", "table", "floor"])
def test_surface_color(make, nominal, surface):
    env = make(one("visual", f"{surface}_color", [0.55, 0.6]))
    colours = []
    for seed in SEEDS:
        env.reset(seed=seed)
        rgba = env.sim.visual_colors(surface)[-1]
        assert np.allclose(rgba, env.params.colors[surface], atol=1e-6)
        h, s, v = _hsv(rgba)
        if s > 0.05:  # hue is only defined for a coloured (not grey) surface
            assert _in(h, 0.55, 0.6, 1e-4), h
        assert _in(s, 0.0, 0.7) and _in(v, 0.25, 0.95)
        assert env.params.textures[surface] == "white"
        colours.append(rgba)
        # Other surfaces keep their nominal colours.
        for other in {"tray", "table", "floor"} - {surface}:
            assert np.allclose(env.sim.visual_colors(other)[-1], NOMINAL_COLORS[other])
    assert not np.allclose(colours[0], colours[1])
    assert np.allclose(nominal.sim.visual_colors(surface)[-1], NOMINAL_COLORS[surface])
    env_a, env_b, img_a, img_b = _controlled_pair(make, "visual", f"{surface}_color", 0.0, 0.5)
    assert _changed_pixels(_overview(env_a), _overview(env_b)) > 30
    if surface != "floor":  # the floor shows only in the corners of the policy view
        assert _diff(img_a, img_b) > 0.5


def test_texture_probability(make, nominal):
    """Probability 1: every surface shows a texture. PyBullet does not report a shape's texture
    id back, so the read-back is visual: replacing the texture by plain white (same tint)
    changes the rendered view of that surface."""
    env = make(one("visual", "texture_probability", [1.0, 1.0]))
    obs, _ = env.reset(seed=SEEDS[0])
    keys = [env.params.textures[s] for s in ("tray", "table", "floor")]
    assert all(re.fullmatch(r"(photo|procedural)_\d+", k) for k in keys), keys
    before = _overview(env)
    for surface in ("tray", "table", "floor"):
        env.sim.set_color(surface, env.params.colors[surface], texture="white")
        after = _overview(env)
        assert _changed_pixels(before, after) > 30, f"{surface} showed no texture"
        before = after
    env.reset(seed=SEEDS[1])
    assert [env.params.textures[s] for s in ("tray", "table", "floor")] != keys
    assert _diff(obs["image"], nominal.first_obs["image"]) > 5
    # Off: plain white everywhere, and re-applying white changes nothing.
    assert set(nominal.params.textures.values()) == {"white"}
    plain = make("none")
    plain.reset(seed=SEEDS[0])
    before = _overview(plain)
    for surface in ("tray", "table", "floor"):
        plain.sim.set_color(surface, plain.params.colors[surface], texture="white")
    assert np.array_equal(before, _overview(plain))


@pytest.mark.parametrize("fraction, kind", [(1.0, "photo_"), (0.0, "procedural_")])
def test_photo_texture_fraction(make, fraction, kind):
    env = make({"preset": "none", "visual": {"texture_probability": [1.0, 1.0],
                                             "photo_texture_fraction": [fraction, fraction]}})
    env.reset(seed=SEEDS[0])
    assert all(env.params.textures[s].startswith(kind) for s in ("tray", "table", "floor"))


def test_light_azimuth(make, nominal):
    env = make(one("visual", "light_azimuth", [0.5, 0.6]))
    azimuths = []
    for seed in SEEDS:
        env.reset(seed=seed)
        d = env.params.light.direction
        azimuths.append(math.atan2(d[1], d[0]))
        assert _in(azimuths[-1], 0.5, 0.6)
        assert np.linalg.norm(d) == pytest.approx(1.0)
    assert azimuths[0] != azimuths[1]
    d = nominal.params.light.direction
    assert math.atan2(d[1], d[0]) == pytest.approx(NONE.visual.light_azimuth.nominal)
    _, _, img_a, img_b = _controlled_pair(make, "visual", "light_azimuth", 0.0, 3.0)
    assert _diff(img_a, img_b) > 0.5


def test_light_elevation(make, nominal):
    env = make(one("visual", "light_elevation", [0.6, 0.7]))
    for seed in SEEDS:
        env.reset(seed=seed)
        assert _in(math.asin(env.params.light.direction[2]), 0.6, 0.7)
    assert math.asin(nominal.params.light.direction[2]) == pytest.approx(NONE.visual.light_elevation.nominal)
    _, _, img_a, img_b = _controlled_pair(make, "visual", "light_elevation", 0.3, 1.4)
    assert _diff(img_a, img_b) > 1.0


@pytest.mark.parametrize("dim, low, high", [("ambient", 0.35, 0.8), ("diffuse", 0.15, 0.6)])
def test_light_coefficient_brightens(make, nominal, dim, low, high):
    env = make(one("visual", dim, [0.4, 0.45]))
    values = []
    for seed in SEEDS:
        env.reset(seed=seed)
        values.append(getattr(env.params.light, dim))
        assert _in(values[-1], 0.4, 0.45)
    assert values[0] != values[1]
    assert getattr(nominal.params.light, dim) == getattr(NONE.visual, dim).nominal
    _, _, dark, bright = _controlled_pair(make, "visual", dim, low, high)
    assert bright.astype(float).mean() > dark.astype(float).mean() + 10


def test_specular(make, nominal):
    env = make(one("visual", "specular", [0.1, 0.2]))
    values = []
    for seed in SEEDS:
        env.reset(seed=seed)
        values.append(env.params.light.specular)
        assert _in(values[-1], 0.1, 0.2)
    assert values[0] != values[1]
    assert nominal.params.light.specular == NONE.visual.specular.nominal
    _, _, img_a, img_b = _controlled_pair(make, "visual", "specular", 0.0, 1.0)
    assert _diff(img_a, img_b) > 1.0


def test_light_color_jitter(make, nominal):
    env = make(one("visual", "light_color_jitter", [0.2, 0.25]))
    colours = []
    for seed in SEEDS:
        env.reset(seed=seed)
        colour = np.asarray(env.params.light.color)
        assert np.all((colour >= 0.75 - 1e-9) & (colour <= 1.0))
        assert colour.min() < 0.999
        colours.append(colour)
    assert not np.allclose(colours[0], colours[1])
    assert nominal.params.light.color == (1.0, 1.0, 1.0)
    _, _, white, tinted = _controlled_pair(make, "visual", "light_color_jitter", 0.0, 0.25)
    assert not np.array_equal(white, tinted)
    assert tinted.astype(float).mean() <= white.astype(float).mean()


def test_nominal_light(nominal):
    light = nominal.params.light
    v = NONE.visual
    assert light.ambient == v.ambient.nominal and light.diffuse == v.diffuse.nominal
    assert isinstance(light, Light)


# ------------------------------------------------------------------------------------ camera
def test_camera_position_jitter(make, nominal):
    env = make(one("visual", "camera_position_jitter", [0.02, 0.03]))
    offsets = []
    for seed in SEEDS:
        env.reset(seed=seed)
        base = env.base_camera
        offset = np.asarray(env.camera.position) - base.position
        assert np.all(np.abs(offset) <= 0.03 + 1e-12) and np.linalg.norm(offset) > 1e-4
        assert np.allclose(env.camera.orientation, base.orientation)
        assert env.camera.intrinsics == base.intrinsics.scaled(SIZE, SIZE)
        offsets.append(offset)
    assert not np.allclose(offsets[0], offsets[1])
    assert nominal.camera.position == nominal.base_camera.position
    _, _, img_a, img_b = _controlled_pair(make, "visual", "camera_position_jitter", 0.0, 0.03)
    assert _diff(img_a, img_b) > 0.5


def test_camera_rotation_jitter(make, nominal):
    env = make(one("visual", "camera_rotation_jitter", [0.03, 0.04]))
    rotations = []
    for seed in SEEDS:
        env.reset(seed=seed)
        base = env.base_camera
        relative = base.rotation.T @ env.camera.rotation  # rotation in the optical frame
        angle = math.acos(np.clip((np.trace(relative) - 1) / 2, -1, 1))
        assert 1e-4 < angle <= math.sqrt(3) * 0.04 + 1e-9
        assert np.allclose(env.camera.position, base.position)
        rotations.append(relative)
    assert not np.allclose(rotations[0], rotations[1])
    assert np.allclose(nominal.camera.orientation, nominal.base_camera.orientation)
    _, _, img_a, img_b = _controlled_pair(make, "visual", "camera_rotation_jitter", 0.0, 0.04)
    assert _diff(img_a, img_b) > 0.5


def test_camera_fov_jitter(make, nominal):
    env = make(one("visual", "camera_fov_jitter", [0.05, 0.06]))
    ratios = []
    for seed in SEEDS:
        env.reset(seed=seed)
        base = env.base_camera.intrinsics.scaled(SIZE, SIZE)
        i = env.camera.intrinsics
        ratio = i.fx / base.fx
        assert _in(ratio, 0.94, 1.06) and ratio != pytest.approx(1.0, abs=1e-6)
        assert i.fy / base.fy == pytest.approx(ratio)  # one focal scale for both axes
        assert (i.cx, i.cy) == pytest.approx((base.cx, base.cy))
        ratios.append(ratio)
    assert ratios[0] != ratios[1]
    assert nominal.camera.intrinsics == nominal.base_camera.intrinsics.scaled(SIZE, SIZE)
    _, _, img_a, img_b = _controlled_pair(make, "visual", "camera_fov_jitter", 0.0, 0.06)
    assert _diff(img_a, img_b) > 0.5


# ------------------------------------------------------------------------------- distractors
def test_distractors(make, nominal):
    env = make(one("visual", "distractors", [3, 3]))
    obs, _ = env.reset(seed=SEEDS[0])
    active = env.scene.active_distractors()
    assert env.params.distractors == 3 and len(active) == 3
    for name in active:
        pos, _ = env.sim.pose(name)
        # On the table beside the tray, not in it.
        assert 0.3 - 1e-9 <= pos[0] <= 0.85 + 1e-9
        assert abs(pos[1]) >= TRAY_INNER / 2 + 0.06 - 1e-9
        assert pos[2] == pytest.approx(0.03)
        rgba = env.sim.visual_colors(name)[-1]
        assert rgba[3] == 1.0 and np.allclose(rgba, env.params.colors[name], atol=1e-6)
    # Off: all parked out of sight and invisible.
    assert nominal.params.distractors == 0 and nominal.scene.active_distractors() == []
    for name in nominal.scene.distractors:
        assert nominal.sim.visual_colors(name)[-1][3] == 0.0
    # Same world (distractors are placed after the objects settle), with and without them.
    off = make(one("visual", "distractors", [0, 0]))
    off_obs, _ = off.reset(seed=SEEDS[0])
    _assert_same_world(env, off)
    assert not np.array_equal(obs["image"], off_obs["image"])


def test_distractor_count_range(make):
    env = make(one("visual", "distractors", [1, 3]))
    placements = []
    for seed in SEEDS:
        env.reset(seed=seed)
        active = env.scene.active_distractors()
        assert 1 <= len(active) == env.params.distractors <= 3
        placements.append({n: tuple(np.round(env.sim.pose(n)[0], 6)) for n in active})
    assert placements[0] != placements[1]


# ==================================================================================== physics
@pytest.mark.parametrize("dim, key, low, high", [
    ("object_mass", "mass", 0.2, 0.25),
    ("lateral_friction", "lateralFriction", 0.2, 0.3),
    ("spinning_friction", "spinningFriction", 0.01, 0.02),
    ("rolling_friction", "rollingFriction", 0.001, 0.002),
    ("restitution", "restitution", 0.5, 0.6),
])
def test_object_dynamics(make, nominal, dim, key, low, high):
    env = make(one("physics", dim, [low, high]))
    seen = []
    for seed in SEEDS:
        env.reset(seed=seed)
        values = []
        for name in env.scene.active:
            value = env.sim.dynamics(name)[key]  # read back from PyBullet
            assert _in(value, low, high, 1e-9), (name, value)
            assert value == pytest.approx(env.params.object_dynamics[name][key])
            values.append(value)
        seen.append(sorted(values))
        # Parked pool objects stay static.
        for name in set(env.scene.pool) - set(env.scene.active):
            assert env.sim.dynamics(name)["mass"] == 0.0
    assert seen[0] != seen[1]
    nominal_value = getattr(NONE.physics, dim).nominal
    for name in nominal.scene.active:
        assert nominal.sim.dynamics(name)[key] == pytest.approx(nominal_value)


def test_object_scale(make):
    """Scale 1.0 versus 1.5 on the same seed: the same pool, 1.5x larger in PyBullet."""
    small = make(one("physics", "object_scale", [1.0, 1.0]))
    large = make(one("physics", "object_scale", [1.5, 1.5]))
    small.reset(seed=SEEDS[0])
    large.reset(seed=SEEDS[0])
    assert [v["id"] for v in small.scene.pool.values()] == [v["id"] for v in large.scene.pool.values()]
    parked = [n for n in small.scene.pool if n not in small.scene.active]
    assert parked
    for name in small.scene.pool:
        assert large.scene.pool[name]["scale"] == pytest.approx(1.5 * small.scene.pool[name]["scale"])
        assert np.allclose(large.scene.pool[name]["extents"], 1.5 * small.scene.pool[name]["extents"])
    for name in parked:  # parked bodies keep the identity orientation: their AABB is the mesh box
        lo_s, hi_s = small.sim.aabb(name)
        lo_l, hi_l = large.sim.aabb(name)
        growth = (hi_l - lo_l) - (hi_s - lo_s)  # the collision margin cancels
        assert np.allclose(growth, 0.5 * small.scene.pool[name]["extents"], atol=2e-4), name
        assert np.allclose(hi_s - lo_s - small.scene.pool[name]["extents"],
                           (hi_s - lo_s - small.scene.pool[name]["extents"])[0], atol=1e-4)
    # A random range: per-object multipliers (relative to scale 1.0, same seed) inside it.
    ranged = make(one("physics", "object_scale", [1.2, 1.3]))
    ranged.reset(seed=SEEDS[0])
    ratios = [ranged.scene.pool[n]["scale"] / small.scene.pool[n]["scale"] for n in small.scene.pool]
    assert all(_in(r, 1.2, 1.3) for r in ratios)
    assert len({round(r, 9) for r in ratios}) > 1


def test_gripper_force(make, nominal):
    env = make(one("physics", "gripper_force", [80.0, 90.0]))
    forces = []
    for seed in SEEDS:
        env.reset(seed=seed)
        assert _in(env.robot.gripper_force, 80.0, 90.0)
        assert env.robot.gripper_force == env.params.gripper_force
        forces.append(env.robot.gripper_force)
    assert forces[0] != forces[1]
    assert nominal.robot.gripper_force == NONE.physics.gripper_force.nominal
    # The force is what the finger motors are commanded with on every step.
    commands = []
    drive = env.sim.drive_joints

    def record(name, joints, targets, forces_):
        commands.append((tuple(joints), tuple(forces_)))
        return drive(name, joints, targets, forces_)

    env.sim.drive_joints = record
    try:
        env.step(np.array([0, 0, 0, 0, -1], dtype=np.float32))
    finally:
        del env.sim.drive_joints
    fingers = [f for j, f in commands if j == FINGER_JOINTS]
    assert fingers and all(f == (env.params.gripper_force,) * 2 for f in fingers)


def _free_swing(env: GraspEnv) -> float:
    """Total joint travel (rad) of the arm falling under gravity for 0.25 s with motors off."""
    q0 = env.sim.joint_positions("robot", ARM_JOINTS)
    env.sim.drive_joints("robot", ARM_JOINTS, q0, [0.0] * len(ARM_JOINTS))
    env.sim.step(30)
    return float(np.abs(env.sim.joint_positions("robot", ARM_JOINTS) - q0).sum())


def test_joint_damping(make, nominal):
    env = make(one("physics", "joint_damping", [1.0, 2.0]))
    seen = []
    for seed in SEEDS:
        env.reset(seed=seed)
        assert _in(env.params.joint_damping, 1.0, 2.0)
        seen.append(env.params.joint_damping)
    assert seen[0] != seen[1]
    assert nominal.params.joint_damping == 0.0
    # The damping reaches the simulator: a damped arm falls measurably slower.
    free = make(one("physics", "joint_damping", [0.0, 0.0]))
    damped = make(one("physics", "joint_damping", [5.0, 5.0]))
    free.reset(seed=SEEDS[0])
    damped.reset(seed=SEEDS[0])
    assert _free_swing(damped) < 0.7 * _free_swing(free)


# ==================================================================================== control
def test_action_noise(make, nominal):
    env = make(one("control", "action_noise", [0.05, 0.1]))
    values = []
    for seed in SEEDS:
        env.reset(seed=seed)
        values.append(env.params.action_noise)
        assert _in(values[-1], 0.05, 0.1)
    assert values[0] != values[1]
    assert nominal.params.action_noise == 0.0

    def drift(randomization) -> float:
        e = make(randomization)
        obs, _ = e.reset(seed=SEEDS[0])
        start = obs["proprio"][:3].copy()
        for _ in range(3):
            obs, *_ = e.step(ZERO)
        return float(np.linalg.norm(obs["proprio"][:3] - start))

    # A zero action holds the end effector still unless noise is added to it.
    assert drift("none") < 0.003
    assert drift(one("control", "action_noise", [0.5, 0.5])) > 0.005


def test_latency(make, nominal):
    up = np.array([0, 0, 1, 0, 1], dtype=np.float32)

    def rise(latency: int) -> list[float]:
        env = make(one("control", "latency", [latency, latency]))
        obs, _ = env.reset(seed=SEEDS[0])
        assert env.params.latency == latency
        z0 = obs["proprio"][2]
        heights = []
        for action in (up, ZERO, ZERO, ZERO):
            obs, *_ = env.step(action)
            heights.append(float(obs["proprio"][2] - z0))
        return heights

    now, late = rise(0), rise(2)
    assert now[0] > 0.01  # moves on the first step
    assert abs(late[0]) < 0.003 and abs(late[1]) < 0.003  # two steps of nothing
    assert late[2] > 0.01  # then the delayed action arrives
    assert late[2] == pytest.approx(now[0], abs=0.005)
    env = make(one("control", "latency", [0, 2]))
    values = set()
    for seed in range(6):
        env.reset(seed=seed)
        assert env.params.latency in (0, 1, 2)
        values.add(env.params.latency)
    assert len(values) > 1
    assert nominal.params.latency == 0


def test_gain(make, nominal):
    """The same action moves the end effector proportionally further with a larger gain."""
    forward = np.array([1, 0, 0, 0, 1], dtype=np.float32)
    env_a, env_b, _, _ = _controlled_pair(make, "control", "gain", 0.5, 1.5)
    moves = []
    for env in (env_a, env_b):
        start = env.robot.proprio()[:3].copy()
        for _ in range(2):
            obs, *_ = env.step(forward)
        moves.append(obs["proprio"][:3] - start)
    assert moves[0][0] > 0.01
    assert 2.5 < moves[1][0] / moves[0][0] < 3.5
    env = make(one("control", "gain", [0.8, 1.2]))
    gains = []
    for seed in SEEDS:
        env.reset(seed=seed)
        gains.append(env.params.gain)
        assert _in(gains[-1], 0.8, 1.2)
    assert gains[0] != gains[1]
    assert nominal.params.gain == 1.0


# ===================================================================================== sensor
SENSOR_CASES = [
    ("noise_std", (4.0, 6.0), GaussianNoise, "std"),
    ("blur_sigma", (0.5, 1.0), GaussianBlur, "sigma"),
    ("brightness", (0.1, 0.15), ColorJitter, "brightness"),
    ("contrast", (1.1, 1.2), ColorJitter, "contrast"),
    ("saturation", (1.1, 1.2), ColorJitter, "saturation"),
    ("hue_shift", (0.02, 0.04), ColorJitter, "hue"),
    ("jpeg_quality", (30, 40), Jpeg, "quality"),
    ("drop_probability", (0.1, 0.2), FrameDrop, "probability"),
    ("delay", (1, 2), FrameDelay, "steps"),
]


@pytest.mark.parametrize("dim, bounds, kind, attr", SENSOR_CASES, ids=[c[0] for c in SENSOR_CASES])
def test_sensor_pipeline_has_the_right_piece(dim, bounds, kind, attr):
    sensor = RandomizationConfig.coerce(one("sensor", dim, list(bounds))).sensor
    values = []
    for seed in range(4):
        pipe = sample_pipeline(sensor, np.random.default_rng(seed))
        assert isinstance(pipe, Compose)
        assert [type(p) for p in pipe.pieces] == [kind]
        value = getattr(pipe.pieces[0], attr)
        assert _in(value, *bounds)
        values.append(value)
        if kind is ColorJitter:  # the other jitter parameters stay at identity
            others = {"brightness": 0.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}
            others.pop(attr)
            assert all(getattr(pipe.pieces[0], k) == v for k, v in others.items())
    if kind not in (FrameDelay,):  # integer delay may repeat; continuous values do not
        assert len(set(values)) > 1


def test_sensor_pipeline_none_and_full():
    assert sample_pipeline(NONE.sensor, np.random.default_rng(0)).pieces == []
    full = RandomizationConfig.preset("full").sensor
    order = [FrameDelay, FrameDrop, GaussianBlur, ColorJitter, GaussianNoise, Jpeg]
    seen = set()
    for seed in range(20):
        kinds = [type(p) for p in sample_pipeline(full, np.random.default_rng(seed)).pieces]
        assert kinds == sorted(kinds, key=order.index)  # the documented order
        seen.update(kinds)
    assert seen == set(order)


def _sensor_env(make, dim, value):
    env = make(one("sensor", dim, [value, value]))
    obs, _ = env.reset(seed=SEEDS[0])
    clean = env.render_camera(env.camera)  # the uncorrupted frame of the same state
    return env, obs["image"], clean


def test_no_sensor_corruption_when_off(nominal):
    clean = nominal.render_camera(nominal.camera)
    assert np.array_equal(nominal.first_obs["image"], clean)
    assert nominal.params.sensor.pieces == []


def test_sensor_noise_in_observation(make):
    _, image, clean = _sensor_env(make, "noise_std", 8.0)
    residual = image.astype(float) - clean
    assert 5.0 < residual.std() < 9.0


def test_sensor_blur_in_observation(make):
    _, image, clean = _sensor_env(make, "blur_sigma", 1.0)

    def lap(im: np.ndarray) -> float:  # mean absolute gradient: high-frequency content
        f = im.astype(float)
        return float(np.abs(np.diff(f, axis=0)).mean() + np.abs(np.diff(f, axis=1)).mean())

    assert lap(image) < 0.8 * lap(clean)


def test_sensor_brightness_in_observation(make):
    _, image, clean = _sensor_env(make, "brightness", 0.1)
    assert image.astype(float).mean() > clean.astype(float).mean() + 15


def test_sensor_contrast_in_observation(make):
    _, image, clean = _sensor_env(make, "contrast", 0.5)
    assert image.astype(float).std() < 0.6 * clean.astype(float).std()


def test_sensor_saturation_in_observation(make):
    _, image, clean = _sensor_env(make, "saturation", 0.0)
    assert np.abs(np.diff(clean.astype(int), axis=2)).mean() > 3
    assert np.abs(np.diff(image.astype(int), axis=2)).max() <= 1


def test_sensor_hue_shift_in_observation(make):
    _, image, clean = _sensor_env(make, "hue_shift", 0.25)
    assert _diff(image, clean) > 3


def test_sensor_jpeg_in_observation(make):
    _, image, clean = _sensor_env(make, "jpeg_quality", 10)
    assert _diff(image, clean) > 1


def test_sensor_frame_drop_in_observation(make):
    env, first, clean = _sensor_env(make, "drop_probability", 1.0)
    assert np.array_equal(first, clean)  # nothing to repeat yet
    for _ in range(3):
        obs, *_ = env.step(np.array([1, 0, -1, 0, 1], dtype=np.float32))
        assert np.array_equal(obs["image"], first)  # every later frame is lost
    assert not np.array_equal(env.render_camera(env.camera), first)  # while the scene moved


@pytest.mark.parametrize("delay", [1, 2])
def test_sensor_delay_in_observation(make, delay):
    env, first, clean = _sensor_env(make, "delay", delay)
    assert np.array_equal(first, clean)
    cleans = [clean]
    for t in range(1, 5):
        obs, *_ = env.step(np.array([1, 0, -1, 0, 1], dtype=np.float32))
        cleans.append(env.render_camera(env.camera))
        assert np.array_equal(obs["image"], cleans[max(0, t - delay)]), t
    assert not np.array_equal(cleans[-1], cleans[-1 - delay])


# ==================================================================================== presets
def _dims(config: RandomizationConfig):
    for group in GROUPS:
        g = getattr(config, group)
        for f in dataclasses.fields(g):
            yield group, f.name, getattr(g, f.name)


def test_preset_none():
    config = RandomizationConfig.preset("none")
    assert config.name == "none"
    assert all(not d.enabled for _, _, d in _dims(config))


def test_preset_full():
    config = RandomizationConfig.preset("full")
    assert config.name == "full"
    assert all(d.enabled for _, _, d in _dims(config))
    assert config == RandomizationConfig()


def test_preset_light():
    config = RandomizationConfig.preset("light")
    assert config.name == "light"
    enabled = {(g, n) for g, n, d in _dims(config) if d.enabled}
    assert enabled == {
        ("visual", "object_color"), ("visual", "tray_color"), ("visual", "table_color"),
        ("visual", "floor_color"), ("visual", "light_azimuth"), ("visual", "ambient"),
        ("visual", "diffuse"), ("physics", "object_mass"), ("physics", "lateral_friction")}
    full = RandomizationConfig.preset("full")
    # Light ranges lie within the full ones.
    for g, n, d in _dims(config):
        if d.enabled:
            f = getattr(getattr(full, g), n)
            assert f.low <= d.low <= d.high <= f.high, (g, n)
    config.validate()


def test_unknown_preset():
    with pytest.raises(ValueError, match="extreme"):
        RandomizationConfig.preset("extreme")


def test_all_off_keeps_ranges_and_nominals():
    full = RandomizationConfig.preset("full")
    none = RandomizationConfig.preset("none")
    for (_, _, d_none), (_, _, d_full) in zip(_dims(none), _dims(full), strict=True):
        assert (d_none.low, d_none.high, d_none.nominal) == (d_full.low, d_full.high, d_full.nominal)


def test_disabled_dim_samples_nominal():
    dim = Dim(0.0, 1.0, 0.25, enabled=False)
    rng = np.random.default_rng(0)
    assert {dim.sample(rng) for _ in range(5)} == {0.25}
    on = dataclasses.replace(dim, enabled=True)
    samples = [on.sample(rng) for _ in range(50)]
    assert all(0.0 <= s <= 1.0 for s in samples) and len(set(samples)) == 50


@pytest.mark.parametrize("preset", ["none", "light", "full"])
def test_dict_round_trip(preset):
    config = RandomizationConfig.preset(preset)
    data = config.to_dict()
    assert RandomizationConfig.from_dict(data) == config
    # Through JSON, as a run directory saves it.
    assert RandomizationConfig.from_dict(json.loads(json.dumps(data))) == config


def test_dict_round_trip_of_custom_config():
    config = RandomizationConfig.coerce({
        "preset": "light",
        "physics": {"object_mass": [0.2, 0.25], "joint_damping": True},
        "sensor": {"noise_std": {"low": 1.0, "high": 2.0, "nominal": 0.0, "enabled": True}},
        "control": {"gain": [0.9, 1.1]}})
    assert config.physics.object_mass.low == 0.2 and config.physics.object_mass.enabled
    assert config.physics.joint_damping.enabled
    assert config.sensor.noise_std == dataclasses.replace(NONE.sensor.noise_std, low=1.0, high=2.0,
                                                          enabled=True)
    back = RandomizationConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config


def test_env_config_round_trip():
    config = EnvConfig(image_size=48, num_objects=(2, 3), reward="dense",
                       randomization=RandomizationConfig.coerce(one("physics", "restitution", [0.1, 0.2])))
    data = json.loads(json.dumps(config.to_dict()))
    assert EnvConfig.from_dict(data) == config
    env = GraspEnv(config=data)
    try:
        assert env.config == config
    finally:
        env.close()


def test_env_applies_preset_by_name(make):
    env = make("light")
    assert env.config.randomization == RandomizationConfig.preset("light")
    env = make(RandomizationConfig.preset("none"))
    assert env.config.randomization == NONE


def test_nominal_world_is_nominal(nominal):
    p = nominal.params
    assert p.gripper_force == NONE.physics.gripper_force.nominal
    assert p.joint_damping == 0.0 and p.gain == 1.0 and p.latency == 0 and p.action_noise == 0.0
    assert p.distractors == 0 and p.light.color == (1.0, 1.0, 1.0)
    assert set(p.textures.values()) == {"white"}


# ======================================================================= known problems in envs

def test_override_on_light_preset_keeps_the_preset_range():
    """Enabling or tweaking one dimension must start from the *preset's* value of that dimension.

    ``{"preset": "light", "visual": {"ambient": True}}`` should keep light's ambient range
    (0.5, 0.7), and ``{"preset": "none", "visual": {"ambient": {"nominal": 0.7}}}`` should
    only change the nominal, not switch ambient randomization on."""
    light = RandomizationConfig.preset("light")
    config = RandomizationConfig.coerce({"preset": "light", "visual": {"ambient": True}})
    assert config.visual.ambient == light.visual.ambient
    config = RandomizationConfig.coerce({"preset": "none", "visual": {"ambient": {"nominal": 0.7}}})
    assert config.visual.ambient == dataclasses.replace(NONE.visual.ambient, nominal=0.7)
    assert not config.visual.ambient.enabled


@pytest.mark.parametrize("value", [
    {"physics": {"object_mass": {"nominal": -1.0, "enabled": False}}},
    {"physics": {"gripper_force": {"nominal": 0.0, "enabled": False}}},
    {"visual": {"ambient": {"nominal": 3.0, "enabled": False}}},
])
def test_nominal_outside_allowed_bounds_is_rejected(value):
    """A disabled dimension *uses* its nominal, so it must respect minimum/maximum too.

    Today a nominal mass of -1 passes validation; PyBullet then stores mass 0 and the object
    becomes static, hanging in the air where it was dropped."""
    field = next(iter(next(iter(value.values()))))
    with pytest.raises(ValueError, match=field):
        RandomizationConfig.coerce(value)


@pytest.mark.parametrize("value", [{"physics": [0.1, 0.2]}, {"physics": None}, {"sensor": "off"}])
def test_non_mapping_group_raises_value_error_naming_it(value):
    group = next(iter(value))
    with pytest.raises(ValueError, match=group):
        RandomizationConfig.coerce(value)


def test_joint_damping_reads_back_from_simulator(make):
    """``Sim.joint_damping`` must report the damping the randomizer set.

    Today it returns getJointInfo()[6], the URDF's value (0.0 for the Panda), although the
    damping set with changeDynamics is in effect (see test_joint_damping)."""
    env = make(one("physics", "joint_damping", [1.0, 2.0]))
    env.reset(seed=SEEDS[0])
    damping = [env.sim.joint_damping("robot", j) for j in ARM_JOINTS]
    assert damping == pytest.approx([env.params.joint_damping] * len(ARM_JOINTS))


def test_egl_warns_that_it_ignores_light_coefficients():
    """PyBullet's EGL renderer ignores ambient/diffuse/specular and light colour: say so."""
    with pytest.warns(RuntimeWarning, match="ambient"):
        env = GraspEnv(image_size=32, renderer="egl", randomization="full")
    env.close()


def test_check_int_is_the_one_integer_rule_of_every_config():
    """``check_int`` refuses bools, floats and values under the minimum, naming the field, and
    the configs that use it say the same thing in the same words."""
    from policies.imitation import FitConfig
    from policies.train import TrainConfig
    from sim2real.transfer.adapt import AdaptConfig

    assert check_int("x", 3) == 3 and check_int("x", 0, 0) == 0
    for value, minimum, kind in ((0, 1, "a positive integer"), (-1, 0, "a non-negative integer"),
                                 (True, 1, "a positive integer"), (2.0, 1, "a positive integer"),
                                 (1, 2, "an integer >= 2")):
        with pytest.raises(ValueError, match=f"^x: must be {kind}, got {value!r}$"):
            check_int("x", value, minimum)
    for make, field in ((lambda: EnvConfig(max_episode_steps=2.5), "max_episode_steps: must be a positive integer"),
                        (lambda: TrainConfig(dagger_rounds=-1), "dagger_rounds: must be a non-negative integer"),
                        (lambda: FitConfig(batch=0), "fit batch: must be a positive integer"),
                        (lambda: AdaptConfig(steps=True), "steps: must be a positive integer")):
        with pytest.raises(ValueError, match=field):
            make()


def test_check_number_is_the_one_number_rule_of_every_config():
    """``check_number`` refuses bools, strings, NaN and infinity, and negatives (or zero) in its
    non-negative (positive) mode; the configs whose numbers may be 0 use that mode, so a fit's
    learning rate and the servo law refuse ``True`` like every other config."""
    from policies.imitation import FitConfig
    from policies.policy import ServoLaw

    assert check_number("x", 0) == 0.0 and check_number("x", 0, non_negative=True) == 0.0
    assert check_number("x", 2, positive=True) == 2.0
    for value, mode, kind in ((True, {}, "finite"), ("1", {}, "finite"), (float("nan"), {}, "finite"),
                              (float("inf"), {"non_negative": True}, "non-negative"),
                              (-1e-9, {"non_negative": True}, "non-negative"), (0, {"positive": True}, "positive")):
        with pytest.raises(ValueError, match=f"^x: must be a {kind} number, got {value!r}$"):
            check_number("x", value, **mode)
    assert FitConfig(lr=0, encoder_lr=0).encoder_lr == 0  # a frozen encoder
    for make, field in ((lambda: FitConfig(lr=True), "fit lr: must be a non-negative number, got True"),
                        (lambda: FitConfig(encoder_lr=-1e-4), "fit encoder_lr: must be a non-negative number"),
                        (lambda: FitConfig(lr=float("inf")), "fit lr: must be a non-negative number"),
                        (lambda: ServoLaw(aim=True), "servo.aim: must be a non-negative number, got True")):
        with pytest.raises(ValueError, match=field):
            make()


def test_check_probability_is_the_one_rule_of_every_chance():
    """``check_probability`` takes numbers in [0, 1] and refuses bools, strings, NaN and values
    outside; the training and sim-tune configs' chances use it (sim_tune.dagger_beta refused
    ``True`` only once it did)."""
    from policies.train import TrainConfig
    from sim2real.transfer.simtune import SimTuneConfig

    assert check_probability("p", 0) == 0.0 and check_probability("p", 1) == 1.0
    for value in (True, "0.5", float("nan"), -0.01, 1.01):
        with pytest.raises(ValueError, match=rf"^p: must be in \[0, 1\], got {re.escape(repr(value))}$"):
            check_probability("p", value)
    for make, field in ((lambda: TrainConfig(alt_prob=True), "alt_prob"),
                        (lambda: TrainConfig(views_near=1.5), "views_near"),
                        (lambda: SimTuneConfig(dagger_beta=True), "sim_tune.dagger_beta"),
                        (lambda: SimTuneConfig(texture_probability=float("nan")), "sim_tune.texture_probability")):
        with pytest.raises(ValueError, match=rf"^{field}: must be in \[0, 1\]"):
            make()


@pytest.mark.parametrize("fraction", [1.0, 0.0])
def test_target_texture_fraction(make, tmp_path, fraction):
    """Surfaces wear the target camera's textures (EnvConfig.target_textures) as often as the fraction
    says, and show them."""
    from envs.textures import cut_textures, write_textures

    frames = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3)).astype(np.uint8)
    write_textures(cut_textures(frames, 4, np.random.default_rng(0)), tmp_path / "target")
    spec = {"preset": "none", "visual": {"texture_probability": [1.0, 1.0],
                                         "target_texture_fraction": [fraction, fraction]}}
    env = make(spec, target_textures=str(tmp_path / "target"))
    env.reset(seed=SEEDS[0])
    keys = [env.params.textures[s] for s in ("tray", "table", "floor")]
    if fraction == 1.0:
        assert all(re.fullmatch(r"target_[0-3]", k) for k in keys), keys
        before = _overview(env)
        env.sim.set_color("tray", env.params.colors["tray"], texture="white")
        assert _changed_pixels(before, _overview(env)) > 30, "the tray showed no target texture"
    else:
        assert all(re.fullmatch(r"(photo|procedural)_\d+", k) for k in keys), keys


def test_target_textures_folder_is_checked(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        _new_env("none", target_textures=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="target_textures: must be a folder path"):
        EnvConfig(target_textures=3)
