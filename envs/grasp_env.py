"""``GraspEnv``: a Panda grasping from a tray of random objects, composed of small parts.

Parts: ``Sim`` (the PyBullet wrapper), ``Scene`` (table, tray, object pool), ``Panda`` (robot),
``Randomizer`` (domain randomization), ``Camera`` (calibrated pinhole) and the task logic below.

Observation (``observation="pixels"``): dict
    image    uint8 (S, S, 3) RGB from the policy camera, S = image_size
    proprio  float32 (5,): end-effector x, y, z (m, base frame), yaw (rad), gripper opening (m)
Observation (``observation="state"``, privileged, for teachers and fast RL): dict
    proprio  as above
    objects  float32 (max_objects, 11): per object [present, x, y, z (m), qx, qy, qz, qw,
             extent x, y, z (m, object frame)]; absent rows are zero.
Action: float32 (5,) in [-1, 1]: end-effector delta dx, dy, dz (x ``max_translation`` m), dyaw
    (x ``max_rotation`` rad), all in the base frame, and the gripper command: target opening
    (a + 1) / 2 x 0.08 m (+1 open, -1 closed). One action is held for 1 / ``control_hz`` s.
Success: an object's lowest point is at least ``lift_height`` above the tray floor while it
    touches a finger. The episode then terminates; it truncates after ``max_episode_steps``.
Reward: "sparse" gives 1 on success; "dense" adds shaping towards the nearest object and lift.
"""

from __future__ import annotations

import warnings
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs import objects as catalogue
from envs.camera import Camera
from envs.config import EnvConfig, RandomizationConfig
from envs.proxy_real import ProxyRealDomain
from envs.randomization import EpisodeParams, Randomizer
from envs.robot import FINGER_JOINTS, MAX_OPENING, Panda
from envs.scene import TRAY_CENTER, TRAY_FLOOR_Z, Scene
from envs.sim import Sim
from envs.textures import target_texture_files

OBJECT_FEATURES = 11
OPEN_ACTION = np.array([0, 0, 0, 0, 1], dtype=np.float32)
WORKSPACE = ((0.35, -0.22, TRAY_FLOOR_Z + 0.004), (0.75, 0.22, 0.40))
START_HEIGHT = 0.25


class GraspEnv(gym.Env):
    """See the module docstring. Keyword arguments override fields of ``EnvConfig``.

    Args:
        image_size: side of the square image observation, pixels.
        randomization: a preset name ("none", "light", "full"), a dict or a RandomizationConfig.
        objects: "train" or "heldout" object split.
        camera: a ``Camera``, or a path to a ROS camera_info YAML; None for the default camera.
        robot_visual: "gripper" (render hand and fingers only, fast) or "full".
        render_mode: None or "rgb_array" (``render()`` returns a clean ``render_size`` view).
        config: a full ``EnvConfig``; the other keywords then override its fields.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: EnvConfig | dict | None = None, *, camera: Camera | str | None = None,
                 robot_visual: str = "gripper", render_mode: str | None = None,
                 render_size: int = 256, **overrides: Any) -> None:
        base = config if isinstance(config, EnvConfig) else EnvConfig.from_dict(config or {})
        if "randomization" in overrides:
            overrides["randomization"] = RandomizationConfig.coerce(overrides["randomization"])
        if overrides:
            merged = base.to_dict()
            merged.update(overrides)
            merged["randomization"] = overrides.get("randomization", base.randomization)
            base = EnvConfig.from_dict(merged)
        self.config = base
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.render_size = render_size
        if isinstance(camera, str) or hasattr(camera, "__fspath__"):
            camera = Camera.from_camera_info(camera)
        elif isinstance(camera, dict):  # Camera.to_dict(), as a policy's spec states its camera
            camera = Camera.from_dict(camera)
        self.base_camera = camera or Camera()
        self.robot_visual = robot_visual
        self.metadata = {**self.metadata, "render_fps": self.config.control_hz}

        without = self.config.proxy_without
        self.proxy = ProxyRealDomain(without) if self.config.domain == "proxy_real" else None
        renderer = "egl" if self.proxy is not None and "renderer" not in without else self.config.renderer
        self.sim = Sim(timestep=1.0 / self.config.sim_hz, renderer=renderer)
        if self.sim.renderer == "egl" and self.proxy is None:
            v = self.config.randomization.visual
            ignored = [n for n in ("ambient", "diffuse", "specular", "light_color_jitter")
                       if getattr(v, n).enabled]
            if ignored:
                warnings.warn(f"renderer='egl' ignores the light coefficients and colour; these "
                              f"randomization dimensions have no effect: {', '.join(ignored)}",
                              RuntimeWarning, stacklevel=2)
        self.scene = Scene(self.sim)
        targets = () if self.config.target_textures is None else target_texture_files(self.config.target_textures)
        self.randomizer = Randomizer(self.config.randomization, self.base_camera, targets)
        self.robot: Panda | None = None
        self.object_ids = catalogue.object_ids(self.config.objects)

        s = self.config.image_size
        proprio = spaces.Box(
            low=np.array([-2, -2, -2, -np.pi, 0], dtype=np.float32),
            high=np.array([2, 2, 2, np.pi, MAX_OPENING + 0.01], dtype=np.float32), dtype=np.float32)
        if self.config.observation == "pixels":
            self.observation_space = spaces.Dict({
                "image": spaces.Box(0, 255, (s, s, 3), dtype=np.uint8), "proprio": proprio})
        else:
            n = self.config.num_objects[1]
            self.observation_space = spaces.Dict({
                "proprio": proprio,
                "objects": spaces.Box(-10, 10, (n, OBJECT_FEATURES), dtype=np.float32)})
        self.action_space = spaces.Box(-1.0, 1.0, (5,), dtype=np.float32)

        self._episodes_in_world = 0
        self._world_built = False
        self.params = EpisodeParams()
        self._actions: deque = deque()
        self._steps = 0
        self._camera = self.base_camera
        self._rng_control = np.random.default_rng(0)
        self._rng_sensor = np.random.default_rng(0)
        self.last_success = False

    # ------------------------------------------------------------------------------ world
    def _build_world(self) -> None:
        self.sim.reset_world()
        pool = self.np_random.choice(self.object_ids, size=self.config.object_pool, replace=False)
        self.scene.build([int(i) for i in pool], self.np_random,
                         self.config.randomization.physics.object_scale)
        self.randomizer.load_textures(self.scene)
        if self.proxy is not None:
            self.proxy.load_textures(self.scene)
        self.robot = Panda(self.sim, WORKSPACE, visual=self.robot_visual)
        self._world_built = True
        self._episodes_in_world = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # A fresh world on an explicit seed: the seed alone then decides everything that follows.
        if (seed is not None or not self._world_built
                or self._episodes_in_world >= self.config.world_refresh):
            self._build_world()
        self._episodes_in_world += 1
        rng = self.np_random
        lo, hi = self.config.num_objects
        count = int(rng.integers(lo, hi + 1))
        names = [str(n) for n in rng.choice(sorted(self.scene.pool), size=count, replace=False)]
        # The robot waits above, out of the way, while the objects fall and settle.
        start = np.array([*(TRAY_CENTER + rng.uniform(-0.05, 0.05, 2)), START_HEIGHT])
        start_yaw = float(rng.uniform(-0.6, 0.6))
        self.robot.reset(start, start_yaw)

        self.params = self.randomizer.sample(self.scene, names, rng)
        if self.proxy is not None:
            self.proxy.restyle(self.params, self.scene, names, self.base_camera,
                               np.random.default_rng(rng.integers(2**63)))
        self.randomizer.apply_dynamics(self.scene, self.params)
        self.scene.place_objects(names, [self.params.object_dynamics[n]["mass"] for n in names], rng)
        self.scene.place_distractors(self.params.distractors, rng)
        self.randomizer.apply_appearance(self.scene, self.params)
        self.robot.gripper_force = self.params.gripper_force
        self.robot.set_joint_damping(self.params.joint_damping)
        self.robot.reset(start, start_yaw)
        self._camera = self.params.camera.with_image_size(self.config.image_size, self.config.image_size)

        self._rng_control = np.random.default_rng(rng.integers(2**63))
        self._rng_sensor = np.random.default_rng(rng.integers(2**63))
        self._actions = deque([OPEN_ACTION.copy()] * self.params.latency)
        self.params.sensor.reset()
        self._steps = 0
        self.last_success = False
        return self._observation(), self._info()

    # ------------------------------------------------------------------------------- step
    def step(self, action):
        action = np.asarray(action, dtype=np.float32).reshape(5)
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action: must be finite, got {action}")
        self.apply_action(action)
        self._steps += 1
        success = self.is_success()
        self.last_success = success
        reward = self._reward(success)
        truncated = self._steps >= self.config.max_episode_steps and not success
        return self._observation(), reward, success, truncated, self._info()

    def apply_action(self, action: np.ndarray) -> None:
        """Control randomization (noise, latency, gain), then one control period of physics."""
        action = np.clip(action, -1.0, 1.0)
        if self.params.action_noise > 0:
            action = np.clip(action + self._rng_control.normal(0, self.params.action_noise, 5), -1, 1)
        self._actions.append(action)
        action = self._actions.popleft()
        pos, yaw = self.robot.ee_pose()
        cfg, gain = self.config, self.params.gain
        target = pos + action[:3] * cfg.max_translation * gain
        target_yaw = yaw + float(action[3]) * cfg.max_rotation * gain
        self.robot.hold(target, target_yaw, (float(action[4]) + 1.0) / 2.0 * MAX_OPENING)
        self.sim.step(cfg.substeps)

    # --------------------------------------------------------------------------- the task
    def lifted_objects(self) -> list[str]:
        """Active objects held above the success height."""
        out = []
        for name in self.scene.active:
            low, _ = self.sim.aabb(name)
            if low[2] >= TRAY_FLOOR_Z + self.config.lift_height and any(
                    self.sim.in_contact("robot", name, link) for link in FINGER_JOINTS):
                out.append(name)
        return out

    def is_success(self) -> bool:
        return bool(self.lifted_objects())

    def _reward(self, success: bool) -> float:
        if self.config.reward == "sparse":
            return float(success)
        ee, _ = self.robot.ee_pose()
        dists, heights = [], []
        for name in self.scene.active:
            pos, _ = self.sim.pose(name)
            dists.append(np.linalg.norm(pos - ee))
            heights.append(self.sim.aabb(name)[0][2] - TRAY_FLOOR_Z)
        lift = np.clip(max(heights) / self.config.lift_height, 0, 1)
        return float(success) + 0.1 * (1 - np.tanh(5 * min(dists))) + 0.2 * lift

    def privileged_state(self) -> dict[str, Any]:
        """Object names, poses (base frame) and extents (m): never a deployable policy's input."""
        out = {}
        for name in self.scene.active:
            pos, quat = self.sim.pose(name)
            out[name] = {"position": pos, "orientation": quat,
                         "extents": self.scene.pool[name]["extents"],
                         "object_id": self.scene.pool[name]["id"]}
        return out

    # ------------------------------------------------------------------------ observation
    def state_observation(self) -> dict[str, np.ndarray]:
        """The privileged observation of ``PandaGraspState-v0`` for the current state, whatever
        this env's own observation mode (for state teachers labelling a pixel env)."""
        rows = np.zeros((self.config.num_objects[1], OBJECT_FEATURES), dtype=np.float32)
        for k, info in enumerate(self.privileged_state().values()):
            rows[k] = [1.0, *info["position"], *info["orientation"], *info["extents"]]
        return {"proprio": self.robot.proprio(), "objects": np.clip(rows, -10, 10)}

    def _observation(self) -> dict[str, np.ndarray]:
        if self.config.observation == "state":
            return self.state_observation()
        proprio = self.robot.proprio()
        image = self.render_camera(self._camera)
        return {"image": self.params.sensor(image, self._rng_sensor), "proprio": proprio}

    def render_camera(self, camera: Camera, light=None) -> np.ndarray:
        """Render ``camera``'s view under ``light`` (default: this episode's), uint8 RGB."""
        i = camera.intrinsics
        return self.sim.render(i.width, i.height, camera.view_matrix(), camera.projection_matrix(),
                               light or self.params.light)

    def render_alternative(self, rng: np.random.Generator, return_camera: bool = False,
                           restore: bool = True):
        """The current world state as the policy camera would see it under a *different*, freshly
        sampled appearance (colours, textures, light, camera jitter, sensor corruption), uint8
        (S, S, 3); with ``return_camera`` also the (jittered) ``Camera`` that took it. For
        randomization-invariance pairs; the env's generators are not touched (``rng`` is the
        caller's). The episode's own appearance is restored unless ``restore`` is False: then the
        scene keeps the alternative colours and textures until the next ``reset`` or alternative
        render, for a caller that renders nothing else in between (view collection; a restore
        re-copies every photograph's pixels, ``envs.textures.PHOTO_MAX_SIDE``)."""
        alt = self.randomizer.sample(self.scene, list(self.scene.active), rng)
        self.randomizer.apply_appearance(self.scene, alt)
        try:
            size = self.config.image_size
            camera = alt.camera
            image = self.render_camera(camera.with_image_size(size, size), alt.light)
            alt.sensor.reset()
            image = alt.sensor(image, rng)
            return (image, camera) if return_camera else image
        finally:
            if restore:
                self.randomizer.apply_appearance(self.scene, self.params)

    def render(self):
        """A clean (uncorrupted) RGB view from this episode's camera at ``render_size``."""
        if self.render_mode != "rgb_array":
            return None
        cam = self.params.camera or self.base_camera
        return self.render_camera(cam.with_image_size(self.render_size, self.render_size))

    def _info(self) -> dict[str, Any]:
        return {"is_success": self.last_success, "steps": self._steps}

    @property
    def camera(self) -> Camera:
        """This episode's policy camera (after jitter), intrinsics at image_size."""
        return self._camera

    def close(self) -> None:
        self.sim.close()
